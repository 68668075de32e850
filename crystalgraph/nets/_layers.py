"""Building blocks shared by CGCNN and SR-CGCNN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GaussianExpansion", "CGConv", "SharedCGConv", "Head", "scatter_sum", "gated_update"]


def scatter_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Sum rows of ``src`` into ``dim_size`` buckets given by ``index``.

    Written with ``scatter_add`` on an expanded index so that ONNX export emits
    ``ScatterElements(reduction="add")`` rather than an overwrite.

    Shapes:
        ``src: [E, F]``, ``index: [E]`` -> ``[dim_size, F]``.
    """
    out = src.new_zeros(dim_size, src.shape[1])
    return out.scatter_add(0, index.unsqueeze(1).expand_as(src), src)


class GaussianExpansion(nn.Module):
    """Expand distances on Gaussians: ``exp(-(d - μ_k)² / σ²)``.

    Shapes:
        ``[E]`` -> ``[E, K]``.
    """

    centers: Tensor

    def __init__(self, start: float, stop: float, step: float, width: float) -> None:
        super().__init__()
        n = int(round((stop - start) / step)) + 1
        self.register_buffer("centers", torch.linspace(start, start + (n - 1) * step, n), persistent=False)
        self.width = width

    def forward(self, dist: Tensor) -> Tensor:
        return torch.exp(-((dist.unsqueeze(-1) - self.centers) ** 2) / self.width**2)

    def __repr__(self) -> str:
        c = self.centers
        return f"{type(self).__name__}({c[0]:.2f}..{c[-1]:.2f} Å, n={len(c)}, width={self.width})"


def edge_term(edge_attr: Tensor, fc: nn.Linear, n_feat: int) -> Tensor:
    """The edge part of a CGCNN update's linear map, ``u W_e + b``: ``[E, K]`` -> ``[E, 2F]``.

    It depends on the edges and the weights only, so SR-CGCNN, whose steps share the weights,
    computes it once for all of them.
    """
    return F.linear(edge_attr, fc.weight[:, 2 * n_feat :], fc.bias)


def gated_update(
    x: Tensor,
    edge_attr: Tensor,
    src: Tensor,
    dst: Tensor,
    fc: nn.Linear,
    bn1: nn.BatchNorm1d,
    bn2: nn.BatchNorm1d,
    edges: Tensor | None = None,
) -> Tensor:
    """One CGCNN update, fused: ``fc`` is applied to node features before the gather.

    ``v_i' = softplus(v_i + BN2(Σ_j σ(BN1(z W_f)) ⊙ softplus(BN1(z W_s))))`` with
    ``z = v_i ⊕ v_j ⊕ u_ij``. Splitting ``W = [W_i | W_j | W_e]`` gives
    ``z W = (v W_i)[i] + (v W_j)[j] + u W_e``: the node products cost ``N`` rows, not ``E``.

    ``edges``, when given, is :func:`edge_term` of these edges and ``fc``, computed beforehand.

    Shapes:
        ``x: [N, F]``, ``edge_attr: [E, K]``, ``src``/``dst``: ``[E]`` -> ``[N, F]``.
    """
    n_feat = x.shape[1]
    w = fc.weight
    node = x @ w[:, : 2 * n_feat].reshape(-1, 2, n_feat).transpose(0, 1).reshape(-1, n_feat).t()
    gated = node[:, : 2 * n_feat].index_select(0, dst) + node[:, 2 * n_feat :].index_select(0, src)
    gated = gated + (edge_term(edge_attr, fc, n_feat) if edges is None else edges)
    gated = bn1(gated)
    filt, core = gated.chunk(2, dim=1)
    msg = torch.sigmoid(filt) * F.softplus(core)
    agg = scatter_sum(msg, dst, x.shape[0])
    return F.softplus(x + bn2(agg))


class CGConv(nn.Module):
    """The CGCNN convolution (Xie & Grossman, PRL 120, 145301, 2018), with its own batch norms.

    Args:
        atom_fea_len: Atom feature width ``F``.
        nbr_fea_len: Edge feature width ``K`` (number of Gaussians).

    Shapes:
        ``x: [N, F]``, ``edge_attr: [E, K]`` -> ``[N, F]``.
    """

    def __init__(self, atom_fea_len: int, nbr_fea_len: int) -> None:
        super().__init__()
        self.atom_fea_len, self.nbr_fea_len = atom_fea_len, nbr_fea_len
        self.fc_full = nn.Linear(2 * atom_fea_len + nbr_fea_len, 2 * atom_fea_len)
        self.bn1 = nn.BatchNorm1d(2 * atom_fea_len)
        self.bn2 = nn.BatchNorm1d(atom_fea_len)

    def reset_parameters(self) -> None:
        self.fc_full.reset_parameters()
        self.bn1.reset_parameters()
        self.bn2.reset_parameters()

    def forward(self, x: Tensor, edge_attr: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        return gated_update(x, edge_attr, src, dst, self.fc_full, self.bn1, self.bn2)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(atom_fea_len={self.atom_fea_len}, nbr_fea_len={self.nbr_fea_len})"


class SharedCGConv(nn.Module):
    """One CGCNN convolution whose weights are reused for ``n_steps`` steps (SR-CGCNN).

    Each step has its own batch norms (statistics differ from step to step); the linear map
    is shared. With ``F = 64, K = 41, T = 3`` it holds 22,912 parameters against 66,432 for
    three stacked :class:`CGConv` (34.5%).

    Shapes:
        ``x: [N, F]``, ``edge_attr: [E, K]`` -> ``[N, F]``.
    """

    def __init__(self, atom_fea_len: int, nbr_fea_len: int, n_steps: int) -> None:
        super().__init__()
        self.atom_fea_len, self.nbr_fea_len, self.n_steps = atom_fea_len, nbr_fea_len, n_steps
        self.fc_full = nn.Linear(2 * atom_fea_len + nbr_fea_len, 2 * atom_fea_len)
        self.bn1 = nn.ModuleList(nn.BatchNorm1d(2 * atom_fea_len) for _ in range(n_steps))
        self.bn2 = nn.ModuleList(nn.BatchNorm1d(atom_fea_len) for _ in range(n_steps))

    def reset_parameters(self) -> None:
        self.fc_full.reset_parameters()
        for bn in [*self.bn1, *self.bn2]:
            bn.reset_parameters()

    def forward(self, x: Tensor, edge_attr: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        bns: list[tuple[nn.BatchNorm1d, nn.BatchNorm1d]] = list(zip(self.bn1, self.bn2, strict=True))  # type: ignore[arg-type]
        edges = edge_term(edge_attr, self.fc_full, self.atom_fea_len)  # the same for every step
        for bn1, bn2 in bns:
            x = gated_update(x, edge_attr, src, dst, self.fc_full, bn1, bn2, edges)
        return x

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(atom_fea_len={self.atom_fea_len}, "
            f"nbr_fea_len={self.nbr_fea_len}, n_steps={self.n_steps})"
        )


class Head(nn.Module):
    """The CGCNN readout for one property: softplus, linear, softplus, hidden layers, linear.

    Shapes:
        ``[B, F]`` -> ``[B, 1]``.
    """

    def __init__(self, atom_fea_len: int, h_fea_len: int, n_h: int) -> None:
        super().__init__()
        self.fc_in = nn.Linear(atom_fea_len, h_fea_len)
        self.hidden = nn.ModuleList(nn.Linear(h_fea_len, h_fea_len) for _ in range(n_h - 1))
        self.out = nn.Linear(h_fea_len, 1)

    def forward(self, crys: Tensor) -> Tensor:
        h = F.softplus(self.fc_in(F.softplus(crys)))
        for fc in self.hidden:
            h = F.softplus(fc(h))
        out: Tensor = self.out(h)
        return out
