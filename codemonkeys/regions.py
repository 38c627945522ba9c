"""What selection shows of a touched file too large to show whole: the regions the candidates change, each
widened to the smallest function or class around it (a few lines around it where there is none)."""

from __future__ import annotations

import re

from codemonkeys.syntax import definition_spans

CONTEXT_LINES = 10
MAX_DEFINITION_LINES = 200

_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@")


def hunk_lines(patch: str, path: str) -> list[tuple[int, int]]:
    """(first, last) lines of the ORIGINAL file that each hunk of `patch` for `path` changes, its context
    lines left out (an addition counts as the line it goes before)."""
    section = re.search(rf"^diff --git a/{re.escape(path)} b/.*?(?=^diff --git |\Z)", patch, re.MULTILINE | re.DOTALL)
    if section is None:
        return []
    spans = []
    for hunk in re.split(r"^(?=@@ )", section.group(0), flags=re.MULTILINE)[1:]:
        header = _HUNK.match(hunk)
        if header is None:
            continue
        line, changed, removed = int(header.group(1)), [], False
        for text in hunk.splitlines()[1:]:
            if text.startswith("+"):
                changed.append(line - 1 if removed else max(line, 1))
                continue
            removed = text.startswith("-")
            if removed:
                changed.append(line)
            elif text.startswith("\\"):
                continue
            line += 1
        if changed:
            spans.append((min(changed), max(changed)))
    return spans


def regions(path: str, text: str, patches: list[str]) -> list[tuple[int, int]]:
    """The merged line ranges to show: every hunk widened to its enclosing definition."""
    lines = text.count("\n") + 1
    definitions = [d for d in definition_spans(path, text) if d[1] - d[0] < MAX_DEFINITION_LINES]
    wanted = []
    for patch in patches:
        for first, last in hunk_lines(patch, path):
            around = [d for d in definitions if d[0] <= first and last <= d[1]]
            if around:
                wanted.append(min(around, key=lambda d: d[1] - d[0]))
            else:
                wanted.append((max(first - CONTEXT_LINES, 1), min(last + CONTEXT_LINES, lines)))
    merged: list[tuple[int, int]] = []
    for first, last in sorted(wanted):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def show_regions(text: str, spans: list[tuple[int, int]]) -> str:
    """The spans' lines, with a marker for every stretch left out."""
    lines = text.splitlines()
    out = []
    shown = 0
    for first, last in spans:
        if first > shown + 1:
            out.append(f"... [lines {shown + 1}-{first - 1} not shown] ...")
        out.extend(lines[first - 1 : last])
        shown = last
    if shown < len(lines):
        out.append(f"... [lines {shown + 1}-{len(lines)} not shown] ...")
    return "\n".join(out)
