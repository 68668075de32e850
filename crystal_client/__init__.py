"""Client of the prediction service: the ``crystal-predict`` command.

A package of its own, not part of ``service``: importing ``service`` builds on torch and
pymatgen, while the client needs only httpx and tqdm, so it starts in a fraction of a second
and can be installed where the service is not: ``pip install ./crystal_client`` (its own
``pyproject.toml``) installs it with httpx and tqdm alone.
"""

from __future__ import annotations

from ._http import ServiceClient, ServiceError
from ._predict import RemotePredictor
from .cli import main

#: The project's version (``crystalgraph.__version__``; a test keeps the two equal).
__version__ = "0.1.0"

__all__ = ["RemotePredictor", "ServiceClient", "ServiceError", "main", "__version__"]
