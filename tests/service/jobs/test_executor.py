"""The executor setting: in process by default, Ray only when asked, and a clear refusal without Ray installed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from service import Settings
from service.jobs._executor import InProcessExecutor, make_executor
from service.jobs._priority import InteractiveTraffic
from service.metrics import Metrics
from service.state import ServiceState


def _executor(tmp_path: Path, **settings: object) -> object:
    s = Settings(data_dir=tmp_path, **settings)  # type: ignore[arg-type]
    return make_executor(s, ServiceState(s, Metrics()), InteractiveTraffic())


def test_jobs_run_in_process_by_default(tmp_path: Path) -> None:
    executor = _executor(tmp_path)
    assert isinstance(executor, InProcessExecutor) and executor.name == "inprocess"


def test_the_ray_executor_without_ray_installed_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(RuntimeError, match=r"pip install .*\[ray\]"):
        _executor(tmp_path, jobs_executor="ray")


@pytest.mark.parametrize(
    ("address", "kept"),
    [
        ("auto", "auto"),
        (" LOCAL", "local"),
        ("10.0.0.5:6379", None),
        ("ray://head.lab:10001", None),
        ("ray-head:6379", None),
    ],
)
def test_ray_addresses_accepted(tmp_path: Path, address: str, kept: str | None) -> None:
    assert Settings(data_dir=tmp_path, ray_address=address).ray_address == (kept or address)


@pytest.mark.parametrize("address", ["", "head", "http://head:6379", "ray://head", "head:port"])
def test_ray_addresses_refused(tmp_path: Path, address: str) -> None:
    with pytest.raises(ValidationError, match="ray_address"):
        Settings(data_dir=tmp_path, ray_address=address)
