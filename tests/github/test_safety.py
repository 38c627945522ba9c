from __future__ import annotations

from codemonkeys.github.safety import ci_paths, may_trigger, patch_paths


def diff(old: str, new: str | None = None) -> str:
    new = new or old
    return f"diff --git a/{old} b/{new}\n--- a/{old}\n+++ b/{new}\n@@ -1 +1 @@\n-x\n+y\n"


def test_ci_configuration_is_found_in_any_diff_side() -> None:
    assert ci_paths(diff(".github/workflows/ci.yml")) == [".github/workflows/ci.yml"]
    assert ci_paths(diff("src/a.py") + diff(".gitlab-ci.yml")) == [".gitlab-ci.yml"]
    assert ci_paths(diff(".github/workflows/ci.yml", "ci.yml")) == [".github/workflows/ci.yml"]  # a rename out
    assert ci_paths(diff("tools/action.yml")) == ["tools/action.yml"]
    assert ci_paths(diff(".circleci/config.yml")) == [".circleci/config.yml"]


def test_code_and_docs_are_not_ci() -> None:
    assert ci_paths(diff("src/workflows.py") + diff("docs/github-actions.md") + diff(".github/ISSUE_TEMPLATE.md")) == []
    assert patch_paths(diff("a.py") + diff("b/c.py")) == ["a.py", "b/c.py"]


def test_only_write_maintain_admin_trigger() -> None:
    assert [r for r in ("admin", "maintain", "write", "triage", "read", "none") if may_trigger(r)] == [
        "admin",
        "maintain",
        "write",
    ]
