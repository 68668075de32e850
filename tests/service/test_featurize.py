"""The parse-pool work, called in-process: graphs, summaries, per-block errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from crystalgraph import GraphConfig, cif_to_graphs
from service.featurize import featurize

CONFIG = GraphConfig()


def test_graph_is_the_core_librarys_graph(cifs: dict) -> None:
    [feat] = featurize(cifs["srtio3"].encode(), [CONFIG], max_atoms=500)
    assert feat.error is None and feat.block == "SrTiO3"
    graph = feat.graphs[CONFIG.fingerprint].to_data()
    [(_, expected)] = cif_to_graphs(cifs["srtio3"], CONFIG)
    assert np.array_equal(graph.z.numpy(), expected.z.numpy())
    assert np.array_equal(graph.edge_index.numpy(), expected.edge_index.numpy())
    assert np.array_equal(graph.edge_dist.numpy(), expected.edge_dist.numpy())
    assert feat.structure is not None
    assert (feat.structure.formula, feat.structure.n_sites, feat.structure.elements) == ("SrTiO3", 5, ["O", "Sr", "Ti"])
    pickle.loads(pickle.dumps(feat))  # crosses the process boundary


def test_one_graph_per_distinct_fingerprint(cifs: dict) -> None:
    short = GraphConfig(cutoff=6.0, gaussian_stop=6.0)
    same_graph = GraphConfig(gaussian_width=0.5)  # expansion only: same fingerprint
    [feat] = featurize(cifs["nacl"].encode(), [CONFIG, short, same_graph], max_atoms=500)
    assert set(feat.graphs) == {CONFIG.fingerprint, short.fingerprint}
    assert feat.graphs[short.fingerprint].edge_dist.max() <= 6.0


def test_every_block_of_a_multi_block_file(cifs: dict) -> None:
    text = cifs["two_blocks"] + "\n" + cifs["isolated"]
    feats = featurize(text.encode(), [CONFIG], max_atoms=500)
    assert [f.block for f in feats] == ["NaCl", "SrTiO3", "Cu"]
    assert [f.error[0] if f.error else None for f in feats] == [None, None, "isolated_atom"]


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("garbage", "invalid_cif"),
        ("empty", "invalid_cif"),
        ("disordered", "disordered_structure"),
        ("unsupported", "unsupported_element"),
        ("isolated", "isolated_atom"),
        ("overlapping", "overlapping_atoms"),
    ],
)
def test_errors_are_returned_with_their_code(cifs: dict, name: str, code: str) -> None:
    [feat] = featurize(cifs[name].encode(), [CONFIG], max_atoms=500)
    assert feat.error is not None and feat.error[0] == code and feat.error[1]
    assert feat.graphs == {}


def test_too_many_atoms_is_checked_before_the_structure_is_built(cifs: dict) -> None:
    [feat] = featurize(cifs["big"].encode(), [CONFIG], max_atoms=63)
    assert feat.error is not None and feat.error[0] == "too_many_atoms"
    assert "64 atom" in feat.error[1] and "limit is 63" in feat.error[1]
    assert feat.structure is None and feat.graphs == {}


def test_the_occupancy_tolerance_setting_is_named_when_it_would_have_helped() -> None:
    text = (
        b"data_NaCl\n_cell_length_a 5.64\n_cell_length_b 5.64\n_cell_length_c 5.64\n_cell_angle_alpha 90\n"
        b"_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'F m -3 m'\nloop_\n"
        b"_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"
        b"_atom_site_occupancy\nNa1 Na 0 0 0 1\nCl1 Cl 0.5 0.5 0.5 0.995\n"
    )
    [feat] = featurize(text, [CONFIG], max_atoms=500)  # the default tolerance, 0.01
    assert feat.error is None and [c for c, _ in feat.warnings] == ["occupancy_rounded"]
    [feat] = featurize(text, [CONFIG], max_atoms=500, occupancy_tolerance=0.001)
    assert feat.error is not None and feat.error[0] == "disordered_structure"
    assert "'Cl1'" in feat.error[1] and "CRYSTAL_OCCUPANCY_TOLERANCE" in feat.error[1] and "0.005" in feat.error[1]
    [feat] = featurize(text, [CONFIG], max_atoms=500, strict=True)  # strict: a rounded occupancy is a doubt
    assert feat.error is not None and feat.error[0] == "occupancy_rounded"
