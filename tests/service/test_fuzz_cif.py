"""hypothesis: CIF-like text never crashes the reader; every refusal is a stable code and a sentence.

The generated texts mix CIF syntax (``data_`` blocks, cell items, ``loop_``s of atom sites with
odd numbers, quotes, semicolon fields, blank lines) with noise, and go through the function the
parse workers run (``service.featurize.featurize``). Fast by default; ``-m slow`` runs longer.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crystalgraph import GraphConfig
from service.featurize import featurize

_NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["0", "0.5", "-1", "1e300", "-1e300", "nan", "?", ".", "1(2)", "5.64", "90", "120", "0.05"]),
)
_WORD = st.one_of(
    st.sampled_from(["Na", "Cl", "Cu", "O", "Xx", "D", "Na1+", "'x y'", '"q"', ";", "#", "_", "loop_", "data_"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8),
)
_CELL = st.tuples(st.sampled_from(["a", "b", "c", "alpha", "beta", "gamma"]), _NUMBER).map(
    lambda kv: f"_cell_{'length' if len(kv[0]) == 1 else 'angle'}_{kv[0]} {kv[1]}"
)
_SITE = st.tuples(_WORD, _WORD, _NUMBER, _NUMBER, _NUMBER).map(" ".join)
_LOOP = st.lists(_SITE, max_size=6).map(
    lambda rows: "\n".join(
        ["loop_", "_atom_site_label", "_atom_site_type_symbol"] + [f"_atom_site_fract_{x}" for x in "xyz"] + rows
    )
)
_SYMMETRY = st.sampled_from(
    [
        "_symmetry_space_group_name_H-M 'P 1'",
        "_symmetry_space_group_name_H-M 'F m -3 m'",
        "_space_group_IT_number 225",
        "loop_\n_symmetry_equiv_pos_as_xyz\nx,y,z\n-x,-y,-z",
        "loop_\n_symmetry_equiv_pos_as_xyz\n'x+1/2,y,z'\nq,r,s",
    ]
)
_LINE = st.one_of(_CELL, _SYMMETRY, _LOOP, _WORD, st.just(""), st.just(";\nfield\n;"))
CIF_LIKE = st.tuples(
    st.sampled_from(["data_x", "data_", "", "data_a\ndata_b", "global_"]), st.lists(_LINE, max_size=14)
)
CIF_LIKE = CIF_LIKE.map(lambda t: "\n".join([t[0], *t[1]]) + "\n")
CONFIGS = (GraphConfig(),)


def _check(text: str) -> None:
    start = time.monotonic()
    result = featurize(text.encode("utf-8", "surrogatepass"), CONFIGS, 500)
    assert time.monotonic() - start < 30
    assert result, "at least one entry: a block or the file's error"
    for feat in result:
        if feat.error is not None:
            code, detail = feat.error
            assert code and code.replace("_", "").isalpha() and code == code.lower(), code
            assert detail.strip(), code
        else:
            assert feat.structure is not None and feat.graphs, feat


_SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow], "derandomize": True}


@settings(max_examples=60, **_SETTINGS)
@given(CIF_LIKE)
def test_cif_like_text_never_crashes_the_reader(text: str) -> None:
    _check(text)


@pytest.mark.slow
@settings(max_examples=1500, **_SETTINGS)
@given(CIF_LIKE)
def test_cif_like_text_never_crashes_the_reader_longer(text: str) -> None:
    _check(text)
