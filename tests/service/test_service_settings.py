"""Settings from the environment (prefix CRYSTAL_), validated at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service import Settings, get_settings


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYSTAL_MODELS_DIR", "/srv/models")
    monkeypatch.setenv("CRYSTAL_DEFAULTS", '{"band_gap": "sr-cgcnn-band-gap@2"}')
    monkeypatch.setenv("CRYSTAL_MAX_ATOMS", "50")
    monkeypatch.setenv("CRYSTAL_DEVICE", "CUDA:1")
    monkeypatch.setenv("CRYSTAL_API_KEY", "s3cr3t-key")
    s = Settings()
    assert s.models_dir == Path("/srv/models")
    assert s.defaults == {"band_gap": "sr-cgcnn-band-gap@2"}
    assert (s.max_atoms, s.device) == (50, "cuda:1")
    assert s.api_key is not None and s.api_key.get_secret_value() == "s3cr3t-key"
    assert "s3cr3t-key" not in repr(s)


def test_defaults_match_the_issue() -> None:
    s = Settings()
    assert (s.max_atoms, s.max_file_bytes, s.max_files) == (500, 2 << 20, 1000)
    assert (s.backend, s.device, s.precision, s.api_key) == ("auto", "auto", "auto", None)


@pytest.mark.parametrize(
    ("key", "value"),
    [("device", "tpu"), ("backend", "tensorflow"), ("max_atoms", 0), ("log_level", "loud"), ("precision", "int8")],
)
def test_invalid_values_are_refused(key: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Settings(**{key: value})


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(max_atom=5)  # type: ignore[call-arg]


def test_empty_api_key_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYSTAL_API_KEY", "")
    assert Settings().api_key is None


def test_get_settings_reads_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("CRYSTAL_MAX_FILES", "7")
    try:
        assert get_settings().max_files == 7
        monkeypatch.setenv("CRYSTAL_MAX_FILES", "8")
        assert get_settings() is get_settings() and get_settings().max_files == 7
    finally:
        get_settings.cache_clear()
