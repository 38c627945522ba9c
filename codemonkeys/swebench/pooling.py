"""The ensemble's pool: candidate patches of one instance from several systems, the same fix pooled once.

Systems write the same fix with different hunk headers (line numbers, section text), `index` lines, file order
and trailing whitespace; `diff_key` ignores all of that, so each fix gets one vote column and one place in
selection, and its provenance lists every system that proposed it."""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel

_NEW_PATH = re.compile(r"^\+\+\+ (?:b/)?(.+?)(?:\t.*)?$")
_OLD_PATH = re.compile(r"^--- (?:a/)?(.+?)(?:\t.*)?$")


class Provenance(BaseModel):
    """Where a pooled patch came from: a prediction file and its `model_name_or_path`, or a run directory and
    its candidate (`candidate-<id>`)."""

    origin: str
    name: str


class PooledPatch(BaseModel):
    """A distinct fix: the first-seen text of its group, the files it changes, and every source of it."""

    id: int
    patch: str
    paths: list[str] = []
    provenance: list[Provenance] = []


class Pool(BaseModel):
    """`pool.json`: the instance's distinct candidates (ids are their vote columns) and the sources whose patch
    was empty."""

    instance_id: str
    patches: list[PooledPatch] = []
    empty: list[Provenance] = []

    def sources(self, patch_id: int) -> list[Provenance]:
        return next(p.provenance for p in self.patches if p.id == patch_id)


def _file_sections(patch: str) -> list[list[str]]:
    """The diff cut into one list of lines per file (lines before the first file header form their own)."""
    lines = patch.splitlines()
    git = any(line.startswith("diff --git ") for line in lines)
    sections: list[list[str]] = [[]]
    for n, line in enumerate(lines):
        starts = (
            line.startswith("diff --git ")
            if git
            else line.startswith("--- ") and n + 1 < len(lines) and lines[n + 1].startswith("+++ ")
        )
        if starts:
            sections.append([])
        sections[-1].append(line)
    return [s for s in sections if s]


def diff_key(patch: str) -> str:
    """Equal for diffs that make the same change: hunk headers lose their numbers and section text, `index`
    lines and trailing whitespace go, and files are compared in sorted order."""
    keyed = []
    for section in _file_sections(patch):
        kept: list[str] = []
        in_hunks = False
        for line in section:
            line = line.rstrip()
            in_hunks = in_hunks or line.startswith("@@")
            if line.startswith("index ") and not in_hunks:
                continue
            kept.append("@@" if line.startswith("@@ ") else line)
        while kept and not kept[-1]:
            kept.pop()
        keyed.append("\n".join(kept))
    return "\n".join(sorted(keyed))


def patch_paths(patch: str) -> list[str]:
    """The files a diff changes (the new side; the old one for a deleted file), in order."""
    paths: list[str] = []
    for section in _file_sections(patch):
        new = next((m.group(1) for line in section if (m := _NEW_PATH.match(line))), None)
        old = next((m.group(1) for line in section if (m := _OLD_PATH.match(line))), None)
        path = old if new in (None, "/dev/null") else new
        if path and path != "/dev/null" and path not in paths:
            paths.append(path)
    return paths


def pool_patches(instance_id: str, sources: Iterable[tuple[Provenance, str]]) -> Pool:
    """One PooledPatch per distinct fix, in order of first appearance; empty patches are only listed."""
    pool = Pool(instance_id=instance_id)
    by_key: dict[str, PooledPatch] = {}
    for provenance, patch in sources:
        if not patch.strip():
            pool.empty.append(provenance)
            continue
        key = diff_key(patch)
        if key not in by_key:
            by_key[key] = PooledPatch(id=len(by_key), patch=patch, paths=patch_paths(patch))
            pool.patches.append(by_key[key])
        by_key[key].provenance.append(provenance)
    return pool
