"""The one turn loop every trajectory runs: ask → record → parse → on a format error send the format fix →
hand the command to the trajectory's handler. A trajectory supplies only its first messages and its handlers.

The loop owns the transcript, the turn budget and two rules peers have: a reply without a usable command gets
one short format-fix prompt (and counts as a turn), and after `max_invalid` unusable replies in a row the
conversation ends cleanly, leaving the trajectory with its best result so far.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping

from codemonkeys.answers import AnswerFormatError
from codemonkeys.llm import ChatModel, Message, Messages
from codemonkeys.prompts import render
from codemonkeys.trajectories.models import Turn
from codemonkeys.trajectories.tags import Answer, Kind, describe, parse_answer

log = logging.getLogger("codemonkeys.trajectories")

# A handler acts on one command and fills in `turn`; it returns the next user message, or None to end.
Handler = Callable[[Answer, Turn, str], Awaitable[str | None]]


def user(content: str) -> Message:
    return {"role": "user", "content": content}


def assistant(content: str) -> Message:
    return {"role": "assistant", "content": content}


def system(content: str) -> Message:
    return {"role": "system", "content": content}


def turn_line(turn: int, turns: int, last: str) -> str:
    """Tells the model how much of its budget is left, so it finishes in time."""
    if turn >= turns:
        return f"Turn {turn} of {turns}: this is your LAST turn; {last}."
    return f"Turn {turn} of {turns} ({turns - turn} more after this one)."


class Conversation:
    """`options` says, per command, what the model may send; `allowed` narrows them as the state changes
    (testing offers `<done>` only once a script exists)."""

    def __init__(
        self,
        model: ChatModel,
        turns: list[Turn],
        options: Mapping[Kind, str],
        max_turns: int,
        max_invalid: int,
        last_turn: str = "whatever you answer now is final",
    ) -> None:
        self.model, self.turns, self.options = model, turns, options
        self.max_turns, self.max_invalid, self.last_turn = max_turns, max_invalid, last_turn
        self.messages: Messages = []

    def line(self, turn: int) -> str:
        return turn_line(turn, self.max_turns, self.last_turn)

    async def run(
        self,
        opening: Messages,
        handlers: Mapping[Kind, Handler],
        allowed: Callable[[], Collection[Kind]] | None = None,
    ) -> None:
        self.messages = list(opening)
        invalid = 0
        for call in range(1, self.max_turns + 1):
            reply = await self.model.ask(self.messages)
            self.messages.append(assistant(reply))
            kinds = list(allowed() if allowed else handlers)
            line = self.line(call + 1)
            try:
                answer = parse_answer(reply, kinds)
                turn = Turn(call=call, kind=answer.kind)
                following = await handlers[answer.kind](answer, turn, line)
            except AnswerFormatError as exc:
                self.turns.append(Turn(call=call, kind="invalid", error=str(exc)))
                invalid += 1
                if invalid >= self.max_invalid:
                    log.info("trajectory ends: %d unusable answers in a row", invalid)
                    return
                self.messages.append(user(self._format_fix(str(exc), line, kinds)))
                continue
            invalid = 0
            self.turns.append(turn)
            if following is None:
                return
            self.messages.append(user(following))

    def _format_fix(self, problem: str, line: str, kinds: Collection[Kind]) -> str:
        choices = [f"{describe(k)} ({self.options[k]})" for k in kinds]
        options = choices[0] if len(choices) == 1 else ", ".join(choices[:-1]) + " or " + choices[-1]
        return render("format_fix", problem=problem, turn_line=line, options=options)
