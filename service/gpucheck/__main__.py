"""``python -m service.gpucheck builds|run``: see :mod:`service.gpucheck`."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ._builds import build_problems, read_builds
from ._compare import collect_answers, compare_answers, model_refs
from ._servers import ServiceProcess
from ._throughput import time_models

#: Largest |GPU - CPU| difference that passes: the parity contract of ``export_onnx_checked``.
TOLERANCE = 1e-4


class Checks:
    """Collects pass/fail lines; the exit code is 0 only when every check passed."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def check(self, ok: bool, line: str, *more: str) -> bool:
        """Print a PASS or FAIL line (and details); remember a failure."""
        print(("PASS " if ok else "FAIL ") + line, *more, sep="\n    ", flush=True)
        if not ok:
            self.failed.append(line)
        return ok

    def note(self, line: str) -> None:
        """Print an indented line of information."""
        print(f"     {line}", flush=True)


def _builds(checks: Checks, need_cuda: bool) -> None:
    report = read_builds()
    for line in report.lines():
        checks.note(line)
    problems = build_problems(report)
    if need_cuda:
        checks.check(not problems, "torch and onnxruntime are CUDA builds for one CUDA major version", *problems)
    elif problems:
        checks.note("not CUDA builds (fine for a CPU run): " + "; ".join(problems))


def _device(checks: Checks, device: str) -> bool:
    import torch

    from ..backends import resolve_device

    if shutil.which("nvidia-smi"):
        query = "name,driver_version,compute_cap,memory.total"
        smi = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True, text=True, check=False
        )
        checks.note(f"nvidia-smi ({query}): {smi.stdout.strip() or smi.stderr.strip()}")
    if not device.startswith("cuda"):
        checks.note(f"device {device}: no GPU checks")
        return True
    if not checks.check(torch.cuda.is_available(), "torch sees a CUDA device"):
        return False
    index = int(device.partition(":")[2] or 0)
    cap = torch.cuda.get_device_capability(index)
    checks.note(f"{device}: {torch.cuda.get_device_name(index)}, compute capability {cap[0]}.{cap[1]}")
    checks.note(f"torch kernels: {' '.join(torch.cuda.get_arch_list())}")
    try:
        resolve_device(device)  # the service's own check, and its TF32/determinism settings
    except ValueError as exc:
        return checks.check(False, "the device is supported", str(exc))
    return checks.check(True, "the device is supported; TF32 off, deterministic algorithms on")


def _sample(cif_dir: Path | None, limit: int) -> list[tuple[str, bytes]]:
    from ..warmup import warmup_cifs

    files = [("NaCl.cif", warmup_cifs()[0].encode())]
    if cif_dir is not None:
        files += [(p.name, p.read_bytes()) for p in sorted(cif_dir.rglob("*.cif"), key=lambda p: p.name)[:limit]]
    return files


def _service(args: argparse.Namespace, device: str, backend: str, data_dir: Path) -> ServiceProcess:
    env = {
        "CRYSTAL_DEVICE": device,
        "CRYSTAL_BACKEND": backend,
        "CRYSTAL_MODELS_DIR": str(args.models),
        "CRYSTAL_DATA_DIR": str(data_dir / f"{device}-{backend}"),
        "CRYSTAL_PARSE_WORKERS": str(args.parse_workers),
    }
    return ServiceProcess(f"{device}/{backend}", env)


def _check_service(checks: Checks, service: ServiceProcess, device: str, backend: str) -> list[str]:
    with service.client() as client:
        refs, refused = model_refs(client)
        models = client.get("/v1/models").json()["models"]
    provider = "CPUExecutionProvider" if device == "cpu" else "CUDAExecutionProvider"
    placed = [
        m["backend"] == backend
        and m["device"] == (device if ":" in device or device == "cpu" else f"{device}:0")
        and (backend != "onnx" or m["provider"] == provider)
        for m in models
    ]
    checks.check(
        bool(refs) and not refused and all(placed),
        f"{service.label}: {len(refs)} models served, none refused, each on {device} with {backend}",
        *[f"refused {r['path']}: {r['reason']}" for r in refused],
        *[
            f"{m['ref']}: {m['backend']} on {m['device']} ({m['provider']}, {m['precision']}), "
            f"batch_invariant at warm-up: {m['batch_invariant']}"
            for m in models
        ],
    )
    return refs


def run(args: argparse.Namespace) -> int:
    """Every check of the GPU path; 0 only when all pass."""
    checks = Checks()
    device, reference = args.device, args.reference
    print(f"== builds and device ({device}, reference {reference})", flush=True)
    _builds(checks, need_cuda=device.startswith("cuda"))
    if not _device(checks, device):
        return 1
    files = _sample(args.cifs, args.limit)
    cifs = [data for _, data in files]
    print(f"== {len(files)} CIFs: NaCl and {len(files) - 1} from {args.cifs}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpucheck-") as tmp:
        for backend in args.backends:
            print(f"== {backend}: the service on {device} against the service on {reference}", flush=True)
            try:
                with _service(args, device, backend, Path(tmp)) as gpu:
                    refs = _check_service(checks, gpu, device, backend)
                    with gpu.client() as client:
                        batched = collect_answers(client, files, refs)
                        alone = collect_answers(client, files, refs, per_request=1)
                    with _service(args, reference, backend, Path(tmp)) as cpu:
                        _check_service(checks, cpu, reference, backend)
                        with cpu.client() as client:
                            expected = collect_answers(client, files, refs)
            except RuntimeError as exc:
                checks.check(False, f"{backend}: the services start and answer", str(exc))
                continue
            diff = compare_answers(batched, expected, f"{device}/{backend} vs {reference}/{backend}", args.tolerance)
            checks.check(diff.ok, *diff.lines())
            invariance = compare_answers(alone, batched, f"{device}/{backend}: each file alone vs in batches", 0.0)
            if backend == "onnx" and device.startswith("cuda"):
                lines = invariance.lines()
                checks.note(f"{lines[0]} (reported, not required: onnxruntime's CUDA scatter-add uses atomics)")
                for line in lines[1:]:
                    checks.note(f"    {line}")
            else:
                checks.check(invariance.ok, *invariance.lines())
        print(f"== in-process throughput on {device} (structures/s; graphs prepared in advance)", flush=True)
        for backend in args.backends:
            try:
                timings = time_models(args.models, backend, device, cifs, args.batch_sizes, args.min_seconds)
            except Exception as exc:  # noqa: BLE001 - reported as a failed check
                checks.check(False, f"{backend} on {device}: every model predicts", f"{type(exc).__name__}: {exc}")
                continue
            checks.check(True, f"{backend} on {device}: every model predicts", *[t.line().strip() for t in timings])
    print(f"== {'all checks passed' if not checks.failed else f'{len(checks.failed)} check(s) failed'}")
    for line in checks.failed:
        print(f"   FAILED: {line}")
    return 1 if checks.failed else 0


def _batch_sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m service.gpucheck builds|run``; returns the exit status (0: every check passed)."""
    parser = argparse.ArgumentParser(prog="python -m service.gpucheck", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("builds", help="torch and onnxruntime are CUDA builds that load together (no GPU needed)")
    r = sub.add_parser("run", help="device, GPU vs CPU answers, batch invariance, throughput")
    r.add_argument("--device", default="cuda:0", help="device under test (default cuda:0)")
    r.add_argument("--reference", default="cpu", help="device of the reference service (default cpu)")
    r.add_argument("--models", type=Path, default=Path("models"), help="model repository (default models)")
    r.add_argument("--cifs", type=Path, default=None, help="folder of CIFs to compare (besides NaCl)")
    r.add_argument("--limit", type=int, default=200, help="CIFs taken from --cifs, sorted by name (default 200)")
    r.add_argument("--backends", type=lambda s: s.split(","), default=["torch", "onnx"])
    r.add_argument("--tolerance", type=float, default=TOLERANCE, help="largest |device - reference| (default 1e-4)")
    r.add_argument("--batch-sizes", type=_batch_sizes, default=[1, 256], help="timed batch sizes (default 1,256)")
    r.add_argument("--min-seconds", type=float, default=2.0, help="time each batch size at least this long")
    r.add_argument("--parse-workers", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "builds":
        checks = Checks()
        _builds(checks, need_cuda=True)
        return 1 if checks.failed else 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
