"""`codemonkeys github ...`: the Action bot's entry point (the composite action in action.yml runs it)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Annotated

import typer

from codemonkeys.cli_options import ALL_OPTIONS, BAD_INPUT, FAILED, fail, setup_logging, with_settings
from codemonkeys.config import Settings

github_app = typer.Typer(
    help="Answer GitHub issues from a GitHub Actions workflow: see docs/github-action.md.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@github_app.command()
@with_settings(ALL_OPTIONS)
def handle(
    settings: Settings,
    event: Annotated[Path, typer.Option(help="The Actions event payload (GITHUB_EVENT_PATH).")],
    repo: Annotated[
        Path | None, typer.Option(help="The checked-out repository (default: GITHUB_WORKSPACE, else .).")
    ] = None,
    trigger_label: Annotated[str, typer.Option(help="The issue label that starts a run.")] = "codemonkeys",
    command: Annotated[str, typer.Option(help="The comment command that starts a run.")] = "/codemonkeys",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug progress.")] = False,
) -> None:
    """Handle one issue event: a labelled issue or a `/codemonkeys` comment by someone with write access runs the
    pipeline on the checkout and answers with a draft pull request on branch codemonkeys/issue-N (or the patch
    as a comment when Actions may not open pull requests). Everything else is answered or ignored.

    Reads GITHUB_TOKEN, GITHUB_REPOSITORY, GITHUB_API_URL and GITHUB_SERVER_URL/GITHUB_RUN_ID (for links), and
    appends how the run ended to GITHUB_STEP_SUMMARY.
    Exit codes: 0 handled (including ignored and refused triggers), 1 no patch was proposed or the run failed
    (the issue says why), 2 bad input, 130 cancelled.
    """
    from codemonkeys.github.client import GitHubError
    from codemonkeys.github.events import EventError
    from codemonkeys.github.handle import BotConfig
    from codemonkeys.github.handle import handle as handle_event
    from codemonkeys.llm import scrub

    setup_logging(verbose)
    token = os.environ.get("GITHUB_TOKEN", "")
    if not token:
        raise fail("GITHUB_TOKEN is not set: the action passes github.token as GITHUB_TOKEN", BAD_INPUT)
    repo_path = repo or Path(os.environ.get("GITHUB_WORKSPACE") or ".")
    if not (repo_path / ".git").exists():
        raise fail(f"not a git checkout: {repo_path} (check out the repository before this action)", BAD_INPUT)
    config = BotConfig(
        event=event,
        repo=repo_path.resolve(),
        settings=settings,
        trigger_label=trigger_label,
        command=command,
        token=token,
        api_url=os.environ.get("GITHUB_API_URL"),
        repository=os.environ.get("GITHUB_REPOSITORY"),
        run_url=_run_url(),
        step_summary=Path(summary) if (summary := os.environ.get("GITHUB_STEP_SUMMARY")) else None,
    )
    # Actions cancels a job with SIGINT, then SIGTERM: both end the run the same way, with the issue told.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        code = handle_event(config)
    except EventError as exc:
        raise fail(str(exc), BAD_INPUT) from None
    except GitHubError as exc:
        raise fail(scrub(str(exc)), FAILED) from None
    raise typer.Exit(code)


def _run_url() -> str | None:
    server, repository, run = (os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    if server and repository and run:
        return f"{server.rstrip('/')}/{repository}/actions/runs/{run}"
    return None
