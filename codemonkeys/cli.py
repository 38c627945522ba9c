"""The `codemonkeys` command line."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from codemonkeys import __version__
from codemonkeys.config import Settings, load_settings
from codemonkeys.problem import Problem, ProblemError, make_problem

app = typer.Typer(
    help="Resolve a repository issue by scaling test-time compute: many parallel trajectories write "
    "reproduction tests and fixes, the tests vote, and a selection trajectory picks one patch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _mount_sandbox_commands() -> None:
    from codemonkeys.cli_sandbox import sandbox_app

    app.add_typer(sandbox_app, name="sandbox")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"codemonkeys {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """CodeMonkeys: point it at a repo and an issue, get back one tested patch."""


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _setup_logging(verbose: bool) -> None:
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


@app.command()
def solve(
    repo: Annotated[str, typer.Option(help="Path to a local git repository, or a git URL to clone.")],
    issue: Annotated[str, typer.Option(help="File holding the issue text, or - to read it from stdin.")],
    commit: Annotated[str | None, typer.Option(help="Commit to fix (default: the repository's HEAD).")] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(help="litellm model string; repeat to spread trajectories across several models."),
    ] = None,
    relevance_model: Annotated[
        str | None, typer.Option(help="Cheaper model for the per-file relevance calls (default: the first --model).")
    ] = None,
    api_base: Annotated[
        str | None, typer.Option(help="OpenAI-compatible server for every model (vLLM, sglang, Ollama).")
    ] = None,
    samples: Annotated[int | None, typer.Option(help="Parallel trajectories per issue. [default: 10]")] = None,
    iterations: Annotated[int | None, typer.Option(help="Model turns per trajectory. [default: 8]")] = None,
    rankings: Annotated[int | None, typer.Option(help="Independent file rankings to average. [default: 3]")] = None,
    top_k: Annotated[int | None, typer.Option(help="Top-voted candidates passed to selection. [default: 3]")] = None,
    context_tokens: Annotated[
        int | None, typer.Option(help="Token budget for the ranked files in the prompt. [default: 120000]")
    ] = None,
    budget: Annotated[
        float | None, typer.Option(help="Stop starting model calls once this many USD are spent on the problem.")
    ] = None,
    sandbox: Annotated[
        str | None, typer.Option(help="Where test scripts run: auto (docker if available), local or docker.")
    ] = None,
    sandbox_network: Annotated[
        bool | None, typer.Option("--sandbox-network", help="Let test scripts reach the network (off by default).")
    ] = None,
    image: Annotated[str | None, typer.Option(help="Docker image for --sandbox docker.")] = None,
    setup: Annotated[
        str | None, typer.Option(help="Command run once in the repo image (e.g. pip install -e .).")
    ] = None,
    max_containers: Annotated[
        int | None, typer.Option(help="Most docker sandboxes open at once. [default: 2 x CPU count]")
    ] = None,
    workdir: Annotated[
        str | None, typer.Option(help="Repository path inside a ready image (SWE-bench images: /testbed).")
    ] = None,
    command_prefix: Annotated[
        str | None,
        typer.Option(help="Shell prefix that sets up the image's environment (e.g. 'source activate testbed &&')."),
    ] = None,
    test_timeout: Annotated[float | None, typer.Option(help="Seconds a test script may run. [default: 100]")] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Run directory; the same directory resumes a killed run. [default: runs/<id>]")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the chosen patch (unified diff) here.")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file with settings (flags and env override it).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug progress.")] = False,
) -> None:
    """Solve one issue: prints progress per stage, then a summary; writes the patch to --out.

    Exit codes: 0 a patch was chosen, 1 no candidate survived (or the budget ran out first), 2 bad input.
    """
    _setup_logging(verbose)
    try:
        settings = load_settings(
            config,
            models=model or None,
            relevance_model=relevance_model,
            api_base=api_base,
            samples=samples,
            iterations=iterations,
            rankings=rankings,
            top_k=top_k,
            context_tokens=context_tokens,
            budget_usd=budget,
            sandbox=sandbox,
            sandbox_network=sandbox_network,
            image=image,
            setup=setup,
            max_containers=max_containers,
            workdir=workdir,
            command_prefix=command_prefix,
            test_timeout=test_timeout,
            run_dir=run_dir,
        )
    except (ValidationError, FileNotFoundError, ValueError) as exc:
        raise _fail(_settings_error(exc)) from None
    issue_text = _read_issue(issue)
    _check_keys(settings)
    clones = (settings.run_dir or Path("runs")) / "_repos"
    try:
        problem = make_problem(repo, commit, issue_text, clones)
    except ProblemError as exc:
        raise _fail(str(exc)) from None
    if settings.run_dir is None:
        settings.run_dir = Path("runs") / problem.instance_id
    code = asyncio.run(_solve(problem, settings, out))
    raise typer.Exit(code)


def _settings_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        return f"invalid setting {where}: {first['msg']}"
    return str(exc)


def _read_issue(issue: str) -> str:
    if issue == "-":
        return sys.stdin.read()
    path = Path(issue)
    if not path.is_file():
        raise _fail(f"issue file not found: {issue}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _fail(f"issue file is not UTF-8 text: {issue}") from None


def _check_keys(settings: Settings) -> None:
    from codemonkeys.llm import check_provider_key

    models = {*settings.models, settings.relevance}
    for name in sorted(models):
        problem = check_provider_key(name, settings.api_base)
        if problem:
            raise _fail(problem)


async def _solve(problem: Problem, settings: Settings, out: Path | None) -> int:
    from codemonkeys.llm import ModelClient
    from codemonkeys.pipeline import solve as run_pipeline
    from codemonkeys.store import RunStore, atomic_write_text
    from codemonkeys.summary import print_summary

    store = RunStore(settings.run_dir)
    atomic_write_text(store.root / "config.json", settings.model_dump_json(indent=2))
    client = ModelClient(settings, usage_path=store.usage_path)
    result = await run_pipeline(problem, settings, client, store)
    print_summary(result, store.root)
    if result.patch and out is not None:
        atomic_write_text(out, result.patch)
    return 0 if result.patch else 1


_mount_sandbox_commands()
