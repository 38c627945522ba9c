"""Markdown for text that came from an issue, a repository or a model: it must render as text, never as markup
that breaks out of its block, pings people or runs HTML."""

from __future__ import annotations

import html
import re

# GitHub comments and pull request bodies are capped at 65,536 characters.
BODY_LIMIT = 65_000
_NO_PING = "@\u200b"  # a zero-width space after @ keeps GitHub from notifying the named user
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~])")


def text(value: str) -> str:
    """Inline text: markup characters escaped, HTML inert, @mentions and #references not linked."""
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    value = _SPECIAL.sub(r"\\\1", value)
    return value.replace("@", _NO_PING).replace("\n", " ")


def code(value: str) -> str:
    """An inline code span that no backtick inside can close early."""
    fence = "`" * (_longest_run(value, "`") + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def block(value: str, language: str = "") -> str:
    """A fenced block whose fence is longer than any backtick or tilde run in the text."""
    fence = "`" * max(3, _longest_run(value, "`") + 1)
    return f"{fence}{language}\n{value.rstrip(chr(10))}\n{fence}"


def details(summary: str, body: str) -> str:
    """A collapsed section; `summary` is HTML (Markdown is not read there), `body` is Markdown already made safe
    by the caller."""
    safe = html.escape(summary).replace("@", _NO_PING)
    return f"<details><summary>{safe}</summary>\n\n{body}\n\n</details>"


def clip(value: str, limit: int) -> str:
    """At most `limit` characters, cut at a line end, saying how much was left out."""
    if len(value) <= limit:
        return value
    cut = value.rfind("\n", 0, limit)
    cut = cut if cut > 0 else limit
    return value[:cut] + f"\n… ({len(value) - cut:,} more characters)\n"


def _longest_run(value: str, char: str) -> int:
    runs = re.findall(f"{re.escape(char)}+", value)
    return max((len(r) for r in runs), default=0)
