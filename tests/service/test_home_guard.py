"""Tests never touch the user's real state: the guard of ``tests/conftest.py`` and the temporary data folders.

A test server once ran with the default ``data_dir`` (``~/.local/state/crystal-service``) and
its orphan sweep deleted the inputs of a real job of a service running on the same machine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service import Settings

HOME = Path.home()

needs_a_home = pytest.mark.skipif(HOME.resolve() == Path(HOME.anchor), reason="$HOME is / here")


@needs_a_home
def test_settings_with_a_data_dir_in_home_fail_the_test_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"test settings point into \$HOME"):
        Settings(data_dir=HOME / ".local" / "state" / "crystal-service")
    monkeypatch.setenv("CRYSTAL_DATA_DIR", str(HOME / "jobs"))  # as if exported in the developer's shell
    with pytest.raises(pytest.fail.Exception, match="CRYSTAL_DATA_DIR"):
        Settings()


def test_default_settings_in_a_test_land_in_a_temporary_folder(in_home: Callable[[Path], bool]) -> None:
    data_dir = Settings().data_dir
    assert "home-guard" in str(data_dir) and not in_home(data_dir)


def test_every_test_server_has_its_own_temporary_data_dir(
    server: Any,
    strict_server: Any,
    live_server_factory: Callable[..., Any],
    models_dir: Path,
    in_home: Callable[[Path], bool],
) -> None:
    extra = live_server_factory(Settings(models_dir=models_dir, parse_workers=1))
    dirs = [s.settings.data_dir for s in (server, strict_server, extra)]
    assert len(set(dirs)) == 3
    assert not any(in_home(d) or "home-guard" in str(d) for d in dirs), dirs
