"""SWE-bench-shaped instances built from the toy repository: a `--repos` directory holding it as
`acme+calc`, records in the dataset's format, and a spec file for the repo (a pinned PyPI dependency and a
pytest command) — the official specs do not know this repository."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.e2e.toy_repo import HIDDEN_TEST, ISSUE, OWN_TESTS, make_toy_repo

REPO = "acme/calc"
VERSION = "0.1"
SPEC = {
    "python": "3.11",
    "pip_packages": ["pytest==8.3.3", "iniconfig==2.0.0"],
    "install": "",
    "test_cmd": "pytest -rA",
    "log_parser": "parse_log_pytest",
}
FAIL_TO_PASS = ["tests/test_stats.py::test_median_even"]
PASS_TO_PASS = ["tests/test_stats.py::test_mean", "tests/test_stats.py::test_median_odd"]


def _diff(repo: Path, path: str, old: str, new: str) -> str:
    """A real `git diff` of one edit, made in a throwaway worktree of `repo`."""
    tree = repo.parent / "diff-tree"
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(tree)], cwd=repo, check=True)
    try:
        target = tree / path
        text = target.read_text() if target.exists() else ""
        assert old in text, (path, old)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text.replace(old, new, 1) if old else new)
        subprocess.run(["git", "add", "-A"], cwd=tree, check=True)
        return subprocess.run(["git", "diff", "--cached"], cwd=tree, check=True, capture_output=True, text=True).stdout
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=repo, check=True)


def make_benchmark(root: Path, ids: list[str]) -> tuple[Path, Path, Path, dict[str, str]]:
    """(repos_dir, dataset.jsonl, specs.json, patches) where patches holds the gold, a wrong one that breaks a
    PASS_TO_PASS test, one that does not touch the bug, and the scripted model's wrong fix (`wrong`: right for
    even lists only)."""
    repos = root / "repos"
    repos.mkdir(parents=True)
    repo = make_toy_repo(repos)
    repo = repo.rename(repos / "acme+calc")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True).stdout
    buggy = "    return ordered[len(ordered) // 2]\n"
    patches = {
        "gold": _diff(
            repo,
            "calc/stats.py",
            buggy,
            "    mid = len(ordered) // 2\n    if len(ordered) % 2:\n        return ordered[mid]\n"
            "    return (ordered[mid - 1] + ordered[mid]) / 2\n",
        ),
        "breaks_mean": _diff(
            repo,
            "calc/stats.py",
            "    return sum(values) / len(values)\n"
            + "\n\ndef median(values):\n    ordered = sorted(values)\n"
            + buggy,
            "    return sum(values) // len(values) + 1\n\n\ndef median(values):\n    ordered = sorted(values)\n"
            "    mid = len(ordered) // 2\n    if len(ordered) % 2:\n        return ordered[mid]\n"
            "    return (ordered[mid - 1] + ordered[mid]) / 2\n",
        ),
        "unrelated": _diff(repo, "calc/fmt.py", "digits=1", "digits=2"),
        "wrong": _diff(repo, "calc/stats.py", buggy, "    return ordered[len(ordered) // 2] - 0.5\n"),
    }
    test_patch = _diff(repo, "tests/test_stats.py", OWN_TESTS, OWN_TESTS + "\n\n" + HIDDEN_TEST.split("\n\n", 1)[1])
    records = [
        {
            "instance_id": iid,
            "repo": REPO,
            "base_commit": commit.strip(),
            "problem_statement": ISSUE,
            "version": VERSION,
            "patch": patches["gold"],
            "test_patch": test_patch,
            "FAIL_TO_PASS": json.dumps(FAIL_TO_PASS),
            "PASS_TO_PASS": json.dumps(PASS_TO_PASS),
            "environment_setup_commit": commit.strip(),
            "hints_text": "",
            "created_at": "2024-01-01T00:00:00Z",
        }
        for iid in ids
    ]
    dataset = root / "dataset.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in records))
    specs = root / "specs.json"
    specs.write_text(json.dumps({REPO: {VERSION: SPEC}}))
    return repos, dataset, specs, patches


def write_predictions(path: Path, patches: dict[str, str], model: str = "test") -> Path:
    path.write_text(
        "".join(
            json.dumps({"instance_id": iid, "model_name_or_path": model, "model_patch": patch}) + "\n"
            for iid, patch in patches.items()
        )
    )
    return path
