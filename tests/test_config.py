"""Settings precedence: flags, then CODEMONKEYS_* variables, then the TOML file, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from codemonkeys.config import load_settings


def test_flags_beat_env_beat_toml_beat_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "cm.toml"
    toml.write_text('samples = 4\niterations = 5\nrankings = 6\nmodels = ["a", "b"]\n[prices]\n"a" = [1.0, 2.0]\n')
    monkeypatch.setenv("CODEMONKEYS_ITERATIONS", "7")
    monkeypatch.setenv("CODEMONKEYS_RANKINGS", "9")
    settings = load_settings(toml, rankings=2, samples=None)
    assert settings.rankings == 2  # flag
    assert settings.iterations == 7  # env over TOML
    assert settings.samples == 4  # TOML over default
    assert settings.top_k == 3  # default
    assert settings.models == ["a", "b"]
    assert settings.prices == {"a": (1.0, 2.0)}
    assert settings.relevance == "a"


def test_env_models_is_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEMONKEYS_MODELS", "openai/x, openai/y")
    assert load_settings(None).models == ["openai/x", "openai/y"]


def test_bad_values_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        load_settings(None, samples=0)
    toml = tmp_path / "cm.toml"
    toml.write_text("sampels = 3\n")
    with pytest.raises(ValidationError, match="sampels"):
        load_settings(toml)
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.toml")
