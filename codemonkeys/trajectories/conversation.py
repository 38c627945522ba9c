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
from codemonkeys.window import fit

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
        self.shorter: dict[int, str] = {}

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
            window = self.model.window
            sent = self.messages if window is None else fit(self.messages, window, self.shorter.get)
            reply = await self.model.ask(sent)
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
                self._shorten(f"(turn {call}: an answer that could not be used)", "(the answer format, repeated)")
                continue
            invalid = 0
            self.turns.append(turn)
            if following is None:
                return
            self.messages.append(user(following))
            self._shorten(f"(turn {call}: my {describe(turn.kind)} answer)", _summary(turn))

    def _shorten(self, answer: str, feedback: str) -> None:
        """Short forms of the newest exchange (the model's answer and the message that followed it), sent in
        its place once the conversation outgrows the window."""
        self.shorter[len(self.messages) - 2] = f"{answer} [shortened to fit the context window]"
        self.shorter[len(self.messages) - 1] = f"{feedback} [shortened to fit the context window]"

    def _format_fix(self, problem: str, line: str, kinds: Collection[Kind]) -> str:
        choices = [f"{describe(k)} ({self.options[k]})" for k in kinds]
        options = choices[0] if len(choices) == 1 else ", ".join(choices[:-1]) + " or " + choices[-1]
        return render("format_fix", problem=problem, turn_line=line, options=options)


def _summary(turn: Turn) -> str:
    """What a feedback message said, down to its exit codes."""
    runs = [(name, run) for name, run in (("original code", turn.original), ("edited code", turn.edited)) if run]
    runs += [(f"candidate {i}", run) for i, run in enumerate(turn.candidates)]
    said = "; ".join(f"on the {name}: {run.outcome} (exit {run.exit_code})" for name, run in runs)
    problem = f"not accepted: {turn.error.splitlines()[0]}" if turn.error else ""
    return f"(turn {turn.call} feedback: " + ("; ".join(x for x in (problem, said) if x) or "nothing ran") + ")"
