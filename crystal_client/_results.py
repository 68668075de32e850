"""Where ``screen`` writes a job's results: CSV, NDJSON or JSON, chosen by ``--out``'s suffix.

``.csv`` gets the service's CSV as it is (per property the value, ``<property>_sigma``, the band
gap's ``band_gap_p_metal``, provenance columns and a column per other named model; then
``warnings``: see ``service/jobs/_export.py``); ``.ndjson``
or ``.jsonl`` one JSON object per line (the ``/v1/predict/batch`` items, warnings and
alternatives included); ``.json`` one JSON array of those objects. Any other suffix is refused
before anything is uploaded, rather than writing CSV under a misleading name.

The download goes to ``OUT.<job>.part`` and is renamed once complete; a rerun with ``--job``
continues a partial download where it stopped (rows are lines in both formats the service
streams, so whole lines are kept and the cut last one is dropped).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx

from ._http import RETRY_STATUSES, ServiceClient, ServiceError

__all__ = ["results_format", "download"]

_FORMATS = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "json"}


def results_format(out: Path) -> str:
    """``csv``, ``ndjson`` or ``json`` for ``out``'s suffix.

    Raises:
        ServiceError: ``bad_out``, for any other suffix.
    """
    fmt = _FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ServiceError(
            "bad_out", f"--out {out}: write results to a .csv, .json or .ndjson file (the suffix picks the format)"
        )
    return fmt


def _complete_rows(part: Path, *, header: bool) -> int:
    """Data rows in a partial download (``-1``: not even the CSV header), its cut last line dropped.

    The service's CSV holds no line break inside a cell and its NDJSON one object per line.
    """
    if not part.exists():
        return -1
    data = part.read_bytes()
    keep = data[: data.rfind(b"\n") + 1]
    if len(keep) != len(data):
        with open(part, "r+b") as fh:
            fh.truncate(len(keep))
    lines = keep.count(b"\n")
    return lines - 1 if header else lines


def _ndjson_to_json(part: Path, out: Path) -> None:
    rows = [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines() if line.strip()]
    tmp = out.with_name(f"{out.name}.tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    part.unlink()


def download(client: ServiceClient, job_id: str, out: Path) -> int:
    """Download the job's results to ``out`` in its format, resuming ``out.<job>.part``; the rows written."""
    fmt = results_format(out)
    wire = "csv" if fmt == "csv" else "ndjson"
    header = wire == "csv"
    part = out.with_name(f"{out.name}.{job_id}.part")
    rows = _complete_rows(part, header=header)
    if rows > 0:
        client.log(f"resuming the download after {rows} rows")
    attempt = 0
    while True:
        params: dict[str, str | int] = {"format": wire, "offset": max(rows, 0), "header": str(rows < 0).lower()}
        try:
            with client.http.stream("GET", f"/v1/jobs/{job_id}/results", params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    if response.status_code not in RETRY_STATUSES:
                        raise ServiceError.from_response(response)
                    raise httpx.TransportError(f"HTTP {response.status_code}")
                with open(part, "ab") as fh:
                    for chunk in response.iter_bytes():
                        fh.write(chunk)
            break
        except httpx.TransportError as exc:
            attempt += 1
            client.wait(attempt, f"download: {type(exc).__name__}: {exc or 'connection lost'}")
            rows = _complete_rows(part, header=header)
    rows = _complete_rows(part, header=header)
    if fmt == "json":
        _ndjson_to_json(part, out)
    else:
        os.replace(part, out)
    return max(rows, 0)
