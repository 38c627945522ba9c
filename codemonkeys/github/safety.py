"""The bot's rules about who may start it and what it may push."""

from __future__ import annotations

import re

# Roles that may spend the team's budget and push branches (GitHub's role names).
TRIGGER_ROLES = ("admin", "maintain", "write")
# Files that configure CI or what runs with the repository's secrets: a patch touching one is never pushed.
_CI_PATTERNS = (
    r"\.github/(workflows|actions)/.*",
    r"\.github/dependabot\.ya?ml",
    r"(.*/)?action\.ya?ml",
    r"\.gitlab-ci\.ya?ml",
    r"\.gitlab/.*",
    r"\.circleci/.*",
    r"\.travis\.ya?ml",
    r"azure-pipelines\.ya?ml",
    r"\.azure-pipelines/.*",
    r"appveyor\.ya?ml",
    r"\.appveyor\.ya?ml",
    r"Jenkinsfile",
    r"\.buildkite/.*",
    r"\.drone\.ya?ml",
    r"\.woodpecker(\.ya?ml|/.*)",
    r"bitbucket-pipelines\.yml",
    r"\.pre-commit-config\.ya?ml",
)
_CI = re.compile("|".join(f"(?:{p})" for p in _CI_PATTERNS))
_DIFF_PATH = re.compile(r"^(?:diff --git a/(.+?) b/(.+?)|(?:---|\+\+\+) [ab]/(.+?))\s*$", re.M)


def may_trigger(role: str) -> bool:
    return role in TRIGGER_ROLES


def patch_paths(patch: str) -> list[str]:
    """Every path a unified diff names, old and new sides (a rename out of CI configuration counts too)."""
    found = set()
    for match in _DIFF_PATH.finditer(patch):
        found.update(p for p in match.groups() if p)
    return sorted(found)


def ci_paths(patch: str) -> list[str]:
    return [p for p in patch_paths(patch) if _CI.fullmatch(p)]
