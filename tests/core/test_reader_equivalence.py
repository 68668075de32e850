"""The gemmi reader gives pymatgen's structures and graphs on real Materials Project CIFs (slow).

``python -m bench --only reader`` runs the same comparison on every shared CIF.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.reader import compare, compare_predictions


@pytest.mark.slow
@pytest.mark.data
def test_same_structures_and_graphs_as_pymatgen_on_real_cifs(mp_subset: Path) -> None:
    paths = sorted((mp_subset / "cifs").glob("*.cif"))
    assert len(paths) > 300
    exceptions = {p.name: why for p in paths if (why := compare(p.read_bytes())) is not None}
    assert exceptions == {}


@pytest.mark.slow
@pytest.mark.data
def test_shipped_models_predict_the_same_from_either_reader(mp_subset: Path) -> None:
    from crystalgraph import default_models_dir

    paths = sorted((mp_subset / "cifs").glob("*.cif"))[::4]
    compared, worst, exceptions = compare_predictions(paths, default_models_dir())
    assert compared > 80 and exceptions == [] and worst < 1e-5
