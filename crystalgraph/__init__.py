"""crystalgraph: periodic crystal graphs and CGCNN / SR-CGCNN models.

The one graph and featurization core shared by ``training/`` and ``service/``: import from
here, not from the private modules.
"""

from __future__ import annotations

from .answers import (
    Answer,
    AnswerModel,
    Failure,
    ManifestFacts,
    Prediction,
    Provenance,
    StructureSummary,
    element_warnings,
    gate_columns,
    model_predictions,
    model_provenance,
    summarize_structure,
    training_elements,
)
from .batch import GraphArrays, ModelInputs, PackedGraphs, collate
from .checkpoint import (
    CheckpointError,
    LoadedModel,
    export_model,
    library_versions,
    load_checkpoint,
    load_exported,
    read_manifest,
    save_checkpoint,
    sha256_file,
    verify_file,
    verify_manifest,
    write_manifest,
)
from .crystal import Crystal
from .errors import (
    DisorderedStructureError,
    EmptyStructureError,
    InvalidCellError,
    InvalidCIFError,
    InvalidStructureFileError,
    IsolatedAtomError,
    OverlappingAtomsError,
    StructureError,
    TooManyAtomsError,
    UnsupportedElementError,
)
from .features import FEATURE_SET, MAX_Z, element_feature_table, feature_hash, table_hash
from .graph import cif_to_graphs, crystal_graph, neighbor_list, structure_to_graph
from .graph_config import GraphConfig
from .inference import predict_graphs, predict_packed
from .io import FORMATS, OCCUPANCY_TOLERANCE, ReadBlock, detect_format, read_structures
from .legacy import LegacyFormatError, import_legacy
from .nets import (
    ARCHITECTURES,
    CGCNN,
    KNOWN_TARGETS,
    SRCGCNN,
    Architecture,
    CGCNNConfig,
    CrystalGraphNet,
    ModelConfig,
    SRCGCNNConfig,
    TargetSpec,
    architecture,
    architecture_names,
    build_model,
    parse_model_config,
)
from .notices import NOTICE_CODES, Notice
from .onnx_export import check_parity, export_onnx, export_onnx_checked, parity_batches
from .onnx_predictor import OnnxError, OnnxParityError, OnnxPredictor, OnnxProviderError
from .padding import PAD_GRAPHS, Padder
from .parsing import parse_cif
from .predictor import LoadedVersion, Predictor, default_models_dir
from .repository import (
    RepositoryModel,
    choose_defaults,
    find_model,
    latest_versions,
    model_folders,
    parse_ref,
    select_models,
    validation_mae,
    version_key,
)
from .trust import DOMAIN_CODES, ModelUncertainty, ensemble_pairs, load_uncertainty, trust_signals
from .uncertainty import (
    BY_CLASS,
    EmbeddingUncertainty,
    centroid_score,
    combined_score,
    density_g_cm3,
    distance_and_neighbour_error,
    kmeans,
    monotone_fit,
    neighbour_error,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # graphs
    "GraphConfig",
    "parse_cif",
    "read_structures",
    "detect_format",
    "ReadBlock",
    "Notice",
    "NOTICE_CODES",
    "FORMATS",
    "OCCUPANCY_TOLERANCE",
    "structure_to_graph",
    "Crystal",
    "crystal_graph",
    "cif_to_graphs",
    "neighbor_list",
    "predict_graphs",
    "predict_packed",
    "Padder",
    "PAD_GRAPHS",
    "GraphArrays",
    "ModelInputs",
    "collate",
    "PackedGraphs",
    "FEATURE_SET",
    "MAX_Z",
    "element_feature_table",
    "feature_hash",
    "table_hash",
    # errors
    "StructureError",
    "InvalidCIFError",
    "EmptyStructureError",
    "DisorderedStructureError",
    "UnsupportedElementError",
    "IsolatedAtomError",
    "OverlappingAtomsError",
    "InvalidCellError",
    "InvalidStructureFileError",
    "TooManyAtomsError",
    # models
    "CGCNN",
    "SRCGCNN",
    "CGCNNConfig",
    "SRCGCNNConfig",
    "ModelConfig",
    "TargetSpec",
    "KNOWN_TARGETS",
    "CrystalGraphNet",
    "Architecture",
    "ARCHITECTURES",
    "architecture",
    "architecture_names",
    "build_model",
    "parse_model_config",
    # checkpoints
    "CheckpointError",
    "LoadedModel",
    "save_checkpoint",
    "load_checkpoint",
    "export_model",
    "write_manifest",
    "read_manifest",
    "load_exported",
    "verify_file",
    "verify_manifest",
    "sha256_file",
    "library_versions",
    "LegacyFormatError",
    "import_legacy",
    # onnx
    "export_onnx",
    "export_onnx_checked",
    "check_parity",
    "parity_batches",
    "OnnxPredictor",
    "OnnxError",
    "OnnxParityError",
    "OnnxProviderError",
    # answers
    "Answer",
    "AnswerModel",
    "ManifestFacts",
    "Failure",
    "Prediction",
    "Provenance",
    "StructureSummary",
    "summarize_structure",
    "gate_columns",
    "training_elements",
    "model_predictions",
    "element_warnings",
    "model_provenance",
    # offline predictions
    "Predictor",
    "LoadedVersion",
    "default_models_dir",
    # model repositories
    "RepositoryModel",
    "version_key",
    "model_folders",
    "latest_versions",
    "parse_ref",
    "find_model",
    "validation_mae",
    "choose_defaults",
    "select_models",
    # uncertainty
    "ModelUncertainty",
    "load_uncertainty",
    "ensemble_pairs",
    "trust_signals",
    "DOMAIN_CODES",
    "EmbeddingUncertainty",
    "centroid_score",
    "neighbour_error",
    "BY_CLASS",
    "combined_score",
    "distance_and_neighbour_error",
    "density_g_cm3",
    "kmeans",
    "monotone_fit",
]
