"""Offline screening on Ray: ``python -m service screen INPUT... --out results.parquet`` (or ``.csv``).

For inputs too large for an upload. Each INPUT is a folder (every file in it, sorted, archives
unpacked), an archive (``.zip``, ``.tar``, ``.tar.gz``), a Parquet or JSONL file of structures
(one per row: the text in a ``cif`` or ``structure`` column, a dict there read as pymatgen or
OPTIMADE JSON; the name in ``id``, ``filename`` or ``name``), or one structure file. The files
run through the jobs' Ray executor (:class:`service.jobs._ray.RayExecutor`: the service's reader,
graphs, models and answers, no second copy) on a local Ray instance (``--address local``) or a
cluster (``auto``, ``host:port``, ``ray://host:port``; default ``CRYSTAL_RAY_ADDRESS``).

The output has one row per structure with the columns of a job's CSV results
(``service.jobs.csv_header``: values, models, warnings, error codes...), in input order. It is
written in partitions of ``--partition-size`` input files, each atomically: Parquet output is a
folder of ``part-NNNNN.parquet`` files (a Parquet dataset: ``pandas.read_parquet(out)``), CSV
output is gathered from ``<out>.parts/`` into one file at the end. Run the same command again
after an interruption: partitions already written are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from .archives import archive_kind, unpack
from .errors import FileTooLarge, ServiceError
from .jobs import csv_header
from .jobs._export import csv_lines
from .jobs._store import InputRow
from .settings import Settings, get_settings
from .uploads import Upload

__all__ = ["main", "read_inputs", "screen"]

_TABLES = (".parquet", ".jsonl", ".ndjson")
_ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz")


def _too_large(name: str, limit: int) -> Upload:
    return Upload(name, error=FileTooLarge(f"{name!r} is larger than {limit:,} bytes, the limit per file."))


def _rows(path: Path) -> Iterator[dict[str, object]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()
    else:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)


def _table(path: Path) -> Iterator[Upload]:
    """One upload per row of a Parquet / JSONL file of structures."""
    for n, row in enumerate(_rows(path)):
        name = str(row.get("id") or row.get("filename") or row.get("name") or f"{path.name}#{n}")
        content = row.get("cif", row.get("structure"))
        if isinstance(content, dict):
            yield Upload(name if name.endswith(".json") else f"{name}.json", json.dumps(content).encode())
        elif isinstance(content, str | bytes):
            data = content.encode() if isinstance(content, str) else content
            yield Upload(name if "." in name.rsplit("/", 1)[-1] else f"{name}.cif", data)
        else:
            yield Upload(
                name, error=ServiceError("The row has no 'cif' or 'structure' column.", code="invalid_request")
            )


def _file(path: Path, name: str, settings: Settings) -> Iterator[Upload]:
    if path.name.endswith(_TABLES):
        yield from _table(path)
        return
    if path.stat().st_size > max(settings.max_file_bytes, settings.jobs_max_request_bytes):
        yield _too_large(name, settings.max_file_bytes)
        return
    data = path.read_bytes()
    if path.name.endswith(_ARCHIVES) and archive_kind(path.name, data) is not None:
        try:
            members = unpack(
                path.name,
                data,
                max_file_bytes=settings.max_file_bytes,
                max_files=settings.jobs_max_files,
                max_unpacked_bytes=settings.jobs_max_unpacked_bytes,
            )
        except ServiceError as exc:
            yield Upload(name, error=exc)
            return
        for m in members:
            member = f"{name}/{m.name}"
            yield _too_large(member, settings.max_file_bytes) if m.data is None else Upload(member, m.data)
        return
    yield _too_large(name, settings.max_file_bytes) if len(data) > settings.max_file_bytes else Upload(name, data)


def read_inputs(paths: Sequence[Path], settings: Settings) -> Iterator[Upload]:
    """Every structure of the inputs, in a fixed order (folders sorted), as uploads.

    Raises:
        FileNotFoundError: an input does not exist.
    """
    for path in paths:
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
                yield from _file(file, file.relative_to(path).as_posix(), settings)
        elif path.is_file():
            yield from _file(path, path.name, settings)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")


def _parquet_bytes(csv_text: str, properties: Sequence[str]) -> bytes:
    """The CSV of a partition as Parquet: values and probabilities as float64, ``n_sites`` int64, the rest text."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    header = csv_header(properties)
    types = {
        c: pa.int64()
        if c == "n_sites"
        else pa.float64()
        if c in properties or c.endswith(("_p_metal", "_sigma"))
        else pa.string()
        for c in header
    }
    table = pacsv.read_csv(
        io.BytesIO(csv_text.encode()),
        convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


async def screen(
    inputs: Sequence[Path],
    out: Path,
    settings: Settings,
    *,
    models: Sequence[str] | None = None,
    partition_size: int = 1000,
    progress: bool = True,
    **ray_init: object,
) -> dict[str, int]:
    """Screen every structure of ``inputs`` into ``out`` (see the module's docstring).

    Args:
        inputs: Folders, archives, Parquet / JSONL files, structure files.
        out: ``*.parquet`` (a folder of partitions) or ``*.csv`` (one file).
        settings: ``models_dir``, ``ray_address``, limits; as the service's.
        models: Models to run (``name`` or ``name@version``); default: each property's default.
        partition_size: Input files per output partition.
        progress: Show a progress bar (on stderr).
        ray_init: More ``ray.init`` arguments for a local instance (``num_cpus``, ``_temp_dir``).

    Returns:
        Counts: ``files`` seen, ``skipped`` (in partitions written before), ``rows`` written now.
    """
    from tqdm import tqdm

    from .backends import resolve_device, resolve_precision
    from .jobs._ray import RayExecutor
    from .repository import load_registry

    as_csv = out.suffix == ".csv"
    parts = out.with_name(out.name + ".parts") if as_csv else out
    parts.mkdir(parents=True, exist_ok=True)
    device = resolve_device(settings.device)
    registry = load_registry(
        settings.models_dir,
        backend=settings.backend,
        device=device,
        precision=resolve_precision(settings.precision, device),
        defaults=settings.defaults,
        model_backends=settings.model_backends,
    )
    selection = registry.select(list(models) if models else None)
    properties = list(selection.primary)
    executor = RayExecutor(settings, **ray_init)
    counts = {"files": 0, "skipped": 0, "rows": 0}
    bar = tqdm(unit="file", disable=not progress, file=sys.stderr, desc="screen")
    started = False
    try:
        uploads = read_inputs(inputs, settings)
        for number in itertools.count():
            batch = [u for _, u in zip(range(partition_size), uploads, strict=False)]
            if not batch:
                break
            first = number * partition_size
            counts["files"] += len(batch)
            part = parts / f"part-{number:05d}.{'csv' if as_csv else 'parquet'}"
            if part.exists():
                counts["skipped"] += len(batch)
                bar.update(len(batch))
                continue
            if not started:
                await executor.start()
                started = True
            pending = [InputRow(first + i, u.filename, 0, len(u.data)) for i, u in enumerate(batch)]
            results = []
            async for result in executor.run(selection, pending, batch, strict=settings.strict):
                results.append(result)
                bar.update(1)
            results.sort(key=lambda r: r.idx)
            payloads = [payload for r in results for _, payload in r.rows]
            counts["rows"] += len(payloads)
            text = csv_lines(payloads, properties, header=True)
            _write_atomically(part, text.encode() if as_csv else _parquet_bytes(text, properties))
    finally:
        bar.close()
        if started:
            await executor.stop()
    if as_csv:
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "wb") as dest:
            for i, part in enumerate(sorted(parts.glob("part-*.csv"))):
                with open(part, "rb") as src:
                    if i:
                        src.readline()  # each partition repeats the header
                    shutil.copyfileobj(src, dest)
        os.replace(tmp, out)
        shutil.rmtree(parts)
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m service screen``: parse the command line, screen, print the counts."""
    parser = argparse.ArgumentParser(prog="python -m service screen", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="folders, archives, Parquet/JSONL files, structure files")
    parser.add_argument("--out", type=Path, required=True, help="results.parquet (a folder of parts) or results.csv")
    parser.add_argument("--address", help="Ray cluster: auto, local, host:port, ray://host:port (CRYSTAL_RAY_ADDRESS)")
    parser.add_argument("--models", help="comma-separated models (name or name@version); default: the defaults")
    parser.add_argument("--partition-size", type=int, default=1000, help="input files per output partition")
    parser.add_argument("--num-cpus", type=int, help="CPUs of a local Ray instance (default: all)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.out.suffix not in {".parquet", ".csv"}:
        parser.error("--out must end in .parquet or .csv")
    if args.partition_size < 1:
        parser.error("--partition-size must be at least 1")
    settings = Settings(ray_address=args.address) if args.address else get_settings()  # the rest: CRYSTAL_*
    init = {"num_cpus": args.num_cpus} if args.num_cpus and settings.ray_address == "local" else {}
    try:
        counts = asyncio.run(
            screen(
                args.inputs,
                args.out,
                settings,
                models=args.models.split(",") if args.models else None,
                partition_size=args.partition_size,
                progress=not args.no_progress,
                **init,
            )
        )
    # a missing input or model, Ray not installed, a cluster that did not start the actors in time
    except (FileNotFoundError, ServiceError, RuntimeError, TimeoutError) as exc:
        print(f"screen: {exc}", file=sys.stderr)
        return 2
    print(
        f"{counts['files']} file(s): {counts['rows']} row(s) written, "
        f"{counts['skipped']} file(s) in partitions written before; results in {args.out}"
    )
    return 0
