"""Parse each structure once: an on-disk graph cache keyed by file content and graph settings.

The cache lives in ``<cache_dir>/graphs/<graph fingerprint>/`` as chunk files, each a plain
dict of packed tensors (``torch.load(weights_only=True)``). A file whose content was seen
before (under any name) is never parsed again; new files are parsed in a process pool and
appended as a new chunk. Structures that cannot be turned into graphs are cached too, as
their error code and message.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data
from tqdm import tqdm

from crystalgraph import GraphConfig, StructureError, cif_to_graphs

__all__ = ["GraphCache", "CachedError", "content_key", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$CRYSTAL_CACHE_DIR``, else ``~/.cache/crystal-service``."""
    return Path(os.environ.get("CRYSTAL_CACHE_DIR", Path.home() / ".cache" / "crystal-service"))


def content_key(data: bytes) -> str:
    """The cache key of a file: the sha256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


class CachedError(tuple):
    """``(code, message)`` of a structure that has no graph."""

    @property
    def code(self) -> str:
        """The stable error code (``invalid_cif``, ...)."""
        return self[0]

    @property
    def message(self) -> str:
        """The human sentence."""
        return self[1]


def _build(args: tuple[str, bytes, str]) -> tuple[str, tuple | None, tuple[str, str] | None]:
    key, data, config_json = args
    config = GraphConfig.model_validate_json(config_json)
    try:
        graphs = cif_to_graphs(data, config)
    except StructureError as exc:
        return key, None, (exc.code, str(exc))
    g = graphs[0][1]  # training data: one structure per file
    return key, (g.z.numpy(), g.edge_index.numpy(), g.edge_dist.numpy()), None


def _pack(entries: dict[str, tuple | CachedError]) -> dict:
    keys = [k for k, v in entries.items() if not isinstance(v, CachedError)]
    graphs = [entries[k] for k in keys]
    errors = {k: list(v) for k, v in entries.items() if isinstance(v, CachedError)}
    if not graphs:
        return {"keys": [], "errors": errors}
    return {
        "keys": keys,
        "errors": errors,
        "num_nodes": torch.tensor([len(g[0]) for g in graphs]),
        "num_edges": torch.tensor([g[1].shape[1] for g in graphs]),
        "z": torch.from_numpy(np.concatenate([g[0] for g in graphs])),
        "edge_index": torch.from_numpy(np.concatenate([g[1] for g in graphs], axis=1)),
        "edge_dist": torch.from_numpy(np.concatenate([g[2] for g in graphs])),
    }


def _unpack(chunk: dict) -> dict[str, Data | CachedError]:
    out: dict[str, Data | CachedError] = {k: CachedError(v) for k, v in chunk["errors"].items()}
    if not chunk["keys"]:
        return out
    zs = torch.split(chunk["z"], chunk["num_nodes"].tolist())
    eis = torch.split(chunk["edge_index"], chunk["num_edges"].tolist(), dim=1)
    ds = torch.split(chunk["edge_dist"], chunk["num_edges"].tolist())
    for key, z, ei, d in zip(chunk["keys"], zs, eis, ds, strict=True):
        out[key] = Data(z=z, edge_index=ei, edge_dist=d, num_nodes=len(z))
    return out


class GraphCache:
    """Graphs of CIF files, built once per (content, graph settings).

    Args:
        config: Graph settings.
        cache_dir: Root folder (default :func:`default_cache_dir`).
        workers: Parser processes (default: CPU count).
    """

    def __init__(self, config: GraphConfig, cache_dir: Path | None = None, workers: int | None = None) -> None:
        self.config = config
        self.folder = (cache_dir or default_cache_dir()) / "graphs" / config.fingerprint
        self.workers = workers or os.cpu_count() or 1
        self._entries: dict[str, Data | CachedError] | None = None

    def _load(self) -> dict[str, Data | CachedError]:
        if self._entries is None:
            self._entries = {}
            for chunk in sorted(self.folder.glob("chunk-*.pt")):
                self._entries.update(_unpack(torch.load(chunk, weights_only=True)))
        return self._entries

    def _save_chunk(self, new: dict[str, tuple | CachedError]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f"tmp-{uuid.uuid4().hex}.part"
        torch.save(_pack(new), tmp)
        tmp.replace(self.folder / f"chunk-{uuid.uuid4().hex[:12]}.pt")

    def graphs(self, paths: list[Path], progress: bool = True) -> tuple[list[Data | CachedError], list[str]]:
        """The graph (or cached error) of each file, and each file's content key.

        Missing graphs are built in a process pool and saved in chunks of a few thousand,
        so an interrupted run keeps what it parsed.
        """
        entries = self._load()
        contents = {}
        keys = []
        for p in paths:
            data = Path(p).read_bytes()
            key = content_key(data)
            keys.append(key)
            if key not in entries:
                contents[key] = data
        if contents:
            config_json = self.config.model_dump_json()
            todo = [(k, d, config_json) for k, d in contents.items()]
            pending: dict[str, tuple | CachedError] = {}
            bar = tqdm(total=len(todo), desc="parsing CIFs", unit="cif", disable=not progress)
            ctx = get_context("spawn")
            with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx) as pool:
                for key, packed, err in pool.map(_build, todo, chunksize=32):
                    if err is not None:
                        pending[key] = CachedError(err)
                    elif packed is not None:
                        pending[key] = packed
                    bar.update()
                    if len(pending) >= 4000:
                        self._save_chunk(pending)
                        pending = {}
            bar.close()
            if pending:
                self._save_chunk(pending)
            self._entries = None
            entries = self._load()
        return [entries[k] for k in keys], keys
