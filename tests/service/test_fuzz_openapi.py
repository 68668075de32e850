"""schemathesis against a real server's OpenAPI, run as a user would run it (``schemathesis run ...``).

Every check runs except two that ask the schema to say what JSON Schema cannot: that any
schema-valid body is a predictable CIF (``positive_data_acceptance``: a PNG, or random text, in a
CIF field is rightly a 422 ``invalid_cif``), and that the lenient multipart reader refuses every
body the schema does not describe (``negative_data_rejection``: it takes any part named
``files`` as a file and reports per-file errors). No 5xx, every status, content type
(``application/problem+json``), header (``Allow`` on 405) and body as documented.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from service import Settings


def _schemathesis(live_url: str, examples: int, cwd: Path) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).with_name("schemathesis")
    if not cli.exists():
        pytest.skip("schemathesis is not installed (pip install schemathesis)")
    return subprocess.run(
        [
            str(cli),
            "run",
            f"{live_url}/openapi.json",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance,negative_data_rejection",
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
