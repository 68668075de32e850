"""Job results as CSV (one row per structure) or NDJSON (one ``BatchItem`` per line).

CSV columns: ``file, formula, n_sites``, then for each property of the job its value and the
model that gave it (``<property>``, ``<property>_model`` as ``name@version``; for the band gap
also ``band_gap_p_metal``, the metal probability, empty when the model has no metal head), then
``error_code`` and ``error``, then ``warnings`` (the answer's warning codes, space-separated:
the full sentences are in the NDJSON results). Values are in the property's unit (formation energy eV/atom,
band gap eV); ``formula`` is the reduced formula. No cell holds a line break, so a partial
download can be resumed by counting lines (``?offset=<rows already read>``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

__all__ = ["csv_header", "csv_lines", "ndjson_lines"]


#: Properties whose answers may carry a metal probability (``p_metal``), each given a column.
GATED = ("band_gap",)


def csv_header(properties: Sequence[str]) -> list[str]:
    columns = ["file", "formula", "n_sites"]
    for prop in properties:
        columns += [prop, f"{prop}_model"] + ([f"{prop}_p_metal"] if prop in GATED else [])
    return [*columns, "error_code", "error", "warnings"]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _csv_row(item: dict[str, Any], properties: Sequence[str]) -> list[object]:
    structure = item.get("structure") or {}
    row: list[object] = [
        _one_line(item.get("filename", "")),
        structure.get("reduced_formula", ""),
        structure.get("n_sites", ""),
    ]
    predictions = item.get("predictions") or {}
    for prop in properties:
        pred = predictions.get(prop)
        row += [pred["value"], f"{pred['model']}@{pred['version']}"] if pred else ["", ""]
        if prop in GATED:
            p_metal = pred.get("p_metal") if pred else None
            row.append("" if p_metal is None else p_metal)
    error = item.get("error") or {}
    warnings = " ".join(w.get("code", "") for w in item.get("warnings") or [])
    return [*row, error.get("code", ""), _one_line(error.get("detail", "")), warnings]


def _render(rows: Sequence[Sequence[object]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def csv_lines(payloads: Sequence[str], properties: Sequence[str], *, header: bool) -> str:
    """CSV text of stored result payloads, with the header line first when asked."""
    rows = [_csv_row(json.loads(p), properties) for p in payloads]
    return _render([csv_header(properties), *rows] if header else rows)


def ndjson_lines(payloads: Sequence[str]) -> str:
    """The stored ``BatchItem`` JSON, one per line."""
    return "".join(p + "\n" for p in payloads)
