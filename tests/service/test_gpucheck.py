"""The GPU check's logic, run on a CPU: build inspection, answer comparison, timing, the whole run.

On a GPU host ``docker/gpu-check.sh`` runs the same code with ``--device cuda:0``; here the device
under test and the reference are both the CPU, which exercises everything but the GPU.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnxruntime
import pytest
import torch

from service.gpucheck import (
    BuildReport,
    build_problems,
    collect_answers,
    compare_answers,
    cuda_major,
    missing_libraries,
)
from service.gpucheck._builds import linked_cuda_major, read_builds
from service.gpucheck._compare import model_refs
from service.gpucheck._throughput import time_models
from service.settings import Settings

NAMES = ("nacl", "cu", "srtio3", "triclinic", "cscl", "big", "two_blocks", "garbage")


def _report(**changes) -> BuildReport:
    base = dict(
        torch_version="2.13.0",
        torch_cuda="13.0",
        onnxruntime_version="1.31.1",
        onnxruntime_cuda="13.0",
        providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
        provider_library=Path("/opt/venv/onnxruntime/capi/libonnxruntime_providers_cuda.so"),
        missing=["libcuda.so.1"],
    )
    return BuildReport(**{**base, **changes})


def test_cuda_major() -> None:
    assert (cuda_major("13.0"), cuda_major("12.8"), cuda_major(None), cuda_major(""), cuda_major("x")) == (
        13,
        12,
        None,
        None,
        None,
    )


def test_matching_cuda_builds_pass_with_only_the_driver_library_missing() -> None:
    assert build_problems(_report()) == []
    assert build_problems(_report(missing=["libcuda.so.1", "libnvidia-ml.so.1"])) == []


def test_a_cuda_12_onnxruntime_beside_a_cuda_13_torch_is_refused() -> None:
    (problem,) = build_problems(_report(onnxruntime_version="1.26.0", onnxruntime_cuda="12.8"))
    assert "CUDA 12" in problem and "CUDA 13" in problem and "1.27+" in problem


def test_a_missing_cuda_library_is_refused() -> None:
    (problem,) = build_problems(_report(missing=["libcuda.so.1", "libcublasLt.so.13", "libcudnn.so.9"]))
    assert "libcublasLt.so.13, libcudnn.so.9" in problem and "libcuda.so.1" not in problem


def test_cpu_builds_are_refused() -> None:
    problems = build_problems(
        _report(torch_cuda=None, onnxruntime_cuda="", providers=["CPUExecutionProvider"], provider_library=None)
    )
    assert len(problems) == 2 and "torch is a CPU build" in problems[0] and "no CUDAExecutionProvider" in problems[1]
    assert "cuda_version" in build_problems(_report(onnxruntime_cuda=""))[0]
    # No cuda_version in the build info: the CUDA runtime the provider links says it.
    assert build_problems(_report(onnxruntime_cuda="", linked_cuda=13)) == []
    assert "CUDA 12" in build_problems(_report(onnxruntime_cuda="", linked_cuda=12))[0]


def test_missing_libraries_reads_ldd_output() -> None:
    out = (
        "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibcublasLt.so.13 => not found\n"
        "\tlibcudart.so.13 => /opt/venv/nvidia/cu13/lib/libcudart.so.13 (0x00007f)\n\tlibcuda.so.1 => not found\n"
    )
    assert missing_libraries(out) == ["libcublasLt.so.13", "libcuda.so.1"]
    assert linked_cuda_major(out) == 13 and linked_cuda_major("\tlibc.so.6 => /lib/libc.so.6\n") is None


def test_read_builds_inspects_the_installed_packages_and_ldd_runs_on_a_real_library() -> None:
    report = read_builds()
    assert report.torch_version == torch.__version__ and report.onnxruntime_version == onnxruntime.__version__
    assert report.providers == onnxruntime.get_available_providers()
    if torch.version.cuda is None:
        assert any("CPU build" in p for p in build_problems(report))
    library = next((Path(onnxruntime.__file__).parent / "capi").glob("libonnxruntime.so*"))
    ldd = subprocess.run(["ldd", str(library)], capture_output=True, text=True, check=True)
    assert "libc.so" in ldd.stdout and missing_libraries(ldd.stdout) == []


def test_answers_of_two_real_services_compared(onnx_models, cifs, live_server_factory) -> None:
    files = [(f"{n}.cif", cifs[n].encode()) for n in NAMES]
    torch_srv = live_server_factory(Settings(models_dir=onnx_models, parse_workers=1, backend="torch"))
    onnx_srv = live_server_factory(Settings(models_dir=onnx_models, parse_workers=1, backend="onnx"))
    with torch_srv.client() as client:
        refs, refused = model_refs(client)
        by_torch = collect_answers(client, files, refs, per_request=3)
        alone = collect_answers(client, files, refs, per_request=1)
    with onnx_srv.client() as client:
        by_onnx = collect_answers(client, files, refs)
    assert refs == ["cg-fe@1", "sr-bg@1"] and refused == []
    assert by_torch[("garbage.cif", "", "error")] == "invalid_cif"
    assert ("two_blocks.cif#NaCl", "sr-bg@1", "band_gap") in by_torch  # every block, every model
    result = compare_answers(by_onnx, by_torch, "onnx vs torch", 1e-4)
    assert result.ok and result.compared == 2 * 8  # 7 files, one with two blocks; two models
    assert set(result.max_abs) == {"formation_energy_per_atom", "band_gap"}
    assert compare_answers(alone, by_torch, "alone vs batched", 0.0).ok  # the API's promise on a CPU

    shifted = {k: (v + 2e-4 if k[2] == "band_gap" else v) for k, v in by_torch.items()}
    off = compare_answers(shifted, by_torch, "shifted", 1e-4)
    assert (
        not off.ok and off.max_abs["band_gap"] == pytest.approx(2e-4) and off.max_abs["formation_energy_per_atom"] == 0
    )
    missing = dict(by_torch)
    del missing[("nacl.cif", "cg-fe@1", "formation_energy_per_atom")]
    missing[("cu.cif", "", "error")] = "isolated_atom"
    broken = compare_answers(missing, by_torch, "missing", 1e-4)
    assert not broken.ok and len(broken.mismatched) == 2 and "2 answers in one only" in broken.lines()[-1]
    assert not compare_answers({}, {}, "empty", 1e-4).ok


def test_time_models_on_a_cpu(onnx_models, cifs) -> None:
    sample = [cifs[n].encode() for n in ("nacl", "cu", "srtio3", "triclinic", "garbage")]
    timings = time_models(onnx_models, "onnx", "cpu", sample, batch_sizes=(1, 8), min_seconds=0.05)
    assert [t.ref for t in timings] == ["cg-fe@1", "sr-bg@1"]
    for t in timings:
        assert (t.backend, t.device, t.precision) == ("onnx", "cpu", "float32")
        assert set(t.rates) == {1, 8} and all(r > 0 for r in t.rates.values())
        assert t.bit_identical and t.max_batch_diff == 0 and t.repeatable
        assert "batch 8" in t.line() and "bit-identical" in t.line()


@pytest.mark.slow
def test_the_whole_run_on_a_cpu(onnx_models, cifs, tmp_path) -> None:
    folder = tmp_path / "cifs"
    folder.mkdir()
    for name in ("cu", "srtio3", "triclinic", "big", "garbage"):
        (folder / f"{name}.cif").write_text(cifs[name])
    command = [sys.executable, "-m", "service.gpucheck", "run", "--device", "cpu", "--models", str(onnx_models)]
    command += ["--cifs", str(folder), "--batch-sizes", "1,4", "--min-seconds", "0.05", "--parse-workers", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "device cpu: no GPU checks" in out and "6 CIFs: NaCl and 5" in out
    assert "PASS cpu/torch vs cpu/torch: 10 values" in out and "PASS cpu/onnx: each file alone vs in batches" in out
    assert out.count("every model predicts") == 2 and out.rstrip().endswith("all checks passed")
