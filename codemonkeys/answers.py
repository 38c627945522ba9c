"""What every stage needs to read a model's answer: the one error a malformed answer raises (its message is
written for the model to read, and goes back to it), and the one way fenced code blocks are found."""

from __future__ import annotations

import re

_FENCED_BLOCK = re.compile(r"^[ \t]*```[^\n`]*\n(.*?)^[ \t]*```[ \t]*$", re.MULTILINE | re.DOTALL)


class AnswerFormatError(ValueError):
    """The answer holds no usable result in the required format; the message says what was wrong."""


def fenced_blocks(text: str) -> list[str]:
    """The bodies of the ``` blocks of `text`, in order; a fence counts only at the start of a line."""
    return _FENCED_BLOCK.findall(text)
