from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from crystalgraph import (
    KNOWN_TARGETS,
    CGCNNConfig,
    SRCGCNNConfig,
    build_model,
    collate,
    parse_model_config,
    structure_to_graph,
)

EF, BG = KNOWN_TARGETS["formation_energy_per_atom"], KNOWN_TARGETS["band_gap"]


def _randomize_batchnorm(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_parameter_counts_match_the_papers():
    cg = build_model(CGCNNConfig(targets=(EF,)))
    sr = build_model(SRCGCNNConfig(targets=(EF,)))
    assert cg.count_parameters()["conv"] == 66_432
    assert sr.count_parameters()["conv"] == 22_912
    assert round(sr.count_parameters()["conv"] / cg.count_parameters()["conv"], 3) == 0.345  # "34.5% of CGCNN's"
    # same embedding and head: the totals differ only by the convolutions
    assert cg.count_parameters()["total"] - sr.count_parameters()["total"] == 66_432 - 22_912


def test_repr_shows_hyper_parameters():
    text = repr(build_model(SRCGCNNConfig(targets=(EF,))))
    assert "SharedCGConv(atom_fea_len=64, nbr_fea_len=41, n_steps=3)" in text
    assert "GaussianExpansion(0.00..8.00 Å, n=41, width=0.2)" in text


def test_config_is_strict_and_round_trips():
    cfg = SRCGCNNConfig(targets=(EF, BG), n_steps=4)
    assert parse_model_config(cfg.model_dump(mode="json")) == cfg
    with pytest.raises(ValueError):
        parse_model_config({**cfg.model_dump(mode="json"), "n_stepz": 3})
    with pytest.raises(ValueError):
        CGCNNConfig(targets=())


def _naive_forward(model, g) -> torch.Tensor:
    """CGCNN as written in the paper: concatenate, then one linear map per edge."""
    x = F.linear(model.atom_features[g.z], model.embedding.weight, model.embedding.bias)
    u = model.expansion(g.edge_dist)
    src, dst = g.edge_index
    convs = model.convs
    steps = (
        [(c.fc_full, c.bn1, c.bn2) for c in convs]
        if isinstance(convs, torch.nn.ModuleList)
        else [(convs.fc_full, b1, b2) for b1, b2 in zip(convs.bn1, convs.bn2, strict=True)]
    )
    for fc, bn1, bn2 in steps:
        z = torch.cat([x[dst], x[src], u], dim=1)
        h = bn1(fc(z))
        filt, core = h.chunk(2, dim=1)
        agg = torch.zeros_like(x).index_add_(0, dst, torch.sigmoid(filt) * F.softplus(core))
        x = F.softplus(x + bn2(agg))
    crys = x.mean(dim=0, keepdim=True)
    return torch.cat([h(crys) for h in model.heads], dim=1)


@pytest.mark.parametrize("config_cls", [CGCNNConfig, SRCGCNNConfig])
def test_fused_convolution_equals_the_naive_formula(config_cls, triclinic):
    torch.manual_seed(0)
    model = build_model(config_cls(targets=(EF, BG))).eval()
    _randomize_batchnorm(model)
    g = structure_to_graph(triclinic)
    with torch.no_grad():
        fused = model(*collate([g]))
        naive = _naive_forward(model, g)
    torch.testing.assert_close(fused, naive, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config_cls", [CGCNNConfig, SRCGCNNConfig])
def test_eval_prediction_does_not_depend_on_the_batch(config_cls, nacl, cu_primitive, triclinic, perovskite):
    torch.manual_seed(0)
    model = build_model(config_cls(targets=(EF, BG)))
    _randomize_batchnorm(model)
    model.eval()
    graphs = [structure_to_graph(s) for s in (nacl, cu_primitive, triclinic, perovskite)]
    with torch.no_grad():
        together = model.predict(*collate(graphs))
        alone = torch.cat([model.predict(*collate([g])) for g in graphs])
        reordered = model.predict(*collate(graphs[::-1]))
    assert together.shape == (4, 2)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together, reordered.flip(0), atol=1e-5, rtol=1e-5)


def test_band_gap_is_never_negative(nacl, perovskite):
    model = build_model(CGCNNConfig(targets=(EF, BG))).eval()
    model.set_normalizer(torch.tensor([0.0, -50.0]), torch.tensor([1.0, 1.0]))  # push gaps far below 0
    with torch.no_grad():
        out = model.predict(*collate([structure_to_graph(nacl), structure_to_graph(perovskite)]))
    assert (out[:, 1] == 0).all()
    assert (out[:, 0] != 0).all()


def test_single_crystal_batch_keeps_its_shape(cu_primitive):
    model = build_model(CGCNNConfig(targets=(EF,))).eval()
    with torch.no_grad():
        out = model.predict(*collate([structure_to_graph(cu_primitive)]))
    assert out.shape == (1, 1)


def test_gradients_reach_every_parameter(nacl, perovskite):
    model = build_model(SRCGCNNConfig(targets=(EF, BG)))
    out = model(*collate([structure_to_graph(nacl), structure_to_graph(perovskite)]))
    out.pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_sr_cgcnn_computes_the_shared_edge_term_once_with_the_same_answers():
    """SR-CGCNN's steps share ``u W_e + b``: computed once, the step gives what the per-step form gives.

    Forward bit-identical; gradients equal to float rounding (one accumulated product instead of T).
    """
    from crystalgraph.nets._layers import SharedCGConv, edge_term, gated_update

    torch.manual_seed(0)
    conv = SharedCGConv(atom_fea_len=8, nbr_fea_len=5, n_steps=3).train()
    x, u = torch.randn(10, 8), torch.randn(40, 5)
    src, dst = torch.randint(0, 10, (40,)), torch.randint(0, 10, (40,))

    def per_step() -> torch.Tensor:  # the edge term recomputed at every step
        h = x
        for bn1, bn2 in zip(conv.bn1, conv.bn2, strict=True):
            h = gated_update(h, u, src, dst, conv.fc_full, bn1, bn2)
        return h

    out_once = conv(x, u, src, dst)
    grad_once = torch.autograd.grad(out_once.square().sum(), conv.fc_full.weight)[0]
    out_each = per_step()
    grad_each = torch.autograd.grad(out_each.square().sum(), conv.fc_full.weight)[0]
    assert torch.equal(out_once, out_each)
    torch.testing.assert_close(grad_once, grad_each, rtol=1e-5, atol=1e-6)
    assert torch.equal(edge_term(u, conv.fc_full, 8), F.linear(u, conv.fc_full.weight[:, 16:], conv.fc_full.bias))
