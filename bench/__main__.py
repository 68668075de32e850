"""Run the benchmarks: ``python -m bench --data DIR [--only NAME ...]``.

Each section is a module of this package with ``run(args) -> None`` that prints its figures;
sections are listed in ``SECTIONS`` in the order they run.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

SECTIONS = ["graphs", "reader", "training", "service", "onnx", "uncertainty", "jobs", "ray", "load"]


def main() -> None:
    """Parse the command line and run the chosen sections in order, timing each."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="folder with cifs/ and labels.csv")
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--soak-s", type=float, default=0.0, help="load: soak seconds after the 60 s load (600)")
    args = parser.parse_args()
    for name in args.only or SECTIONS:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                continue
            raise
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        module.run(args)
        print(f"({name}: {time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
