"""The Python API against a remote service: ``crystalgraph.Predictor``'s call, over HTTP.

    from crystal_client import RemotePredictor
    remote = RemotePredictor("http://lab-server:8000", api_key=...)
    answer = remote.predict(structure)          # a pymatgen Structure, ASE Atoms or a file path
    answer["predictions"]["band_gap"]["value"]
    answers = remote.predict(paths)             # a list: /v1/predict/batch items, with a progress bar

Answers are the service's JSON, as dicts (``crystalgraph.Answer.to_dict()`` is the same shape
offline). A ``Structure`` (or ``Atoms``, converted by pymatgen) is sent as pymatgen JSON, the
way the offline predictor reads it; pymatgen (and ASE) are needed only for those inputs, so the
client package itself still needs only httpx and tqdm.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from tqdm import tqdm

from ._http import ServiceClient

__all__ = ["RemotePredictor"]

#: Files per ``/v1/predict/batch`` request.
_CHUNK = 64


def _is_atoms(item: object) -> bool:
    """An ASE ``Atoms`` (or a subclass, like pymatgen's ``MSONAtoms``), without importing ASE."""
    return any(c.__name__ == "Atoms" and c.__module__.split(".")[0] == "ase" for c in type(item).__mro__)


def _as_file(item: object, position: int) -> tuple[str, bytes]:
    """``(file name, bytes)`` of a path, a pymatgen ``Structure`` or ASE ``Atoms`` (as pymatgen JSON)."""
    if isinstance(item, str | os.PathLike):
        return str(item), Path(item).read_bytes()
    module = type(item).__module__.split(".")[0]
    if _is_atoms(item):
        from pymatgen.io.ase import AseAtomsAdaptor

        item = AseAtomsAdaptor.get_structure(cast(Any, item))
        module = "pymatgen"
    if module == "pymatgen" and hasattr(item, "as_dict"):
        return f"structure{position}.json", json.dumps(item.as_dict()).encode()
    raise TypeError(f"cannot predict a {type(item).__name__}: give a pymatgen Structure, ASE Atoms or a file path")


class RemotePredictor:
    """Predictions from a running service, with the offline ``crystalgraph.Predictor``'s call.

    Args:
        url: The service (``http://127.0.0.1:8000``).
        api_key: Its ``X-API-Key``, when it has keys.
        models: Model references (``name``, ``name@version``, ``name@latest``, ``default``);
            default: the service's default per property.
        retries: Retries on connection errors and 502/503/504 (see :class:`ServiceClient`).
    """

    def __init__(
        self, url: str, *, api_key: str | None = None, models: list[str] | None = None, retries: int = 8
    ) -> None:
        self.client = ServiceClient(url, api_key=api_key, retries=retries)
        self.params = {"models": ",".join(models)} if models else {}

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> RemotePredictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def predict(self, inputs: object, *, progress: bool | None = None) -> dict[str, Any] | list[dict[str, Any]]:
        """One structure's answer (``POST /v1/predict``), or a list's items (``/v1/predict/batch``).

        Args:
            inputs: A pymatgen ``Structure``, ASE ``Atoms`` or a file path, or a list (tuple) of them.
            progress: A progress bar over a list (default: for lists of 100 or more).

        Raises:
            ServiceError: one input the service refused (its ``code`` and ``detail``), or the
                service cannot be reached.
        """
        if isinstance(inputs, list | tuple):
            show = len(inputs) >= 100 if progress is None else progress
            return list(self._predict_many(list(inputs), show))
        name, data = _as_file(inputs, 0)
        answer: dict[str, Any] = self.client.request(
            "POST",
            "/v1/predict",
            params=self.params,
            body=lambda: {"files": {"file": (Path(name).name, data, "application/octet-stream")}},
        ).json()
        return answer

    def _predict_many(self, items: list[object], progress: bool) -> Iterator[dict[str, Any]]:
        with tqdm(total=len(items), unit="structure", disable=not progress, desc="predicting") as bar:
            for start in range(0, len(items), _CHUNK):
                files = [_as_file(item, start + k) for k, item in enumerate(items[start : start + _CHUNK])]

                def body(files: list[tuple[str, bytes]] = files) -> dict[str, Any]:
                    return {"files": [("files", (name, data, "application/octet-stream")) for name, data in files]}

                response = self.client.request("POST", "/v1/predict/batch", params=self.params, body=body)
                for item in response.json()["results"]:
                    item["index"] += start  # the position in the whole list
                    yield item
                bar.update(len(files))
