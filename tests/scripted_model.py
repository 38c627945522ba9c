"""An in-process model for trajectory unit tests: no HTTP and no litellm, only what a conversation asks of a
model (`ask`). The e2e tests keep the real HTTP path through the fake server."""

from __future__ import annotations

import copy
from collections.abc import Callable

from codemonkeys.llm import Messages
from codemonkeys.window import Window


class ScriptedModel:
    """`respond(messages)` writes each answer (or raises, like a stopped run); every call's messages are kept."""

    def __init__(self, respond: Callable[[Messages], str], window: Window | None = None) -> None:
        self.respond = respond
        self.window = window
        self.calls: list[Messages] = []

    async def ask(self, messages: Messages) -> str:
        self.calls.append(copy.deepcopy(messages))
        return self.respond(messages)

    def last_user(self, call: int) -> str:
        """The newest user message of the `call`-th call (0-based)."""
        return next(m["content"] for m in reversed(self.calls[call]) if m["role"] == "user")


def scripted(*answers: str) -> ScriptedModel:
    """The k-th answer of a conversation is answers[k] (the last one repeats)."""

    def respond(messages: Messages) -> str:
        turn = sum(1 for m in messages if m["role"] == "assistant")
        return answers[min(turn, len(answers) - 1)]

    return ScriptedModel(respond)


def raising(exc: BaseException) -> ScriptedModel:
    def respond(messages: Messages) -> str:
        raise exc

    return ScriptedModel(respond)
