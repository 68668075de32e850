"""Jobs through the Ray executor, on a real local Ray instance (one per module): same answers as in process.

The Ray instance runs in this test process (``ray.init(num_cpus=2)``, its files under a temporary
folder); the servers are real uvicorn servers whose job service connects to it, and the
restart test's ``python -m service`` subprocesses join it by its address.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from service import Settings

ray = pytest.importorskip("ray")

CLI = Path(sys.executable).parent / "crystal-predict"


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local Ray instance with 2 CPUs, its temp dir a short temporary folder (socket paths are capped).

    Token authentication is off (``RAY_AUTH_MODE=disabled``, for this process and the ones it starts): the
    instance listens on this machine only, and with it on Ray would write its token to ``~/.ray``.
    """
    temp = tmp_path_factory.mktemp("ray")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(temp), logging_level="WARNING")
        yield ray.get_runtime_context().gcs_address
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_server(
    ray_address: str, models_dir: Path, tmp_path_factory: pytest.TempPathFactory, live_server_class: type[Any]
) -> Iterator[Any]:
    settings = Settings(
        models_dir=models_dir,
        parse_workers=1,
        data_dir=tmp_path_factory.mktemp("ray-jobs-data"),
        jobs_executor="ray",
        ray_address=ray_address,
        ray_parse_batch=8,
        ray_actor_cpus=0.5,  # two services share the 2 CPUs in the restart test: one stays for parsing
    )
    live = live_server_class(settings).start()
    yield live
    live.stop()


def _submit(client: httpx.Client, members: dict[str, str], make_archive: Callable[..., bytes]) -> dict[str, Any]:
    body = make_archive(members, "tar.gz")
    return client.post("/v1/jobs", content=body, headers={"Content-Type": "application/gzip"}).raise_for_status().json()


def _rows(client: httpx.Client, job: dict[str, Any]) -> list[str]:
    """The job's NDJSON rows, each file's rows together in file order (``index``), as computed within a file."""
    lines = client.get(job["links"]["results"], params={"format": "ndjson"}).raise_for_status().text.splitlines()
    return sorted(lines, key=lambda line: json.loads(line)["index"])  # stable: a file's blocks keep their order


def _mixed(cifs: dict[str, str], many_cifs: Callable[[int], dict[str, str]], n: int) -> dict[str, str]:
    """``n`` good CIFs, then one of each kind of trouble: several blocks, bad, empty, unsupported, too close."""
    members = many_cifs(n)
    for name in ("two_blocks", "garbage", "empty", "disordered", "unsupported", "isolated", "overlapping", "big"):
        members[f"set/trouble-{name}.cif"] = cifs[name]
    return members


def test_ray_job_answers_equal_in_process_to_the_bit(
    ray_server: Any,
    jobs_server: Any,
    cifs: dict[str, str],
    many_cifs: Callable[[int], dict[str, str]],
    make_archive: Callable[..., bytes],
    wait_job: Callable[..., dict[str, Any]],
) -> None:
    members = _mixed(cifs, many_cifs, 60)
    with ray_server.client() as on_ray, jobs_server.client() as in_process:
        job_ray = _submit(on_ray, members, make_archive)
        job_here = _submit(in_process, members, make_archive)
        done_ray = wait_job(on_ray, job_ray["id"], timeout=180)
        done_here = wait_job(in_process, job_here["id"], timeout=180)
        assert (done_ray["state"], done_ray["executor"]) == ("done", "ray")
        assert (done_here["state"], done_here["executor"]) == ("done", "inprocess")
        assert done_ray["counts"] == done_here["counts"]
        ray_rows, here_rows = _rows(on_ray, job_ray), _rows(in_process, job_here)
        csv_ray = on_ray.get(job_ray["links"]["results"], params={"format": "csv"}).text.splitlines()
        csv_here = in_process.get(job_here["links"]["results"], params={"format": "csv"}).text.splitlines()
    # Same rows, byte for byte: values (as floats, the same bits), per-file errors, warnings, provenance.
    assert ray_rows == here_rows
    assert csv_ray[0].startswith("file,formula,n_sites,")  # the CSV (rows in completion order: compared sorted)
    assert csv_ray[0] == csv_here[0] and sorted(csv_ray[1:]) == sorted(csv_here[1:])
    items = [json.loads(line) for line in ray_rows]
    assert sorted({item["index"] for item in items}) == list(range(len(members)))
    errors = {item["filename"].split("/")[-1]: item["error"]["code"] for item in items if not item["ok"]}
    assert errors["trouble-garbage.cif"] and errors["trouble-empty.cif"], errors
    assert sum(item["ok"] for item in items) == done_ray["counts"]["ok"] > 60


def test_ray_job_cancel_stops_it_and_the_executor_goes_on(
    ray_server: Any,
    many_cifs: Callable[[int], dict[str, str]],
    make_archive: Callable[..., bytes],
    wait_job: Callable[..., dict[str, Any]],
) -> None:
    with ray_server.client() as client:
        job = _submit(client, many_cifs(3000), make_archive)
        wait_job(client, job["id"], until=lambda s: s["counts"]["done"] > 0, timeout=180)
        gone = client.delete(f"/v1/jobs/{job['id']}").raise_for_status().json()
        assert gone["state"] == "cancelled" and gone["counts"]["done"] < 3000
        assert client.get(f"/v1/jobs/{job['id']}").status_code == 404
        after = _submit(client, many_cifs(5), make_archive)  # the next job runs on the same cluster
        status = wait_job(client, after["id"], timeout=120)
        assert (status["state"], status["counts"]["ok"], status["executor"]) == ("done", 5, "ray")


def _ray_workers(kind: str) -> list[psutil.Process]:
    """This machine's Ray worker processes running ``kind`` (Ray names them ``ray::<task or actor>``)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if cmdline.startswith(f"ray::{kind}"):
            found.append(proc)
    return found


def test_killing_ray_workers_mid_job_loses_nothing(
    ray_server: Any,
    jobs_server: Any,
    cifs: dict[str, str],
    many_cifs: Callable[[int], dict[str, str]],
    make_archive: Callable[..., bytes],
    wait_job: Callable[..., dict[str, Any]],
) -> None:
    members = _mixed(cifs, many_cifs, 600)
    with ray_server.client() as client:
        job = _submit(client, members, make_archive)
        wait_job(client, job["id"], until=lambda s: s["counts"]["done"] >= 16, timeout=180)
        killed = []
        for kind in ("parse_files", "InferenceActor"):  # a parse worker mid-task, and the model actor
            deadline = time.monotonic() + 60
            while not (workers := _ray_workers(kind)) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert workers, f"no Ray worker running {kind}"
            os.kill(workers[0].pid, signal.SIGKILL)
            killed.append(kind)
        status = wait_job(client, job["id"], timeout=300)
        rows = _rows(client, job)
    assert killed == ["parse_files", "InferenceActor"]
    assert status["state"] == "done" and status["counts"]["done"] == len(members), status
    indexes = [json.loads(line)["index"] for line in rows]
    assert sorted(set(indexes)) == list(range(len(members))) and len(indexes) == len(members) + 1, "each file once"
    with jobs_server.client() as in_process:
        reference = _submit(in_process, members, make_archive)
        wait_job(in_process, reference["id"], timeout=300)
        assert rows == _rows(in_process, reference)


def test_service_killed_mid_ray_job_resumes_on_restart(
    ray_address: str,
    models_dir: Path,
    tmp_path: Path,
    many_cifs: Callable[[int], dict[str, str]],
    make_archive: Callable[..., bytes],
    service_process: Callable[..., Any],
    wait_job: Callable[..., dict[str, Any]],
) -> None:
    env = {
        "CRYSTAL_MODELS_DIR": str(models_dir),
        "CRYSTAL_DATA_DIR": str(tmp_path / "data"),
        "CRYSTAL_PARSE_WORKERS": "1",
        "CRYSTAL_JOBS_EXECUTOR": "ray",
        "CRYSTAL_RAY_ADDRESS": ray_address,
        "CRYSTAL_RAY_PARSE_BATCH": "8",
        "CRYSTAL_RAY_ACTOR_CPUS": "0.5",
    }
    members = many_cifs(300)
    first = service_process(env)
    with httpx.Client(base_url=first.url, timeout=60) as client:
        job = _submit(client, members, make_archive)
        wait_job(client, job["id"], until=lambda s: s["counts"]["done"] >= 40, timeout=180)
        before = _rows(client, job)
    first.kill()
    second = service_process(env)
    with httpx.Client(base_url=second.url, timeout=60) as client:
        status = wait_job(client, job["id"], timeout=300)
        after = _rows(client, job)
    assert (status["state"], status["executor"], status["counts"]["done"]) == ("done", "ray", len(members))
    assert set(before) <= set(after), "rows committed before the kill are kept"
    assert [json.loads(line)["index"] for line in after] == list(range(len(members))), "every file exactly once"


def test_an_executor_start_past_its_timeout_fails_and_frees_the_cluster(
    ray_address: str, models_dir: Path, tmp_path: Path
) -> None:
    """A start is bounded (``ray_start_timeout_s``) and ends its actors, so the next try finds their CPUs free.

    The actors ask for 1.5 of the instance's 2 CPUs: one left behind by the failed start would leave
    the second start no room (and a module server's actor, if running, holds 0.5).
    """
    from service.jobs._ray import RayExecutor

    def executor(timeout_s: float) -> RayExecutor:
        settings = Settings(
            models_dir=models_dir,
            data_dir=tmp_path,
            jobs_executor="ray",
            ray_address=ray_address,
            ray_actor_cpus=1.5,
            ray_start_timeout_s=timeout_s,
        )
        return RayExecutor(settings)

    with pytest.raises(TimeoutError, match=r"in 0\.01 s .*asks for 1\.5 CPU, the cluster has 2 CPU"):
        asyncio.run(executor(0.01).start())
    patient = executor(120)
    asyncio.run(patient.start())
    asyncio.run(patient.stop())


def test_a_job_that_cannot_start_says_why_in_its_status_and_in_the_cli(
    ray_address: str,
    models_dir: Path,
    tmp_path: Path,
    live_server_class: type[Any],
    cifs: dict[str, str],
) -> None:
    """Actors asking for more CPUs than the cluster has: the job stays queued and its status says why."""
    settings = Settings(
        models_dir=models_dir,
        parse_workers=1,
        data_dir=tmp_path / "data",
        jobs_executor="ray",
        ray_address=ray_address,
        ray_actor_cpus=4,
        ray_start_timeout_s=1,
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "nacl.cif").write_text(cifs["nacl"])
    live = live_server_class(settings).start()
    command = [str(CLI), "screen", str(tmp_path / "in"), "--url", live.url, "--out", str(tmp_path / "out.csv")]
    screen = subprocess.Popen([*command, "--poll", "0.1"], stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        with live.client() as client:
            deadline = time.monotonic() + 120
            while not (jobs := client.get("/v1/jobs").raise_for_status().json()["jobs"]) or not jobs[0]["waiting"]:
                assert time.monotonic() < deadline, f"no job waiting with a reason: {jobs}"
                time.sleep(0.2)
            time.sleep(2.0)  # the CLI polls every 0.1 s
            status = client.get(jobs[0]["links"]["self"]).raise_for_status().json()
    finally:
        screen.kill()
        said = screen.communicate(timeout=30)[1]
        live.stop()
    assert (status["state"], status["counts"]["done"]) == ("queued", 0)
    assert status["waiting"]["code"] == "executor_unavailable"
    assert "did not load the models in 1 s" in status["waiting"]["detail"]
    assert "asks for 4 CPU, the cluster has 2 CPU" in status["waiting"]["detail"]
    assert f"waiting: executor_unavailable: {status['waiting']['detail']}" in said, said
