"""schemathesis against a real server's OpenAPI, run as a user would run it (``schemathesis run ...``).

Every check runs (``--checks all``), with the project's ``schemathesis.toml``: it allows one
rejection the schema cannot express, a 422 from ``POST /v1/predict`` for a schema-valid body
that is not a readable crystal (a PNG, random text). No 5xx, schema-valid requests accepted,
schema-violating ones refused (a ``files`` part sent as a form field, not a file, is a 422),
every status, content type (``application/problem+json``), header (``Allow`` on 405) and body
as documented.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from service import Settings

#: The project's schemathesis settings (found by ``schemathesis run`` in the repository root).
CONFIG = Path(__file__).resolve().parents[2] / "schemathesis.toml"


def _schemathesis(live_url: str, examples: int, cwd: Path) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).with_name("schemathesis")
    if not cli.exists():
        pytest.skip("schemathesis is not installed (pip install schemathesis)")
    return subprocess.run(
        [
            str(cli),
            "--config-file",
            str(CONFIG),
            "run",
            f"{live_url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(examples),
            "--seed",
            "14",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _run(live_server_factory: Callable[..., object], models_dir: Path, tmp_path: Path, examples: int) -> None:
    live = live_server_factory(Settings(models_dir=models_dir, parse_workers=1, data_dir=tmp_path / "data"))
    result = _schemathesis(live.url, examples, tmp_path)  # type: ignore[attr-defined]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_openapi_contract_holds(live_server_factory, models_dir: Path, tmp_path: Path) -> None:
    _run(live_server_factory, models_dir, tmp_path, examples=5)


@pytest.mark.slow
def test_openapi_contract_holds_longer(live_server_factory, models_dir: Path, tmp_path: Path) -> None:
    _run(live_server_factory, models_dir, tmp_path, examples=30)
