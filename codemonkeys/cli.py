"""The `codemonkeys` command line."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import io
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from codemonkeys import __version__
from codemonkeys.cli_options import ALL_OPTIONS, BAD_INPUT, check_keys, fail, setup_logging, with_settings
from codemonkeys.config import Settings
from codemonkeys.problem import Problem, ProblemError, make_problem

app = typer.Typer(
    help="Resolve a repository issue by scaling test-time compute: many parallel trajectories write "
    "reproduction tests and fixes, the tests vote, and a selection trajectory picks one patch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _mount_sandbox_commands() -> None:
    from codemonkeys.cli_github import github_app
    from codemonkeys.cli_report import report
    from codemonkeys.cli_sandbox import sandbox_app
    from codemonkeys.cli_swebench import swebench_app

    app.command()(report)
    app.add_typer(sandbox_app, name="sandbox")
    app.add_typer(swebench_app, name="swebench")
    app.add_typer(github_app, name="github")


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
    # `kill -USR1 <pid>` prints every thread's stack: how a run that seems stuck shows where it waits. A stderr
    # without a file descriptor (a test runner's capture) has nowhere to print it.
    with contextlib.suppress(AttributeError, ValueError, io.UnsupportedOperation):
        faulthandler.register(signal.SIGUSR1, all_threads=True)


@app.command()
@with_settings(ALL_OPTIONS)
def solve(
    settings: Settings,
    issue: Annotated[
        str,
        typer.Option(
            help="File holding the issue text, - to read it from stdin, or a GitHub issue URL "
            "(https://github.com/OWNER/REPO/issues/N: title, body and comments are read; GITHUB_TOKEN when set)."
        ),
    ],
    repo: Annotated[
        str | None,
        typer.Option(
            help="Path to a local git repository, or a git URL to clone (default for an issue URL: its repo)."
        ),
    ] = None,
    commit: Annotated[str | None, typer.Option(help="Commit to fix (default: the repository's HEAD).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the chosen patch (unified diff) here.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug progress.")] = False,
) -> None:
    """Solve one issue: prints progress per stage, then a summary; writes the patch to --out.

    Exit codes: 0 a patch was chosen, 1 no patch (no candidate survived, or the run stopped early and a rerun
    resumes it), 2 bad input.
    """
    setup_logging(verbose)
    issue_text, instance_id, issue_repo = _read_issue(issue)
    repo = repo or issue_repo
    if repo is None:
        raise fail("--repo is required unless --issue is a GitHub issue URL", BAD_INPUT)
    check_keys(settings)
    clones = (settings.run_dir or Path("runs")) / "_repos"
    try:
        problem = make_problem(repo, commit, issue_text, clones, instance_id=instance_id)
    except ProblemError as exc:
        raise fail(str(exc), BAD_INPUT) from None
    if settings.run_dir is None:
        settings.run_dir = Path("runs") / problem.instance_id
    code = asyncio.run(_solve(problem, settings, out))
    raise typer.Exit(code)


def _read_issue(issue: str) -> tuple[str, str | None, str | None]:
    """The issue text, and for a GitHub issue URL its instance id (owner__repo-N) and repository URL."""
    if issue == "-":
        return sys.stdin.read(), None, None
    from codemonkeys.github.client import GitHubClient, GitHubError, parse_issue_url

    parsed = parse_issue_url(issue)
    if parsed is not None:
        from codemonkeys.github.issue_text import issue_text
        from codemonkeys.llm import scrub

        ref, api_url = parsed
        try:
            thread = GitHubClient(os.environ.get("GITHUB_TOKEN"), api_url).thread(ref)
        except GitHubError as exc:
            raise fail(scrub(str(exc)), BAD_INPUT) from None
        web = issue.split(f"/{ref.owner}/{ref.repo}/issues/")[0]
        return issue_text(thread), f"{ref.owner}__{ref.repo}-{ref.number}", f"{web}/{ref.slug}.git"
    path = Path(issue)
    if not path.is_file():
        raise fail(f"issue file not found: {issue}", BAD_INPUT)
    try:
        return path.read_text(encoding="utf-8"), None, None
    except UnicodeDecodeError:
        raise fail(f"issue file is not UTF-8 text: {issue}", BAD_INPUT) from None


async def _solve(problem: Problem, settings: Settings, out: Path | None) -> int:
    from codemonkeys.jsonfiles import atomic_write_text
    from codemonkeys.pipeline import solve_in_run_dir
    from codemonkeys.summary import print_summary

    result, store = await solve_in_run_dir(problem, settings)
    print_summary(result, store.root)
    if result.patch and out is not None:
        atomic_write_text(out, result.patch)
    return 0 if result.patch else 1


_mount_sandbox_commands()
