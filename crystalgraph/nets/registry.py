"""The architectures a model config can name: ``model_type`` -> config class and network class.

:data:`ARCHITECTURES` is the one place an architecture is declared. It drives
:func:`build_model` (the only factory), :func:`parse_model_config` (reading a checkpoint or a
manifest), :func:`architecture_names` (command-line choices) and, through those, the service. A
new architecture is a config class (a subclass of :data:`~crystalgraph.nets.config.ModelConfig`
whose ``model_type`` is a ``Literal`` of its name), a network class (a
:class:`~crystalgraph.nets.CrystalGraphNet` taking that config) and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._base import CrystalGraphNet
from .cgcnn import CGCNN
from .config import CGCNNConfig, ModelConfig, SRCGCNNConfig
from .sr_cgcnn import SRCGCNN

__all__ = [
    "Architecture",
    "ARCHITECTURES",
    "architecture",
    "architecture_names",
    "build_model",
    "parse_model_config",
]


@dataclass(frozen=True)
class Architecture:
    """One architecture: how its config is validated and its network built.

    Attributes:
        name: The config's ``model_type`` (``cgcnn``), the key in :data:`ARCHITECTURES`.
        config: The frozen pydantic config class; its ``model_type`` field defaults to ``name``.
        network: Builds a fresh network from a config of that class (usually the class itself).
        summary: One line for listings and ``--help``.
    """

    name: str
    config: type[ModelConfig]
    network: Callable[[Any], CrystalGraphNet]
    summary: str = ""

    def __post_init__(self) -> None:
        """Refuse an entry whose config class does not name it.

        Raises:
            ValueError: the config class has no ``model_type`` field defaulting to ``name``.
        """
        field = self.config.model_fields.get("model_type")
        if field is None or field.default != self.name:
            raise ValueError(f"{self.config.__name__}.model_type must default to {self.name!r}")


#: Every architecture, by ``model_type``. Adding one is adding an entry.
ARCHITECTURES: dict[str, Architecture] = {
    "cgcnn": Architecture("cgcnn", CGCNNConfig, CGCNN, "CGCNN: stacked gated convolutions (Xie & Grossman 2018)"),
    "sr-cgcnn": Architecture(
        "sr-cgcnn", SRCGCNNConfig, SRCGCNN, "SR-CGCNN: one gated convolution applied n_steps times"
    ),
}


def architecture_names() -> list[str]:
    """The registered ``model_type`` names, in registration order (``["cgcnn", "sr-cgcnn"]``)."""
    return list(ARCHITECTURES)


def architecture(name: str) -> Architecture:
    """The registered architecture called ``name``.

    Raises:
        ValueError: no architecture has that name (the message lists the known ones).
    """
    try:
        return ARCHITECTURES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model_type {name!r}; known: {', '.join(ARCHITECTURES)}") from None


def parse_model_config(data: Mapping[str, Any]) -> ModelConfig:
    """Validate a plain dict (from a checkpoint or manifest) into its architecture's config.

    Raises:
        ValueError: an unknown or missing ``model_type``; a ``pydantic.ValidationError`` (also a
            ``ValueError``) for fields the config refuses, unknown keys included.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"a model config is a mapping, not {type(data).__name__}")
    if "model_type" not in data:
        raise ValueError(f"a model config needs a model_type: one of {', '.join(ARCHITECTURES)}")
    return architecture(data["model_type"]).config.model_validate(dict(data))


def build_model(config: ModelConfig) -> CrystalGraphNet:
    """The one factory: a fresh network for a config of any registered architecture.

    Raises:
        TypeError: ``config`` is not an instance of its architecture's config class.
    """
    arch = ARCHITECTURES.get(getattr(config, "model_type", ""))
    if arch is None or not isinstance(config, arch.config):
        raise TypeError(f"not a registered model config: {type(config).__name__}")
    return arch.network(config)
