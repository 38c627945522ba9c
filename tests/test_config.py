"""Settings precedence: flags, then `--set`, then CODEMONKEYS_* variables, then the TOML file, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from codemonkeys.cli_options import (
    BAD_INPUT,
    GENERATION_OPTIONS,
    SANDBOX_OPTIONS,
    Opt,
    describe_settings_error,
    with_settings,
)
from codemonkeys.config import SandboxSettings, Settings, SettingsError, load_settings, nest


def test_flags_beat_env_beat_toml_beat_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "cm.toml"
    toml.write_text('samples = 4\niterations = 5\nrankings = 6\nmodels = ["a", "b"]\n[prices]\n"a" = [1.0, 2.0]\n')
    monkeypatch.setenv("CODEMONKEYS_ITERATIONS", "7")
    monkeypatch.setenv("CODEMONKEYS_RANKINGS", "9")
    settings = load_settings(toml, flags={"context.rankings": 2, "generation.samples": None})
    assert settings.context.rankings == 2  # flag
    assert settings.generation.iterations == 7  # env over TOML
    assert settings.generation.samples == 4  # TOML over default
    assert settings.generation.top_k == 3  # default
    assert settings.models.names == ["a", "b"]
    assert settings.models.prices == {"a": (1.0, 2.0)}
    assert settings.models.relevance == "a"


def test_env_models_is_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEMONKEYS_MODELS", "openai/x, openai/y")
    assert load_settings(None).models.names == ["openai/x", "openai/y"]


def test_bad_values_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        load_settings(None, flags={"generation.samples": 0}, environ={})
    toml = tmp_path / "cm.toml"
    toml.write_text("sampels = 3\n")
    with pytest.raises(ValidationError, match="sampels"):
        load_settings(toml, environ={})
    with pytest.raises(SettingsError, match="config file not found"):
        load_settings(tmp_path / "missing.toml", environ={})
    toml.write_text("samples = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(toml, environ={})


# --- grouped keys -------------------------------------------------------------------------------------


def test_grouped_toml_tables(tmp_path: Path) -> None:
    toml = tmp_path / "cm.toml"
    toml.write_text(
        "run_dir = 'runs/x'\n"
        "[models]\nnames = ['openai/a', 'openai/b']\nrelevance_model = 'openai/cheap'\n"
        "[models.prices]\n'openai/a' = [1.0, 2.0]\n"
        "[context]\nrankings = 5\n"
        "[generation]\nsamples = 4\ntop_k = 2\n"
        "[sandbox]\nkind = 'local'\ndocker_memory = '8g'\n"
        "[budget]\nbudget_usd = 2.5\n"
    )
    settings = load_settings(toml, environ={})
    assert settings.models.names == ["openai/a", "openai/b"]
    assert settings.models.relevance == "openai/cheap"
    assert settings.models.prices == {"openai/a": (1.0, 2.0)}
    assert settings.context.rankings == 5
    assert (settings.generation.samples, settings.generation.top_k, settings.generation.iterations) == (4, 2, 8)
    assert (settings.sandbox.kind, settings.sandbox.docker_memory) == ("local", "8g")
    assert settings.budget.budget_usd == 2.5
    assert settings.run_dir == Path("runs/x")


def test_bare_and_grouped_forms_mean_the_same(tmp_path: Path) -> None:
    bare, grouped = tmp_path / "bare.toml", tmp_path / "grouped.toml"
    bare.write_text("samples = 4\nsandbox = 'docker'\nmodels = 'a,b'\ndocker_pids = 64\n")
    grouped.write_text(
        "[generation]\nsamples = 4\n[sandbox]\nkind = 'docker'\ndocker_pids = 64\n[models]\nnames = 'a,b'\n"
    )
    assert load_settings(bare, environ={}) == load_settings(grouped, environ={})
    assert load_settings(bare, environ={}).sandbox.kind == "docker"
    assert nest({"samples": 4, "sandbox.kind": "docker", "models": "a,b", "run_dir": "r"}, "test") == {
        "generation": {"samples": 4},
        "sandbox": {"kind": "docker"},
        "models": {"names": "a,b"},
        "run_dir": "r",
    }


def test_grouped_and_bare_env_vars() -> None:
    settings = load_settings(
        environ={
            "CODEMONKEYS_SANDBOX__DOCKER_MEMORY": "8g",
            "CODEMONKEYS_GENERATION__SAMPLES": "4",
            "CODEMONKEYS_MODELS__NAMES": "openai/x,openai/y",
            "CODEMONKEYS_PRICES": '{"openai/x": [1, 2]}',
            "CODEMONKEYS_SANDBOX": "local",
            "CODEMONKEYS_ITERATIONS": "3",
            "OTHER_SAMPLES": "9",
        }
    )
    assert settings.sandbox.docker_memory == "8g"
    assert settings.sandbox.kind == "local"
    assert settings.generation.samples == 4
    assert settings.generation.iterations == 3
    assert settings.models.names == ["openai/x", "openai/y"]
    assert settings.models.prices == {"openai/x": (1.0, 2.0)}


def test_set_assignments_dotted_bare_and_json() -> None:
    settings = load_settings(
        assignments=[
            "generation.samples=4",
            "iterations=5",
            'models.prices={"m": [1, 2]}',
            'models.names=["openai/a", "openai/b"]',
            "sandbox.docker_memory = 8g",
            "sandbox=docker",
            "budget.budget_usd=1.5",
            "sandbox.command_prefix=source activate x &&",
            "top_k=1",
            "top_k=2",
        ],
        environ={},
    )
    assert (settings.generation.samples, settings.generation.iterations) == (4, 5)
    assert settings.generation.top_k == 2, "the last assignment of a key wins"
    assert settings.models.prices == {"m": (1.0, 2.0)}
    assert settings.models.names == ["openai/a", "openai/b"]
    assert (settings.sandbox.kind, settings.sandbox.docker_memory) == ("docker", "8g")
    assert settings.sandbox.command_prefix == "source activate x &&"
    assert settings.budget.budget_usd == 1.5


def test_precedence_flags_then_set_then_env_then_toml_then_defaults(tmp_path: Path) -> None:
    toml = tmp_path / "cm.toml"
    toml.write_text("[generation]\nsamples = 1\niterations = 1\ntop_k = 1\nselection_iterations = 1\n")
    environ = {
        "CODEMONKEYS_GENERATION__SAMPLES": "2",
        "CODEMONKEYS_ITERATIONS": "2",
        "CODEMONKEYS_TOP_K": "2",
    }
    assignments = ["generation.samples=3", "iterations=3"]
    flags = {"generation.samples": 4, "generation.iterations": None}
    settings = load_settings(toml, assignments, flags, environ)
    generation = settings.generation
    assert generation.samples == 4  # flag over --set
    assert generation.iterations == 3  # --set over env (a flag left None falls through)
    assert generation.top_k == 2  # env over TOML
    assert generation.selection_iterations == 1  # TOML over default
    assert generation.max_invalid_answers == 3  # default
    assert settings.sandbox == SandboxSettings()  # untouched groups keep their defaults


def test_groups_merge_key_by_key_across_sources(tmp_path: Path) -> None:
    toml = tmp_path / "cm.toml"
    toml.write_text("[sandbox]\nkind = 'docker'\nimage = 'repo:latest'\n")
    settings = load_settings(toml, ["sandbox.docker_cpus=4"], environ={"CODEMONKEYS_SANDBOX__DOCKER_MEMORY": "8g"})
    sandbox = settings.sandbox
    assert (sandbox.kind, sandbox.image, sandbox.docker_cpus, sandbox.docker_memory) == (
        "docker",
        "repo:latest",
        4.0,
        "8g",
    )


def test_unknown_groups_and_keys_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="unknown settings group 'modles'"):
        load_settings(assignments=["modles.names=a"], environ={})
    ignored = {"CODEMONKEYS_GENRATION__SAMPLES": "3", "CODEMONKEYS_HOME": "/x", "CODEMONKEYS_GENERATION__X": "1"}
    assert load_settings(environ=ignored) == load_settings(environ={}), "other tools' variables are left alone"
    toml = tmp_path / "cm.toml"
    toml.write_text("[generation]\nsampels = 3\n")
    with pytest.raises(ValidationError, match=r"generation\.sampels"):
        load_settings(toml, environ={})
    with pytest.raises(ValidationError, match=r"sandbox\.samples"):
        load_settings(assignments=["sandbox.samples=3"], environ={})
    with pytest.raises(ValidationError, match="bogus"):
        load_settings(assignments=["bogus=1"], environ={})
    with pytest.raises(SettingsError, match="'generation' is a group of settings"):
        load_settings(assignments=["generation=4"], environ={})


def test_a_bad_set_is_a_settings_error() -> None:
    for bad in ("generation.samples", "=4", "  =4"):
        with pytest.raises(SettingsError, match="--set takes key=value"):
            load_settings(assignments=[bad], environ={})
    with pytest.raises(ValidationError, match=r"models\.prices"):
        load_settings(assignments=['models.prices={"m": [1, 2}'], environ={})


def test_text_that_only_looks_like_json_stays_text() -> None:
    settings = load_settings(
        assignments=["command_prefix={ source x; } &&", "sandbox.image="], environ={"CODEMONKEYS_SETUP": "[ -x y ]"}
    )
    assert settings.sandbox.command_prefix == "{ source x; } &&"
    assert settings.sandbox.image == ""
    assert settings.sandbox.setup == "[ -x y ]"


def test_the_dotted_spelling_wins_over_the_bare_one_in_a_source() -> None:
    for environ in (
        {"CODEMONKEYS_SAMPLES": "2", "CODEMONKEYS_GENERATION__SAMPLES": "5"},
        {"CODEMONKEYS_GENERATION__SAMPLES": "5", "CODEMONKEYS_SAMPLES": "2"},
    ):
        assert load_settings(environ=environ).generation.samples == 5


# --- command-line helpers -----------------------------------------------------------------------------


def test_describe_settings_error_names_the_dotted_key() -> None:
    with pytest.raises(ValidationError) as caught:
        load_settings(assignments=["sandbox.docker_pids=3"], environ={})
    message = describe_settings_error(caught.value)
    assert message.startswith("invalid setting sandbox.docker_pids:")
    assert "16" in message
    with pytest.raises(SettingsError) as bad:
        load_settings(assignments=["nope"], environ={})
    assert describe_settings_error(bad.value) == str(bad.value)


def test_an_option_names_its_setting_and_default() -> None:
    """Its flag (`--samples`, `--sandbox`) is exercised through a command below."""
    samples = Opt("generation.samples", int, "Parallel trajectories per issue.")
    assert samples.name == "generation__samples"
    parameter = samples.parameter()
    option = parameter.annotation.__metadata__[0]
    assert option.help.endswith("(default: 10; setting generation.samples)")
    assert parameter.default is None


def test_with_settings_reads_flags_set_and_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CODEMONKEYS_SAMPLES", raising=False)
    monkeypatch.delenv("CODEMONKEYS_GENERATION__SAMPLES", raising=False)
    seen: list[tuple[Settings, str]] = []
    app = typer.Typer()

    @app.command()
    @with_settings(GENERATION_OPTIONS, SANDBOX_OPTIONS)
    def run(name: str, settings: Settings) -> None:
        seen.append((settings, name))

    toml = tmp_path / "cm.toml"
    toml.write_text("[generation]\nsamples = 2\niterations = 6\n")
    runner = CliRunner()
    args = ["job", "--samples", "4", "--sandbox", "local", "--set", "sandbox.docker_memory=8g", "--config", str(toml)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    [(settings, name)] = seen
    assert name == "job"
    assert (settings.generation.samples, settings.generation.iterations) == (4, 6)
    assert (settings.sandbox.kind, settings.sandbox.docker_memory) == ("local", "8g")

    refused = runner.invoke(app, ["job", "--samples", "0"])
    assert refused.exit_code == BAD_INPUT
    assert "invalid setting generation.samples" in refused.output
    assert len(seen) == 1
