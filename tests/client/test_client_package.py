"""The client installs and runs without torch, and the project has one version string."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import crystal_client
import crystalgraph

ROOT = Path(__file__).resolve().parents[2]


def test_one_version_string() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "crystalgraph.__version__"}
    client = tomllib.loads((ROOT / "crystal_client" / "pyproject.toml").read_text())
    assert client["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "crystal_client.__version__"}
    assert crystal_client.__version__ == crystalgraph.__version__


def test_the_client_package_depends_on_httpx_and_tqdm_only() -> None:
    client = tomllib.loads((ROOT / "crystal_client" / "pyproject.toml").read_text())
    assert sorted(d.split(">")[0] for d in client["project"]["dependencies"]) == ["httpx", "tqdm"]
    assert client["project"]["scripts"] == {"crystal-predict": "crystal_client.cli:main"}


def test_the_client_runs_where_torch_cannot_be_imported(tmp_path: Path) -> None:
    # None in sys.modules makes `import torch` (and the rest) fail, as on a machine without them.
    code = (
        "import sys\n"
        "for name in ('torch', 'numpy', 'pymatgen', 'crystalgraph', 'service', 'fastapi'):\n"
        "    sys.modules[name] = None\n"
        "from crystal_client.cli import main\n"
        "sys.exit(main(['--help']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "crystal-predict" in done.stdout and "screen" in done.stdout


def test_the_bin_shim_runs_the_client_from_anywhere(tmp_path: Path) -> None:
    link = tmp_path / "crystal-predict"
    link.symlink_to(ROOT / "bin" / "crystal-predict")  # as linked onto a PATH
    # Without the checkout's .venv it falls back to the python3 on the PATH: here, the test's.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([str(link), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "crystal-predict" in done.stdout and "screen" in done.stdout
