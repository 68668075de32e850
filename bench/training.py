"""Training throughput (structures/s per thread over one epoch), CGCNN and SR-CGCNN, before and after.

Four ways of running the same epoch (same crystals, order, seed, batch 64, one thread):

- ``collate``: torch-geometric's ``Batch.from_data_list`` per step, eager model (the loop before v3);
- ``packed``: :class:`crystalgraph.PackedGraphs`, every batch gathered from flat tensors (identical
  inputs, so identical losses: checked here);
- ``packed+compile``: the same with ``torch.compile(dynamic=True)`` (``TrainConfig.compile``), timed
  on a second epoch after a compiling one; its losses agree to a tolerance (printed), not bitwise;
- ``packed+compile+bf16``: the same with the convolutions in bfloat16 mixed precision
  (``TrainConfig.bf16``); fast where the CPU has AMX or AVX512-BF16 (the flags are printed).
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from crystalgraph import KNOWN_TARGETS, CGCNNConfig, ModelInputs, PackedGraphs, SRCGCNNConfig, build_model
from training.pipeline import prepare

N_STRUCTURES = 4096
BATCH_SIZE = 64
MODES = ("collate", "packed", "packed+compile", "packed+compile+bf16")


def _pyg_inputs(graphs: list[Data]) -> ModelInputs:
    """The loop before v3: torch-geometric's ``Batch.from_data_list``, then the model's five tensors."""
    batch = Batch.from_data_list(graphs)
    return ModelInputs(batch.z, batch.edge_index, batch.edge_dist, batch.batch, batch.ptr.diff())


def _model(config, mode: str) -> torch.nn.Module:
    """A fresh model set up as ``mode`` trains it (the trainer's ``compile`` and ``bf16``)."""
    model = build_model(config).train()
    if mode.endswith("bf16"):
        model.train_autocast = torch.bfloat16
    if "compile" in mode:
        model.compile(dynamic=True)
    return model


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


def _bf16_flags() -> str:
    """The CPU's bfloat16 instructions, from ``/proc/cpuinfo`` (what makes ``bf16`` fast or slow)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    have = [f for f in ("avx512_bf16", "amx_bf16") if f in flags.split()]
    return ", ".join(have) or "none"


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
        f"{BATCH_SIZE}, 1 thread; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
        f"CPU bfloat16 instructions: {_bf16_flags()}"
    )
    target = (KNOWN_TARGETS["formation_energy_per_atom"],)
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for name, config in (("CGCNN", CGCNNConfig(targets=target)), ("SR-CGCNN", SRCGCNNConfig(targets=target))):
        reference: list[float] = []
        for mode in MODES:
            torch.manual_seed(0)
            model = _model(config, mode)
            if "compile" in mode:
                t0 = time.perf_counter()
                _epoch(model, graphs, packed, mode)  # compiles
                compile_s = time.perf_counter() - t0
                torch.manual_seed(0)
                model = _model(config, mode)
            rate, losses = _epoch(model, graphs, packed, mode)
            if mode == "collate":
                reference = losses
                same = ""
            elif losses == reference:
                same = "  losses identical to collate"
            else:
                rel = np.max(np.abs(np.subtract(losses, reference)) / np.abs(reference))
                mean = abs(np.mean(losses) / np.mean(reference) - 1)
                same = f"  losses within {rel:.1e} (relative; epoch mean {mean:.1e}) of collate"
            extra = f"; first epoch incl. compiling {compile_s:.0f} s" if "compile" in mode else ""
            print(
                f"{name:9s} {mode:15s} {rate:7.0f} structures/s per thread "
                f"(27,592-crystal epoch {27592 / rate / 60:.1f} min){same}{extra}",
                flush=True,
            )
    torch.set_num_threads(default_threads)
