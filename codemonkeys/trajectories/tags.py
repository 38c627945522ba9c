"""Reads the one command a model reply carries: `<test>`, `<edit>`, `<done>` or `<chosen_candidate_fix_id>`.

Models think aloud before answering, revise drafts and mention tags in prose, so: the last occurrence of a
command wins, a tag quoted in backticks is a mention and not a command, a `<test>` body may be wrapped in a
code fence, and two different commands in one reply are a format error (the model is asked again).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Literal

from pydantic import BaseModel

from codemonkeys.answers import AnswerFormatError, fenced_blocks

Kind = Literal["test", "done", "edit", "choose"]

_TAG_OF: dict[Kind, str] = {
    "test": "test",
    "done": "done",
    "edit": "edit",
    "choose": "chosen_candidate_fix_id",
}
_KIND_OF = {tag: kind for kind, tag in _TAG_OF.items()}
_OPEN = re.compile(r"<(test|edit|done|chosen_candidate_fix_id)\s*(/?)>", re.IGNORECASE)
_DONE_CLOSE = re.compile(r"\s*</done\s*>", re.IGNORECASE)


class Answer(BaseModel):
    """A parsed command; `body` is the script, the edit blocks, or the chosen id's text ("" for done)."""

    kind: Kind
    body: str = ""


def describe(kind: Kind) -> str:
    tag = _TAG_OF[kind]
    return f"<{tag}>" if kind == "done" else f"<{tag}>…</{tag}>"


def parse_answer(text: str, allowed: Collection[Kind]) -> Answer:
    found: list[Answer] = []
    unclosed: list[Kind] = []
    pos = 0
    while (m := _OPEN.search(text, pos)) is not None:
        kind = _KIND_OF[m.group(1).lower()]
        pos = m.end()
        if _is_quoted(text, m.start(), m.end()):
            continue
        if kind == "done":
            if close := _DONE_CLOSE.match(text, pos):
                pos = close.end()
            found.append(Answer(kind="done"))
            continue
        if m.group(2):
            found.append(Answer(kind=kind))
            continue
        close = re.compile(rf"</{_TAG_OF[kind]}\s*>", re.IGNORECASE).search(text, pos)
        if close is None:
            unclosed.append(kind)
            break
        found.append(Answer(kind=kind, body=text[pos : close.start()]))
        pos = close.end()
    return _pick(found, unclosed, allowed)


def _pick(found: list[Answer], unclosed: list[Kind], allowed: Collection[Kind]) -> Answer:
    options = " or ".join(describe(k) for k in allowed)
    usable = [a for a in found if a.kind in allowed]
    for kind in unclosed:
        if kind in allowed:
            tag = _TAG_OF[kind]
            raise AnswerFormatError(f"your <{tag}> block has no closing </{tag}> tag (was the reply cut off?)")
    kinds = list(dict.fromkeys(a.kind for a in usable))
    if len(kinds) > 1:
        raise AnswerFormatError(
            f"your reply contains several commands ({', '.join(describe(k) for k in kinds)}); exactly one is allowed"
        )
    if not usable:
        stray = sorted({describe(a.kind) for a in found if a.kind not in allowed})
        if stray:
            raise AnswerFormatError(f"{', '.join(stray)} is not an answer this step accepts; answer with {options}")
        raise AnswerFormatError(f"your reply contains no command; it must contain {options}")
    answer = usable[-1]
    if answer.kind == "test":
        script = clean_script(answer.body)
        if not script.strip():
            raise AnswerFormatError("your <test> block is empty")
        return Answer(kind="test", body=script)
    if answer.kind == "edit":
        if not answer.body.strip():
            raise AnswerFormatError("your <edit> block is empty")
        return Answer(kind="edit", body=answer.body.strip("\n") + "\n")
    if answer.kind == "choose":
        value = answer.body.strip()
        if not re.fullmatch(r"\d+", value):
            raise AnswerFormatError(
                f"<chosen_candidate_fix_id> must hold only a candidate id number, not {value[:40]!r}"
            )
        return Answer(kind="choose", body=value)
    return answer


def clean_script(body: str) -> str:
    """Unwraps a code fence around (or inside, next to prose) a script; a script that compiles is kept as is."""
    text = body.strip("\n")
    stripped = text.strip()
    if stripped.startswith("```"):
        lines = stripped.splitlines()[1:]
        if lines and lines[-1].strip() == "```":
            lines = lines[:-1]
        return "\n".join(lines).rstrip() + "\n"
    blocks = fenced_blocks(text)
    if blocks and not _compiles(text):
        return max(blocks, key=len).rstrip() + "\n"
    return text.rstrip() + "\n"


def _compiles(source: str) -> bool:
    try:
        compile(source, "<test>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


def _is_quoted(text: str, start: int, end: int) -> bool:
    """`<done>` in backticks is the model talking about the tag, not using it."""
    return start > 0 and text[start - 1] == "`" and end < len(text) and text[end] == "`"
