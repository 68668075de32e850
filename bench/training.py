"""Training throughput (structures/s per thread over one epoch), CGCNN and SR-CGCNN, before and after.

Three ways of running the same epoch (same crystals, order, seed, batch 64, one thread):

- ``collate``: torch-geometric's ``Batch.from_data_list`` per step, eager model (the loop before v3);
- ``packed``: :class:`crystalgraph.PackedGraphs`, every batch gathered from flat tensors (identical
  inputs, so identical losses: checked here);
- ``packed+compile``: the same with ``torch.compile(dynamic=True)`` (``TrainConfig.compile``), timed
  on a second epoch after a compiling one; its losses agree to a tolerance (printed), not bitwise.
"""

from __future__ import annotations

import argparse
import os
import random
import time

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from crystalgraph import KNOWN_TARGETS, CGCNNConfig, ModelInputs, PackedGraphs, SRCGCNNConfig, build_model
from training.pipeline import prepare

N_STRUCTURES = 4096
BATCH_SIZE = 64
MODES = ("collate", "packed", "packed+compile")


def _pyg_inputs(graphs: list[Data]) -> ModelInputs:
    """The loop before v3: torch-geometric's ``Batch.from_data_list``, then the model's five tensors."""
    batch = Batch.from_data_list(graphs)
    return ModelInputs(batch.z, batch.edge_index, batch.edge_dist, batch.batch, batch.ptr.diff())


def _epoch(model: torch.nn.Module, graphs: list, packed: PackedGraphs, mode: str) -> tuple[float, list[float]]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    order = list(range(len(graphs)))
    random.Random(0).shuffle(order)
    n = len(order) // BATCH_SIZE
    losses = []
    t0 = time.perf_counter()
    for b in range(n):
        idx = order[b * BATCH_SIZE : (b + 1) * BATCH_SIZE]
        if mode == "collate":
            inputs = _pyg_inputs([graphs[i] for i in idx])
        else:
            inputs, _ = packed.batch(idx)
        loss = model(*inputs).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return n * BATCH_SIZE / (time.perf_counter() - t0), losses


def run(args: argparse.Namespace) -> None:
    """Print this section's figures for ``args.data`` (see the module docstring)."""
    prepared = prepare(args.data, ["formation_energy_per_atom"], progress=False)
    ids = [i for i in prepared.data.ids if i in prepared.graphs]
    random.Random(0).shuffle(ids)
    graphs = [prepared.graphs[i] for i in ids[:N_STRUCTURES]]
    packed = PackedGraphs(graphs)
    atoms = sum(g.num_nodes for g in graphs) / len(graphs)
    print(
        f"one epoch over {len(graphs)} random training crystals ({atoms:.1f} atoms each on average), batch "
        f"{BATCH_SIZE}, 1 thread; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    target = (KNOWN_TARGETS["formation_energy_per_atom"],)
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for name, config in (("CGCNN", CGCNNConfig(targets=target)), ("SR-CGCNN", SRCGCNNConfig(targets=target))):
        reference: list[float] = []
        for mode in MODES:
            torch.manual_seed(0)
            model = build_model(config).train()
            if mode.endswith("compile"):
                model.compile(dynamic=True)
                t0 = time.perf_counter()
                _epoch(model, graphs, packed, mode)  # compiles
                compile_s = time.perf_counter() - t0
                torch.manual_seed(0)
                model = build_model(config).train()
                model.compile(dynamic=True)
            rate, losses = _epoch(model, graphs, packed, mode)
            if mode == "collate":
                reference = losses
                same = ""
            elif losses == reference:
                same = "  losses identical to collate"
            else:
                rel = np.max(np.abs(np.subtract(losses, reference)) / np.abs(reference))
                same = f"  losses within {rel:.1e} (relative) of collate"
            extra = f"; first epoch incl. compiling {compile_s:.0f} s" if mode.endswith("compile") else ""
            print(
                f"{name:9s} {mode:15s} {rate:7.0f} structures/s per thread "
                f"(27,592-crystal epoch {27592 / rate / 60:.1f} min){same}{extra}",
                flush=True,
            )
    torch.set_num_threads(default_threads)
