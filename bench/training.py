"""Training throughput (structures/s over one epoch) for CGCNN and SR-CGCNN, default settings."""

from __future__ import annotations

import argparse
import os
import random
import time

import torch

from crystalgraph import ARCHITECTURES, KNOWN_TARGETS, build_model, collate, model_inputs
from training.pipeline import prepare

N_STRUCTURES = 4096
BATCH_SIZES = (64, 128)
THREADS = (1, 2)


def _epoch(model, graphs, batch_size: int) -> float:
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    order = list(range(len(graphs)))
    random.Random(0).shuffle(order)
    t0 = time.perf_counter()
    for b in range(len(order) // batch_size):
        batch = collate([graphs[i] for i in order[b * batch_size : (b + 1) * batch_size]])
        loss = model(*model_inputs(batch)).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (len(order) // batch_size) * batch_size / (time.perf_counter() - t0)


def run(args: argparse.Namespace) -> None:
    """Print this section's figures for ``args.data`` (see the module docstring)."""
    prepared = prepare(args.data, ["formation_energy_per_atom"], progress=False)
    ids = [i for i in prepared.data.ids if i in prepared.graphs]
    random.Random(0).shuffle(ids)
    graphs = [prepared.graphs[i] for i in ids[:N_STRUCTURES]]
    atoms = sum(g.num_nodes for g in graphs) / len(graphs)
    print(
        f"one epoch over {len(graphs)} random training crystals ({atoms:.1f} atoms each on average); "
        f"graphs from the on-disk cache; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    target = (KNOWN_TARGETS["formation_energy_per_atom"],)
    default_threads = torch.get_num_threads()
    for threads in THREADS:
        torch.set_num_threads(threads)
        for name, arch in ARCHITECTURES.items():
            config = arch.config(targets=target)
            for bs in BATCH_SIZES:
                torch.manual_seed(0)
                rate = _epoch(build_model(config), graphs, bs)
                print(
                    f"{name:10s} {threads} thread(s) batch {bs:4d} {rate:8.0f} structures/s  "
                    f"(a 27,592-crystal epoch: {27592 / rate / 60:.1f} min)",
                    flush=True,
                )
    torch.set_num_threads(default_threads)
