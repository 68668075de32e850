"""Batch padding for the torch backend: :mod:`crystalgraph.padding` (shared with the offline predictor)."""

from __future__ import annotations

from crystalgraph import PAD_GRAPHS, Padder

__all__ = ["PAD_GRAPHS", "Padder"]
