"""Job results as CSV (one row per structure) or NDJSON (one ``BatchItem`` per line).

CSV columns: ``file, formula, n_sites``, then for each property of the job:

- ``<property>``: the value, in the property's unit (formation energy eV/atom, band gap eV);
- ``<property>_sigma``: its calibrated uncertainty, one standard deviation in the same unit
  (empty when the model has none);
- ``band_gap_p_metal``: for the band gap, the metal probability (empty without a metal head);
- provenance: ``<property>_model`` (``name@version``), ``<property>_weights_sha256``,
  ``<property>_training_set`` (the training data's fingerprint) and ``<property>_graph`` (the
  graph settings' fingerprint);
- for a job that named several models for one property (``models=a,b``), each other model's
  answer: ``<property>@<name@version>`` and ``<property>@<name@version>_sigma``;

then ``error_code`` and ``error``, then ``warnings`` (the answer's warning codes, space-separated:
the full sentences are in the NDJSON results). ``formula`` is the reduced formula. No cell holds
a line break, so a partial download can be resumed by counting lines (``?offset=<rows already read>``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["csv_header", "csv_lines", "ndjson_lines"]


#: Properties whose answers may carry a metal probability (``p_metal``), each given a column.
GATED = ("band_gap",)


def csv_header(properties: Sequence[str], alternatives: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """The CSV header (``alternatives``: property -> the other models' refs that answer it)."""
    columns = ["file", "formula", "n_sites"]
    for prop in properties:
        columns += [prop, f"{prop}_sigma"] + ([f"{prop}_p_metal"] if prop in GATED else [])
        columns += [f"{prop}_{key}" for key in PROVENANCE]
        for ref in (alternatives or {}).get(prop, ()):
            columns += [f"{prop}@{ref}", f"{prop}@{ref}_sigma"]
    return [*columns, "error_code", "error", "warnings"]


#: Provenance columns per property: column suffix -> how it is read from the answer.
PROVENANCE = ("model", "weights_sha256", "training_set", "graph")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _blank(value: object) -> object:
    return "" if value is None else value


def _provenance(item: dict[str, Any], pred: dict[str, Any] | None) -> list[object]:
    if not pred:
        return [""] * len(PROVENANCE)
    ref = f"{pred['model']}@{pred['version']}"
    prov = (item.get("provenance") or {}).get(ref) or {}
    return [ref, _blank(prov.get("weights_sha256")), _blank(prov.get("training_set")),
            _blank((prov.get("graph") or {}).get("fingerprint"))]  # fmt: skip


def _csv_row(
    item: dict[str, Any], properties: Sequence[str], alternatives: Mapping[str, Sequence[str]]
) -> list[object]:
    structure = item.get("structure") or {}
    row: list[object] = [
        _one_line(item.get("filename", "")),
        structure.get("reduced_formula", ""),
        structure.get("n_sites", ""),
    ]
    predictions = item.get("predictions") or {}
    others = item.get("alternatives") or {}
    for prop in properties:
        pred = predictions.get(prop)
        row += [pred["value"], _blank(pred.get("sigma"))] if pred else ["", ""]
        if prop in GATED:
            row.append(_blank(pred.get("p_metal")) if pred else "")
        row += _provenance(item, pred)
        by_ref = {f"{a['model']}@{a['version']}": a for a in others.get(prop, [])}
        for ref in alternatives.get(prop, ()):
            alt = by_ref.get(ref)
            row += [alt["value"], _blank(alt.get("sigma"))] if alt else ["", ""]
    error = item.get("error") or {}
    warnings = " ".join(w.get("code", "") for w in item.get("warnings") or [])
    return [*row, error.get("code", ""), _one_line(error.get("detail", "")), warnings]


def _render(rows: Sequence[Sequence[object]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def csv_lines(
    payloads: Sequence[str],
    properties: Sequence[str],
    *,
    header: bool,
    alternatives: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """CSV text of stored result payloads, with the header line first when asked."""
    alternatives = alternatives or {}
    rows = [_csv_row(json.loads(p), properties, alternatives) for p in payloads]
    return _render([csv_header(properties, alternatives), *rows] if header else rows)


def ndjson_lines(payloads: Sequence[str]) -> str:
    """The stored ``BatchItem`` JSON, one per line."""
    return "".join(p + "\n" for p in payloads)
