"""Request and response bodies of API version 1 (stable names; shown in OpenAPI at ``/docs``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "Problem",
    "Notice",
    "StructureInfo",
    "Prediction",
    "PredictRequest",
    "PredictResponse",
    "BatchResult",
    "BatchError",
    "BatchItem",
    "BatchResponse",
    "PropertyInfo",
    "ParameterCounts",
    "GraphSettings",
    "TrainingSet",
    "ModelInfo",
    "RefusedModelInfo",
    "ReloadReport",
    "ModelList",
    "Health",
    "Readiness",
]


class Problem(BaseModel):
    """RFC 9457 problem details, the body of every request-level error."""

    type: str = Field(examples=["urn:crystal-service:problem:invalid_cif"])
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable machine-readable error code.", examples=["invalid_cif"])
    instance: str | None = None


class Notice(BaseModel):
    """A warning on a prediction, or why one structure of a batch failed."""

    code: str = Field(examples=["element_not_in_training_set"])
    detail: str


class StructureInfo(BaseModel):
    """The structure a prediction is for, as parsed (the cell as written in the CIF)."""

    block: str | None = Field(None, description="CIF data block name.")
    formula: str = Field(examples=["Na4Cl4"])
    reduced_formula: str = Field(examples=["NaCl"])
    n_sites: int
    volume: float = Field(description="Cell volume in Å³.")
    elements: list[str] = Field(examples=[["Cl", "Na"]])


class Prediction(BaseModel):
    """One property predicted by one model."""

    value: float
    unit: str = Field(examples=["eV/atom"])
    model: str = Field(examples=["cgcnn-formation-energy"])
    version: str = Field(examples=["1"])
    p_metal: float | None = Field(
        None,
        description="Band gap only, from a model with a metal head: the probability that the crystal is a "
        "metal (gap 0). The gap is reported as 0 where it exceeds the model's threshold (tuned on validation).",
        examples=[0.03],
    )
    sigma: float | None = Field(
        None,
        description="Calibrated uncertainty: one standard deviation, in the property's unit (about 68% of "
        "validation errors lie within 1 sigma, 90% or more within 2). From the distance of the crystal's "
        "embedding to the model's training crystals and, where its partner model of the other architecture is "
        "loaded, the spread of the two; calibrated on the validation split. `null` when the model ships no "
        "uncertainty (see `uncertainty` in /v1/models).",
        examples=[0.04],
    )


class PredictRequest(BaseModel):
    """JSON body of ``POST /v1/predict``: a CIF as text (``cif``), or any structure file (``structure``).

    ``structure`` is a file's text (CIF, POSCAR, extended XYZ) or a JSON object (a pymatgen
    ``Structure.as_dict()``, an OPTIMADE structure); ``format`` names it, else the reader finds it
    from ``filename`` or from the content.
    """

    model_config = ConfigDict(extra="forbid")

    cif: str | None = Field(None, description="The CIF file's text.")
    structure: str | dict[str, Any] | list[Any] | None = Field(
        None, description="A structure file's text, or a pymatgen / OPTIMADE structure as a JSON object."
    )
    format: Literal["cif", "poscar", "extxyz", "pymatgen-json", "optimade-json", "json"] | None = Field(
        None, description="The format of ``structure``; found from ``filename`` or the content when absent."
    )
    filename: str | None = Field(None, description="Helps find the format (``POSCAR``, ``x.xyz``); optional.")

    @model_validator(mode="after")
    def _one_structure(self) -> PredictRequest:
        if (self.cif is None) == (self.structure is None):
            raise ValueError('send exactly one of "cif" and "structure"')
        return self


class PredictResponse(BaseModel):
    """Predictions for one structure.

    ``predictions`` holds one answer per property: from the property's default model, or,
    when models are named (``?models=a,b``), from the first named model that predicts it.
    When several named models predict one property, the others' answers are listed in
    ``alternatives[property]`` in the order named.
    """

    structure: StructureInfo
    predictions: dict[str, Prediction]
    alternatives: dict[str, list[Prediction]] = Field(default_factory=dict)
    warnings: list[Notice] = Field(default_factory=list)
    provenance: dict[str, Provenance] = Field(
        default_factory=dict,
        description="Every model that answered, by ``name@version``: the exact weights, training data and "
        "graph settings behind its numbers.",
    )


class BatchResult(PredictResponse):
    """A structure of a batch that was predicted."""

    index: int = Field(description="Position of the input file (archive members in archive order).")
    filename: str = Field(description="File name; ``file#block`` for each block of a multi-block CIF.")
    ok: Literal[True] = True


class BatchError(BaseModel):
    """A file or data block of a batch that could not be predicted."""

    index: int
    filename: str
    ok: Literal[False] = False
    error: Notice


BatchItem = Annotated[BatchResult | BatchError, Field(discriminator="ok")]


class BatchResponse(BaseModel):
    """One result per structure, in input order (NDJSON streams the same items, one per line)."""

    results: list[BatchItem]
    n_ok: int
    n_failed: int


class PropertyInfo(BaseModel):
    """One property a model predicts, with its unit."""

    name: str = Field(examples=["band_gap"])
    unit: str = Field(examples=["eV"])
    p_metal: bool = Field(False, description="Its predictions carry the metal probability ``p_metal``.")
    sigma: bool = Field(False, description="Its predictions carry a calibrated ``sigma``.")


class ParameterCounts(BaseModel):
    """The model's number of trainable parameters."""

    total: int
    conv: int = Field(description="Parameters of the convolutions alone.")


class GraphSettings(BaseModel):
    """How structures become graphs for this model; ``fingerprint`` hashes what changes the graph."""

    fingerprint: str
    cutoff: float
    max_neighbors: int
    min_distance: float
    gaussian_start: float
    gaussian_stop: float
    gaussian_step: float
    gaussian_width: float
    feature_set: str
    feature_hash: str


class Provenance(BaseModel):
    """What a number can be traced to: the model's exact weights, its training data and graph settings."""

    model: str
    version: str
    weights_sha256: str | None = Field(description="sha256 of the weights file that computed it.")
    training_set: str | None = Field(
        description="Fingerprint of the training data (material ids, file contents, labels).",
        examples=["90d36f13e1e8f7f0"],
    )
    graph: GraphSettings


class TrainingSet(BaseModel):
    """The data a model was trained on: its fingerprint, split sizes and split seed."""

    fingerprint: str | None = None
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    split_seed: int | None = None


class UncertaintyInfo(BaseModel):
    """How a model's ``sigma`` is made and calibrated, and its applicability domain."""

    method: str = Field(examples=["embedding_distance"])
    how: str = Field(description="How sigma is made and calibrated, in words.")
    calibration: dict[str, dict[str, dict[str, float]]] = Field(
        description="The default sigma's figures per property, per split (val: fitted there; test: read once): "
        "within_1_sigma, within_2_sigma, spearman, mae_top10_sigma, mae_rest, mean_sigma, n."
    )
    calibration_ensemble: dict[str, dict[str, dict[str, float]]] = Field(
        default_factory=dict,
        description="The same figures for the sigma of `?uncertainty=ensemble` (properties with a partner model).",
    )
    ood_threshold: float = Field(description="Embedding distance above which `out_of_domain` is raised.")
    max_atoms: int | None = Field(None, description="Most atoms in a training cell (`too_many_atoms` above).")
    density_g_cm3: list[float] | None = Field(None, description="Training density range (`density_out_of_range`).")
    rare_below: int | None = Field(None, description="`element_rare_in_training_set` below this many crystals.")


class ModelInfo(BaseModel):
    """One model version of the registry."""

    name: str
    version: str
    ref: str = Field(description="``name@version``, accepted wherever a model name is.")
    latest: bool = Field(description="The newest version of this name (what ``name`` alone selects).")
    architecture: str = Field(examples=["cgcnn", "sr-cgcnn"])
    properties: list[PropertyInfo]
    default_for: list[str] = Field(description="Properties this model answers by default.")
    parameters: ParameterCounts
    graph: GraphSettings
    test_mae: dict[str, float] = Field(description="Test-set MAE per property, in its unit.")
    metrics: dict[str, dict[str, dict[str, float]]] = Field(
        description="Training metrics by split and property: mae, rmse, r2, n."
    )
    training_set: TrainingSet
    elements: list[str] | None = Field(None, description="Elements of the training set.")
    backend: str
    device: str
    provider: str | None = None
    precision: str = Field(description="Floating-point type inference runs in.")
    batch_invariant: bool | None = Field(
        None, description="Warm-up check: answers alone and in a batch were bit-identical (null: not checked)."
    )
    sha256: str | None = Field(None, description="sha256 of the weights file.")
    created: str | None = None
    uncertainty: UncertaintyInfo | None = Field(None, description="How its sigma is made; null: no sigma.")


class RefusedModelInfo(BaseModel):
    """A model folder that was not loaded."""

    path: str
    reason: str


class ModelList(BaseModel):
    """The loaded models, the default model per property, and the model folders refused."""

    models: list[ModelInfo]
    defaults: dict[str, str] = Field(description="Default model (``name@version``) per property.")
    refused: list[RefusedModelInfo]


class ReloadReport(BaseModel):
    """What a reload of the model repository changed; the rest kept serving throughout."""

    added: list[str] = Field(description="Model versions now served that were not (``name@version``).")
    replaced: list[str] = Field(description="Model versions whose folder changed, now served from it.")
    removed: list[str] = Field(description="Model versions no longer served: their folder is gone.")
    refused: list[RefusedModelInfo] = Field(
        description="New or changed folders that were not loaded, and why (a changed folder's previous "
        "version goes on serving)."
    )
    defaults: dict[str, str] = Field(description="Default model (``name@version``) per property, after the reload.")
    models: int = Field(description="Model versions served after the reload.")


class Health(BaseModel):
    """Liveness: the process answers."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Every model is loaded and warm: how many, and the properties they predict."""

    status: Literal["ready"] = "ready"
    models: int
    properties: list[str]
