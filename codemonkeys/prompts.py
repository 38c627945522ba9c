"""Loads prompt templates from `prompts/`: files with `{{ name }}` placeholders, filled strictly."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

_PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def prompts_dir() -> Path:
    """The repo's `prompts/` in a checkout, or the copy packed into the wheel."""
    for candidate in (
        Path(__file__).resolve().parent.parent / "prompts",
        Path(__file__).resolve().parent / "_prompts",
    ):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("prompts/ directory not found next to the codemonkeys package")


@cache
def template(name: str) -> str:
    return (prompts_dir() / f"{name}.md").read_text(encoding="utf-8")


def render(name: str, **values: object) -> str:
    """Fills every placeholder; a missing value is a programming error, so it raises."""
    text = template(name)
    missing = {m.group(1) for m in _PLACEHOLDER.finditer(text)} - values.keys()
    if missing:
        raise KeyError(f"prompt {name!r} needs values for: {', '.join(sorted(missing))}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)
