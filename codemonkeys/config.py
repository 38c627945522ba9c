"""Settings: one tree of groups (models, context, generation, sandbox, budget, swebench). Command-line flags and
`--set group.key=value` override `CODEMONKEYS_*` environment variables, which override a TOML file, which
overrides the defaults below.

Every key can be written grouped (`generation.samples`, `CODEMONKEYS_GENERATION__SAMPLES`, a `[generation]`
table) or by its bare name (`samples`, `CODEMONKEYS_SAMPLES`, a top-level `samples =`): key names are unique
across groups. A group's name with a plain value sets its main key (`models = "a,b"`, `sandbox = "docker"`).
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from codemonkeys.file_kinds import Screen

SandboxKind = Literal["auto", "local", "docker"]
ENV_PREFIX = "CODEMONKEYS_"


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    main: ClassVar[str | None] = None


class ModelSettings(_Group):
    """Which models answer, and how the client treats them."""

    main: ClassVar[str | None] = "names"

    names: list[str] = Field(
        default_factory=lambda: ["anthropic/claude-sonnet-4-5"],
        min_length=1,
        description="litellm model strings; trajectories are spread across them",
    )
    relevance_model: str | None = Field(None, description="cheaper model for the per-file relevance calls")
    api_base: str | None = Field(None, description="OpenAI-compatible server for every model")
    temperature: float = 1.0
    max_output_tokens: int = Field(8192, ge=1)
    model_concurrency: int = Field(32, ge=1, description="calls in flight per model")
    max_retries: int = Field(6, ge=0)
    request_timeout: float = Field(600.0, gt=0)
    breaker_failures: int = Field(
        5, ge=1, description="failed calls in a row after which a model is not called again in this run"
    )
    retry_base_delay: float = Field(1.0, gt=0, description="seconds before the first retry; doubles per attempt")
    lean_client: bool = Field(
        True, description="calls to an OpenAI-compatible api_base skip litellm (a fraction of its CPU per call)"
    )
    context_windows: dict[str, int] = Field(
        default_factory=dict, description="input tokens per model, where litellm does not know them (or is wrong)"
    )
    default_context_window: int = Field(
        128_000, ge=1000, description="input tokens of a model neither context_windows nor litellm knows"
    )
    prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="USD per million (input, output) tokens, for models litellm has no price for",
    )

    @field_validator("names", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [m.strip() for m in value.split(",") if m.strip()]
        return value

    @property
    def relevance(self) -> str:
        return self.relevance_model or self.names[0]


class ContextSettings(_Group):
    """Which files the generation models see."""

    rankings: int = Field(3, ge=1, description="independent file rankings to average")
    context_tokens: int = Field(120_000, ge=1000, description="token budget for the ranked files in the prompt")
    max_file_tokens: int = Field(50_000, ge=100, description="files larger than this are shown as an outline")
    screen: Screen = Field(
        "code",
        description="code: relevance screens code, build and config files (tests as outlines), not docs, test data, "
        "licences; all: every text file whole",
    )
    # Like Agentless's skeletons: signatures and the lines tell relevance enough about a large module.
    screen_file_tokens: int = Field(
        2_000,
        ge=100,
        description="with screen=code, relevance sees a larger file as its outline and the lines that mention "
        "the issue's identifiers",
    )


class GenerationSettings(_Group):
    """The trajectories: how many, how long, and how many candidates reach selection."""

    samples: int = Field(10, ge=1, description="parallel trajectories per issue")
    iterations: int = Field(8, ge=1, description="model turns per testing and editing trajectory")
    top_k: int = Field(3, ge=1, description="top-voted candidates passed to selection")
    selection_iterations: int = Field(8, ge=1, description="model turns of the selection trajectory")
    max_invalid_answers: int = Field(
        3, ge=1, description="unusable answers in a row after which a trajectory ends with what it has"
    )


class SandboxSettings(_Group):
    """Where test scripts run."""

    main: ClassVar[str | None] = "kind"

    kind: SandboxKind = Field("auto", description="auto (docker if available), local or docker")
    sandbox_network: bool = Field(False, description="let test scripts reach the network")
    test_timeout: float = Field(100.0, gt=0, description="seconds a test script may run")
    output_limit: int = Field(20_000, ge=200, description="characters of a run's output shown to the model")
    python: str = "python"
    venv: str | None = Field(
        None, description="virtualenv whose bin/ leads PATH for local test runs (swebench --env local builds one)"
    )
    image: str | None = Field(None, description="docker image for --sandbox docker")
    setup: str | None = Field(
        None,
        description="command run once before the first test run (docker: in the repo image; local: in a worktree, "
        "network on); what it builds in the tree survives every reset",
    )
    setup_timeout: float = Field(1800.0, gt=0, description="seconds the setup command may run")
    max_containers: int = Field(
        default_factory=lambda: max(2, (os.cpu_count() or 2) * 2), ge=1, description="docker sandboxes open at once"
    )
    docker_cpus: float = Field(2.0, gt=0, description="CPUs per docker sandbox")
    docker_memory: str = Field("4g", description="memory per docker sandbox (no swap on top)")
    docker_pids: int = Field(1024, ge=16, description="processes per docker sandbox")
    workdir: str | None = Field(
        None, description="where --image already holds the repository (SWE-bench: /testbed); unset: it is copied in"
    )
    command_prefix: str | None = Field(
        None,
        description="shell prefix setting up the environment once, e.g. 'source /opt/miniconda3/bin/activate testbed &&'",
    )


class BudgetSettings(_Group):
    """Money: checked before every model call, across all workers."""

    budget_usd: float | None = Field(None, gt=0, description="USD a problem may spend")
    run_budget_usd: float | None = Field(None, gt=0, description="USD the whole run may spend")


class SWEBenchSettings(_Group):
    """Benchmark runs: where environments and repositories come from, and how many instances run at once."""

    env: Literal["docker", "local"] = Field(
        "docker", description="docker: instance images; local: cached virtualenvs run by the local sandbox"
    )
    env_cache: Path | None = Field(None, description="where local environments and build logs are kept")
    repos_dir: Path | None = Field(None, description="clones named owner/name or owner+name; new clones go here")
    image_template: str = Field(
        "swebench/sweb.eval.x86_64.{instance}:latest",
        description="official instance image; {instance} is the id with __ written _1776_",
    )
    specs_file: Path | None = Field(None, description="JSON or TOML specs {repo: {version: spec}} over the official")
    workers: int = Field(4, ge=1, description="instances solved or evaluated at once")
    executor: Literal["local", "ray"] = Field("local", description="local: this process; ray: one task per instance")
    ray_address: str | None = Field(None, description="Ray cluster address; none starts a local cluster")
    eval_timeout: float = Field(1800.0, gt=0, description="seconds an instance's test command may run in eval")
    build_timeout: float = Field(3600.0, gt=0, description="seconds an environment build may take")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    models: ModelSettings = Field(default_factory=ModelSettings)
    context: ContextSettings = Field(default_factory=ContextSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    swebench: SWEBenchSettings = Field(default_factory=SWEBenchSettings)
    run_dir: Annotated[Path | None, Field(description="run directory; the same one resumes a killed run")] = None


GROUPS: dict[str, type[_Group]] = {
    name: field.annotation  # type: ignore[misc]
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, _Group)
}
_GROUP_OF: dict[str, str] = {key: group for group, cls in GROUPS.items() for key in cls.model_fields}


class SettingsError(ValueError):
    """A settings source that cannot be read: the message names the source and the key."""


def nest(flat: dict[str, Any], source: str) -> dict[str, Any]:
    """Puts bare keys (`samples`) and dotted keys (`generation.samples`) into their groups; where one source
    gives both spellings of a key, the dotted one wins."""
    tree: dict[str, Any] = {}
    for key, value in sorted(flat.items(), key=lambda item: "." in item[0]):
        group, _, sub = key.partition(".")
        if sub:
            if group not in GROUPS:
                raise SettingsError(f"{source}: unknown settings group {group!r} in {key!r}")
            tree.setdefault(group, {})[sub] = value
        elif key in GROUPS and not isinstance(value, dict):
            main = GROUPS[key].main
            if main is None:
                raise SettingsError(f"{source}: {key!r} is a group of settings, not a value")
            tree.setdefault(key, {})[main] = value
        elif key in GROUPS:
            tree.setdefault(key, {}).update(value)
        elif key in _GROUP_OF:
            tree.setdefault(_GROUP_OF[key], {})[key] = value
        else:
            tree[key] = value
    return tree


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` wins key by key, groups merged rather than replaced."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key in GROUPS:
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _literal(text: str) -> Any:
    """A JSON list or table given as text (`["a","b"]`, `{"m": [1, 2]}`) is parsed; anything else stays text,
    and a setting that needed a table says so when it is validated."""
    if text.strip().startswith(("[", "{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def _known(key: str) -> bool:
    group, _, sub = key.partition(".")
    if sub:
        return group in GROUPS and sub in GROUPS[group].model_fields
    return key in GROUPS or key in _GROUP_OF or key in Settings.model_fields


def from_env(environ: dict[str, str]) -> dict[str, Any]:
    """`CODEMONKEYS_SAMPLES` or `CODEMONKEYS_GENERATION__SAMPLES`; other `CODEMONKEYS_*` variables belong to
    someone else (the environment is shared) and are left alone."""
    flat = {}
    for name, value in environ.items():
        key = name.removeprefix(ENV_PREFIX).lower().replace("__", ".")
        if name.startswith(ENV_PREFIX) and _known(key):
            flat[key] = _literal(value)
    return nest(flat, "environment")


def from_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SettingsError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
    return nest(data, str(path))


def from_assignments(assignments: list[str]) -> dict[str, Any]:
    """`--set group.key=value` (or `key=value`), in order: the last one of a key wins."""
    flat = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"--set takes key=value (e.g. generation.samples=4), not {item!r}")
        flat[key.strip()] = _literal(value.strip())
    return nest(flat, "--set")


def load_settings(
    config_file: Path | None = None,
    assignments: list[str] | None = None,
    flags: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Flags arrive as dotted keys (`generation.samples`); those left as None fall through to the rest."""
    tree: dict[str, Any] = {}
    if config_file is not None:
        tree = from_toml(config_file)
    tree = merge(tree, from_env(dict(os.environ) if environ is None else environ))
    tree = merge(tree, from_assignments(assignments or []))
    tree = merge(tree, nest({k: v for k, v in (flags or {}).items() if v is not None}, "flags"))
    return Settings.model_validate(tree)
