"""The identifiers an issue names, and the lines of a large file that mention them: what relevance sees of a
file too large to show whole, besides its outline, so a mention deep inside a long function is not lost."""

from __future__ import annotations

import re

CONTEXT_LINES = 2

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_CODE_SPAN = re.compile(r"```.*?```|`[^`\n]+`", re.DOTALL)
_CALLED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")
_MIN_LENGTH = 3


def _looks_like_code(word: str) -> bool:
    """snake_case, dotted.paths, camelCase and PascalCase with an inner capital: not an English word."""
    return "_" in word.strip("_") or "." in word or bool(re.search(r"[a-z][A-Z]", word))


def issue_identifiers(issue: str) -> list[str]:
    """Names the issue uses as code: in backticks or code blocks, called with `(`, or shaped like identifiers;
    a dotted path also gives its last part (the name a file defines)."""
    spans = " ".join(m.group(0) for m in _CODE_SPAN.finditer(issue))
    found = [w for w in _WORD.findall(issue) if _looks_like_code(w)] + _CALLED.findall(issue)
    found += [w for w in _WORD.findall(spans) if len(w) >= _MIN_LENGTH and not w.isdigit()]
    names: list[str] = []
    for word in found:
        for name in (word, word.rsplit(".", 1)[-1]):
            if len(name) >= _MIN_LENGTH and name not in names:
                names.append(name)
    return names


def mention_regions(text: str, identifiers: list[str], max_chars: int) -> str:
    """The lines mentioning any of `identifiers` with a little context, numbered, in file order, within
    `max_chars`; "" when none mentions them or none fits."""
    if not identifiers or max_chars <= 0:
        return ""
    pattern = re.compile(r"(?<![\w.])(?:" + "|".join(map(re.escape, identifiers)) + r")(?!\w)")
    lines = text.splitlines()
    hits = [i for i, line in enumerate(lines) if pattern.search(line)]
    if not hits:
        return ""
    regions: list[tuple[int, int]] = []
    for i in hits:
        first, last = max(i - CONTEXT_LINES, 0), min(i + CONTEXT_LINES, len(lines) - 1)
        if regions and first <= regions[-1][1] + 1:
            regions[-1] = (regions[-1][0], last)
        else:
            regions.append((first, last))
    named = ", ".join(sorted({m.group(0) for i in hits for m in pattern.finditer(lines[i])}))
    header = f"Lines that mention {named} (from the issue):"
    parts = [header]
    used = len(header)
    shown = 0
    for first, last in regions:
        block = "\n".join(f"{n + 1:>6} | {lines[n]}" for n in range(first, last + 1)) + "\n   ..."
        if used + len(block) + 80 > max_chars:
            break
        parts.append(block)
        used += len(block) + 1
        shown += 1
    if shown == 0:
        return ""
    if shown < len(regions):
        parts.append(f"({len(regions) - shown} more regions mention them: not shown)")
    return "\n".join(parts)
