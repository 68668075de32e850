"""The gemmi reader against pymatgen's ``CifParser`` (the reader it replaced) on the shared CIFs.

For each CIF: the same species in the same order, Cartesian positions within 1e-4 Å, the same
lattice, and identical crystal graphs (atoms, edges, distances), the graph of the new reader's
structure built by today's two-radius neighbour list and by the one-search reference it replaced;
every exception is listed with why. Then CIF -> graph structures/s on one core, old reader and
neighbour list vs new, on the first 2,000 CIFs.

The shipped models' predictions (every model of ``--models``, as served) from pymatgen's
structure and from the new reader's are compared on every 20th compared CIF
(``CRYSTAL_BENCH_READER_PREDICT_EVERY=1``: on each; ``0``: not at all).

``python -m bench --data DIR --only reader`` checks every CIF; ``CRYSTAL_BENCH_READER_N=3000``
checks the first 3,000 only.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import time
import warnings
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from crystalgraph import (
    Crystal,
    GraphConfig,
    StructureError,
    crystal_graph,
    neighbor_list,
    read_structures,
    structure_to_graph,
)

N_SPEED = 2000
CONFIG = GraphConfig()


def pymatgen_read(data: bytes) -> list[Structure]:
    """The reader before gemmi: pymatgen's ``CifParser`` with the settings the service used."""
    from pymatgen.io.cif import CifParser

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parser = CifParser(io.StringIO(data.decode("utf-8", "replace")), occupancy_tolerance=1.0, site_tolerance=1e-4)
        return parser.parse_structures(primitive=False, on_error="ignore", check_occu=False)


def reference_neighbors(structure: Structure, config: GraphConfig) -> tuple[np.ndarray, ...]:
    """The neighbour list before the two-radius search: one search at the cutoff, every pair sorted."""
    n = len(structure)
    center, neighbor, images, dist = structure.get_neighbor_list(r=config.cutoff, numerical_tol=1e-8, exclude_self=True)
    images = np.asarray(images, dtype=np.int64).reshape(-1, 3)
    order = np.lexsort((images[:, 2], images[:, 1], images[:, 0], neighbor, np.round(dist, 6), center))
    center, neighbor, dist = center[order], neighbor[order], dist[order]
    counts = np.bincount(center, minlength=n)
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    keep = np.arange(len(center)) - np.repeat(first, counts) < config.max_neighbors
    return center[keep].astype(np.int64), neighbor[keep].astype(np.int64), dist[keep]


def _same_neighbors(structure: Structure) -> bool:
    new: object
    ref: object
    try:
        new = neighbor_list(structure, CONFIG)
    except StructureError as exc:
        new = exc.code
    try:
        ref = reference_neighbors(structure, CONFIG)
    except Exception:  # noqa: BLE001
        return isinstance(new, str)
    if isinstance(new, str):
        return bool((ref[2] < CONFIG.min_distance).any() or np.bincount(ref[0], minlength=len(structure)).min() == 0)
    return all(np.array_equal(x, y) for x, y in zip(new, ref, strict=True))


def _graph(structure: Structure) -> tuple[np.ndarray, ...] | str:
    try:
        g = structure_to_graph(structure, CONFIG)
    except StructureError as exc:
        return exc.code
    return g.z.numpy(), g.edge_index.numpy(), g.edge_dist.numpy()


def compare(data: bytes) -> str | None:
    """``None`` when both readers agree on the file, else why not."""
    try:
        old = pymatgen_read(data)
    except Exception as exc:  # noqa: BLE001 - pymatgen raises many types
        old = []
        old_error = f"{type(exc).__name__}: {exc}"
    else:
        old_error = "no structure" if not old else ""
    blocks = read_structures(data, fmt="cif")
    new = [b for b in blocks if b.structure is not None]
    if not old or not new:
        new_error = blocks[0].error if blocks and blocks[0].error else "no structure"
        return f"pymatgen: {old_error or 'read'}; gemmi: {new_error if not new else 'read'}"
    if len(old) != len(new):
        return f"{len(old)} blocks with pymatgen, {len(new)} with gemmi"
    for a, block in zip(old, new, strict=True):
        b = block.structure
        assert b is not None
        if [s.species for s in a] != [s.species for s in b]:
            return f"species differ: {a.composition.formula} / {b.composition.formula}"
        if not np.allclose(a.lattice.matrix, b.lattice.matrix, atol=1e-8):
            return "lattices differ"
        shift = float(np.abs(a.cart_coords - b.cart_coords).max())
        if shift >= 1e-4:
            return f"positions differ by {shift:.2e} A"
        ga, gb = _graph(a), _graph(b)
        if isinstance(ga, str) or isinstance(gb, str):
            if ga != gb:
                return f"graph errors differ: {ga} / {gb}"
        elif not all(np.array_equal(x, y) for x, y in zip(ga, gb, strict=True)):
            return "graphs differ"
        if not _same_neighbors(b):
            return "the two-radius neighbour list differs from the one-search reference"
        if isinstance(block.value, Crystal) and not isinstance(gb, str):
            fast = crystal_graph(block.value, CONFIG)
            if not all(
                np.array_equal(x, y) for x, y in zip((fast.z, fast.edge_index, fast.edge_dist), gb, strict=True)
            ):
                return "the array path's graph differs from the Structure path's"
        if block.notices:
            return "notices on an MP file: " + "; ".join(f"{n.code}: {n.detail}" for n in block.notices)
    return None


def compare_predictions(paths: list[Path], models_dir: Path) -> tuple[int, float, list[tuple[str, str]]]:
    """The shipped models' predictions from pymatgen's structures against the new reader's.

    Every model of ``models_dir`` (primary and alternatives, ONNX as served) predicts each file
    twice: from the structure pymatgen's ``CifParser`` reads (given as a ``Structure``), and from
    the file itself (the gemmi reader, the array path). Files pymatgen reads as one structure only.

    Returns:
        ``(files compared, largest absolute difference of any value, [(file, why)] exceptions)``.
    """
    from crystalgraph import Answer, Predictor

    predictor = Predictor(models_dir, models=sorted({v.name for v in Predictor(models_dir).versions}))
    old_inputs, new_inputs, names = [], [], []
    for path in paths:
        try:
            old = pymatgen_read(path.read_bytes())
        except Exception:  # noqa: BLE001 - compared by compare(); here only files both read
            continue
        if len(old) == 1:
            old_inputs.append(old[0])
            new_inputs.append(str(path))
            names.append(path.name)
    olds = predictor.predict(old_inputs, progress=False)
    news = predictor.predict(new_inputs, progress=False)
    assert isinstance(olds, list) and isinstance(news, list)

    def values(answer: Answer) -> dict[tuple[str, str], float]:
        out = {(p, f"{x.model}@{x.version}"): x.value for p, x in answer.predictions.items()}
        for p, alts in answer.alternatives.items():
            out.update({(p, f"{x.model}@{x.version}"): x.value for x in alts})
        return out

    worst = 0.0
    exceptions: list[tuple[str, str]] = []
    for name, a, b in zip(names, olds, news, strict=True):
        if not isinstance(a, Answer) or not isinstance(b, Answer):
            codes = [x.error.code if not isinstance(x, Answer) else "answered" for x in (a, b)]
            if codes[0] != codes[1]:
                exceptions.append((name, f"pymatgen: {codes[0]}; new reader: {codes[1]}"))
            continue
        va, vb = values(a), values(b)
        if va.keys() != vb.keys():
            exceptions.append((name, "different models answered"))
            continue
        diff = max(abs(va[k] - vb[k]) for k in va)
        worst = max(worst, diff)
        if diff >= 1e-5:
            exceptions.append((name, f"predictions differ by {diff:.2e}"))
    return len(names), worst, exceptions


def _old(data: bytes) -> None:
    """Before: pymatgen's reader, the one-search neighbour list (no torch Data built)."""
    for s in pymatgen_read(data):
        np.array([site.specie.Z for site in s])
        reference_neighbors(s, CONFIG)


def _structure_path(data: bytes) -> None:
    """The gemmi reader with a pymatgen Structure built, and its graph (the path before the array path)."""
    for block in read_structures(data, fmt="cif"):
        if block.structure is not None:
            _graph(block.structure)


def _parse(data: bytes) -> list[Crystal]:
    return [b.value for b in read_structures(data, fmt="cif") if isinstance(b.value, Crystal)]


def _graphs(crystals: list[Crystal]) -> None:
    for crystal in crystals:
        with contextlib.suppress(StructureError):
            crystal_graph(crystal, CONFIG)


def _speed(cifs: list[bytes]) -> dict[str, tuple[float, float]]:
    """Seconds (wall, CPU) per path.

    The paths run interleaved in chunks of 50 files, so that load from other processes (the machine
    may be training) hits every path alike.
    """
    spent = {name: [0.0, 0.0] for name in ("old", "structure", "parse", "graph")}
    order = ["old", "structure", "new"]
    for start in range(0, len(cifs), 50):
        chunk = cifs[start : start + 50]
        order = order[1:] + order[:1]
        for name in order:
            if name == "new":
                t0, c0 = time.perf_counter(), time.process_time()
                crystals = [c for data in chunk for c in _parse(data)]
                t1, c1 = time.perf_counter(), time.process_time()
                _graphs(crystals)
                t2, c2 = time.perf_counter(), time.process_time()
                spent["parse"][0] += t1 - t0
                spent["parse"][1] += c1 - c0
                spent["graph"][0] += t2 - t1
                spent["graph"][1] += c2 - c1
                continue
            fn = _old if name == "old" else _structure_path
            t0, c0 = time.perf_counter(), time.process_time()
            for data in chunk:
                fn(data)
            spent[name][0] += time.perf_counter() - t0
            spent[name][1] += time.process_time() - c0
    return {name: (wall, cpu) for name, (wall, cpu) in spent.items()}


def run(args: argparse.Namespace) -> None:
    """Print this section's figures for ``args.data`` (see the module docstring)."""
    paths = sorted((Path(args.data) / "cifs").glob("*.cif"))
    limit = int(os.environ.get("CRYSTAL_BENCH_READER_N", "0") or 0)
    checked = paths[:limit] if limit else paths
    t0 = time.perf_counter()
    exceptions = []
    for i, path in enumerate(checked, 1):
        why = compare(path.read_bytes())
        if why is not None:
            exceptions.append((path.name, why))
        if i % 5000 == 0:
            print(f"  {i} CIFs compared, {len(exceptions)} exceptions ({time.perf_counter() - t0:.0f} s)", flush=True)
    n_exc = len(exceptions)
    print(f"{len(checked)} of {len(paths)} shared CIFs compared with pymatgen's CifParser: {n_exc} exceptions")
    for name, why in exceptions:
        print(f"  {name}: {why}")
    every = int(os.environ.get("CRYSTAL_BENCH_READER_PREDICT_EVERY", "20") or 0)
    if every and Path(args.models).is_dir():
        n_pred, worst, wrong = compare_predictions(checked[::every], Path(args.models))
        print(
            f"Shipped models' predictions on {n_pred} CIFs (every {every}th compared one): pymatgen's structure vs "
            f"the new reader's, largest difference {worst:.1e}, {len(wrong)} at or above 1e-5"
        )
        for name, why in wrong:
            print(f"  {name}: {why}")
    cifs = [p.read_bytes() for p in paths[:N_SPEED]]
    spent = _speed(cifs)
    n = len(cifs)
    new = (spent["parse"][0] + spent["graph"][0], spent["parse"][1] + spent["graph"][1])
    rows = [
        ("before (pymatgen reader, one search)", spent["old"]),
        ("gemmi reader + Structure + graph", spent["structure"]),
        ("now: gemmi -> arrays -> graph", new),
        ("  of which parse (gemmi -> arrays)", spent["parse"]),
        ("  of which graph (neighbours -> arrays)", spent["graph"]),
    ]
    print(f"CIF -> graph on {n} shared CIFs, one core, paths interleaved in chunks of 50 files (same run):")
    for name, (wall, cpu) in rows:
        rate = f"{n / wall:7.0f} structures/s wall  {n / cpu:7.0f}/s per CPU-second"
        print(f"  {name:42s} {rate}  ({cpu / n * 1e3:.3f} CPU ms each)")
    print(f"  now vs before: {spent['old'][1] / new[1]:.1f}x (CPU time); target >= 2,000 structures/s per core")
