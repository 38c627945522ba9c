"""Command-line options declared once, in sets that every command reuses (`solve` today; the batch, ensemble
and bot commands share them), plus the error and logging helpers all commands use."""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from codemonkeys.config import GROUPS, Settings, SettingsError, load_settings

F = TypeVar("F", bound=Callable[..., Any])

BAD_INPUT = 2
FAILED = 1


def fail(message: str, code: int) -> typer.Exit:
    """One red line on stderr and the exit code: BAD_INPUT for what the user gave, FAILED for the rest."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def check_keys(settings: Settings) -> None:
    """Fails before any work when a model's provider key is missing: a batch should not die an hour in."""
    from codemonkeys.llm import missing_key

    problem = missing_key(settings.models)
    if problem:
        raise fail(problem, BAD_INPUT)


def setup_logging(verbose: bool) -> None:
    """Rich on a terminal; plain timestamped lines in logs and CI, where wrapping at 80 columns only hurts."""
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, show_level=False, markup=False, log_time_format="[%X]")
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("codemonkeys").setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("LiteLLM", "litellm", "httpx", "openai", "docker", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


@dataclass(frozen=True)
class Opt:
    """One flag bound to one settings key; its help ends with the key and its default."""

    key: str
    type: Any
    help: str
    flag: str | None = None

    @property
    def name(self) -> str:
        return self.key.replace(".", "__")

    def parameter(self) -> inspect.Parameter:
        flag = self.flag or "--" + self.key.rpartition(".")[2].replace("_", "-")
        text = f"{self.help} (default: {_default(self.key)}; setting {self.key})"
        option = typer.Option(flag, help=text, show_default=False)
        return inspect.Parameter(
            self.name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[self.type | None, option], default=None
        )


def _default(key: str) -> str:
    if "." not in key:
        return str(Settings.model_fields[key].get_default(call_default_factory=True))
    group, _, name = key.partition(".")
    value = GROUPS[group].model_fields[name].get_default(call_default_factory=True)
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "none" if value is None else str(value)


MODEL_OPTIONS = (
    Opt("models.names", list[str], "litellm model string; repeat to spread trajectories across models.", "--model"),
    Opt("models.relevance_model", str, "Cheaper model for the per-file relevance calls; none means the first --model."),
    Opt("models.api_base", str, "OpenAI-compatible server for every model (vLLM, sglang, Ollama)."),
)
CONTEXT_OPTIONS = (
    Opt("context.rankings", int, "Independent file rankings to average."),
    Opt("context.context_tokens", int, "Token budget for the ranked files in the prompt."),
    Opt("context.screen", str, "Files relevance screens: code (code, build, config; tests as outlines) or all."),
)
GENERATION_OPTIONS = (
    Opt("generation.samples", int, "Parallel trajectories per issue."),
    Opt("generation.iterations", int, "Model turns per trajectory."),
    Opt("generation.top_k", int, "Top-voted candidates passed to selection."),
)
SANDBOX_IMAGE_OPTIONS = (
    Opt("sandbox.kind", str, "Where test scripts run: auto (docker if available), local or docker.", "--sandbox"),
    Opt("sandbox.image", str, "Docker image for --sandbox docker."),
    Opt(
        "sandbox.setup",
        str,
        "Command run once before the first test run (e.g. 'python setup.py build_ext --inplace'); "
        "what it builds in the tree survives every reset.",
    ),
    Opt("sandbox.workdir", str, "Repository path inside a ready image (SWE-bench images: /testbed)."),
    Opt(
        "sandbox.command_prefix",
        str,
        "Shell prefix that sets up the image's environment (e.g. 'source activate x &&').",
    ),
)
SANDBOX_LIMIT_OPTIONS = (
    Opt("sandbox.sandbox_network", bool, "Let test scripts reach the network."),
    Opt("sandbox.max_containers", int, "Most docker sandboxes open at once (2 x CPU count)."),
    Opt("sandbox.test_timeout", float, "Seconds a test script may run."),
)
SANDBOX_OPTIONS = SANDBOX_IMAGE_OPTIONS + SANDBOX_LIMIT_OPTIONS
BUDGET_OPTIONS = (
    Opt("budget.budget_usd", float, "Stop starting model calls once this many USD are spent on a problem.", "--budget"),
)
BATCH_BUDGET_OPTIONS = (
    Opt("budget.run_budget_usd", float, "Stop starting model calls once this many USD are spent in all.", "--budget"),
    Opt("budget.budget_usd", float, "USD one instance may spend.", "--max-instance-budget"),
)
ENV_OPTIONS = (
    Opt("swebench.env", str, "Instance environments: docker (images) or local (virtualenvs, no docker).", "--env"),
    Opt("swebench.repos_dir", Path, "Repository clones named owner/name or owner+name; new clones go here.", "--repos"),
    Opt(
        "swebench.specs_file",
        Path,
        "JSON or TOML specs {repo: {version: spec}} for repos the official lacks.",
        "--specs",
    ),
)
EXECUTOR_OPTIONS = (
    Opt("swebench.workers", int, "Instances at once."),
    Opt("swebench.executor", str, "local (this process) or ray (one task per instance on a Ray cluster)."),
    Opt("swebench.ray_address", str, "Ray cluster to join (ray://host:10001 or auto); none starts a local one."),
)
RUN_OPTIONS = (Opt("run_dir", Path, "Run directory; the same directory resumes a killed run; none means runs/<id>."),)
ALL_OPTIONS = MODEL_OPTIONS + CONTEXT_OPTIONS + GENERATION_OPTIONS + SANDBOX_OPTIONS + BUDGET_OPTIONS + RUN_OPTIONS

_SOURCES = (
    inspect.Parameter(
        "config",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[Path | None, typer.Option(help="TOML file with settings (flags and env override it).")],
        default=None,
    ),
    inspect.Parameter(
        "assignments",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[
            list[str] | None,
            typer.Option(
                "--set",
                help="Any setting without a flag, as group.key=value (e.g. sandbox.docker_memory=8g); repeatable.",
            ),
        ],
        default=None,
    ),
)


def describe_settings_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        return f"invalid setting {where}: {first['msg']}"
    return str(exc)


def with_settings(*option_sets: tuple[Opt, ...]) -> Callable[[F], F]:
    """Adds the options of `option_sets`, `--config` and `--set` to a command, which receives `settings` instead:
    flags beat `--set`, which beats the environment, which beats the TOML file."""
    options = [opt for group in option_sets for opt in group]

    def decorate(func: F) -> F:
        own = [p for p in inspect.signature(func, eval_str=True).parameters.values() if p.name != "settings"]
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        params += [opt.parameter() for opt in options] + list(_SOURCES)

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            flags = {opt.key: kwargs.pop(opt.name) for opt in options}
            if flags.get("models.names") == []:
                flags["models.names"] = None
            config, assignments = kwargs.pop("config"), kwargs.pop("assignments")
            try:
                settings = load_settings(config, assignments, flags)
            except (ValidationError, SettingsError) as exc:
                raise fail(describe_settings_error(exc), BAD_INPUT) from None
            return func(settings=settings, **kwargs)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command  # type: ignore[return-value]

    return decorate
