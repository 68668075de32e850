"""Answers of two running services for the same files, compared value by value."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

__all__ = ["Answers", "Comparison", "collect_answers", "compare_answers", "model_refs"]

#: ``(file, model@version, property)`` -> value in the property's unit, or ``(file, "", "error")``
#: -> the error code of a file or block that could not be predicted.
Answers = dict[tuple[str, str, str], float | str]


def model_refs(client: httpx.Client) -> tuple[list[str], list[dict[str, str]]]:
    """The ``name@version`` of every loaded model, and the refused folders, from ``/v1/models``."""
    listing = client.get("/v1/models").raise_for_status().json()
    return [m["ref"] for m in listing["models"]], listing["refused"]


def collect_answers(
    client: httpx.Client, files: Sequence[tuple[str, bytes]], models: Sequence[str], per_request: int = 100
) -> Answers:
    """Every model's answer for every structure of ``files`` (``(name, CIF bytes)``).

    Files go to ``/v1/predict/batch`` ``per_request`` at a time, naming all ``models`` (each
    property's first model answers in ``predictions``, the others in ``alternatives``).
    ``per_request=1`` sends each file alone.
    """
    answers: Answers = {}
    query = {"models": ",".join(models)}
    for start in range(0, len(files), per_request):
        chunk = files[start : start + per_request]
        response = client.post(
            "/v1/predict/batch", params=query, files=[("files", (name, data)) for name, data in chunk]
        ).raise_for_status()
        for item in response.json()["results"]:
            name = item["filename"]
            if not item["ok"]:
                answers[(name, "", "error")] = item["error"]["code"]
                continue
            for prop, first in item["predictions"].items():
                for pred in [first, *item.get("alternatives", {}).get(prop, [])]:
                    answers[(name, f"{pred['model']}@{pred['version']}", prop)] = float(pred["value"])
    return answers


@dataclass
class Comparison:
    """Two sets of answers side by side.

    Attributes:
        label: What was compared (``cuda/torch vs cpu/torch``).
        tolerance: The largest |difference| that passes, in the property's unit.
        compared: Number of values present in both as numbers.
        max_abs: Largest |difference| per property.
        worst: Where it occurred, per property.
        mismatched: Keys present in one only, or a number in one and an error in the other.
    """

    label: str
    tolerance: float
    compared: int = 0
    max_abs: dict[str, float] = field(default_factory=dict)
    worst: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    mismatched: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.compared > 0 and not self.mismatched and all(d <= self.tolerance for d in self.max_abs.values())

    def lines(self) -> list[str]:
        """A headline, then the largest difference per property and any mismatches."""
        out = [f"{self.label}: {self.compared} values, tolerance {self.tolerance:g}"]
        for prop in sorted(self.max_abs):
            file, model, _ = self.worst[prop]
            out.append(f"max |diff| {prop}: {self.max_abs[prop]:.3g} ({model}, {file})")
        if self.mismatched:
            shown = ", ".join("/".join(k) for k in self.mismatched[:5])
            out.append(f"{len(self.mismatched)} answers in one only or failed in one only: {shown}")
        if self.compared == 0:
            out.append("nothing to compare")
        return out


def compare_answers(a: Answers, b: Answers, label: str, tolerance: float) -> Comparison:
    """Compare two :data:`Answers`; every key must be in both, with numbers within ``tolerance``."""
    result = Comparison(label=label, tolerance=tolerance)
    for key in sorted(a.keys() | b.keys()):
        x, y = a.get(key), b.get(key)
        if isinstance(x, float) and isinstance(y, float):
            result.compared += 1
            diff = abs(x - y)
            prop = key[2]
            if diff > result.max_abs.get(prop, -1.0):
                result.max_abs[prop], result.worst[prop] = diff, key
        elif x != y:
            result.mismatched.append(key)
    return result
