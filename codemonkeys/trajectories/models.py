"""What the trajectories and the vote hand on and save (`testing/<i>.json`, `editing/<i>.json`, `votes.json`,
`selection.json`). Every result carries `error`: a trajectory that crashed still returns what it had."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from codemonkeys.sandbox.base import ExecResult

AnswerKind = Literal["test", "done", "edit", "choose", "invalid"]


class ScriptRun(BaseModel):
    """One test-script run, without its output (the conversation showed it; the record keeps the verdict)."""

    exit_code: int
    timed_out: bool = False
    seconds: float = 0.0

    @classmethod
    def of(cls, result: ExecResult) -> ScriptRun:
        return cls(exit_code=result.exit_code, timed_out=result.timed_out, seconds=round(result.seconds, 3))


class Turn(BaseModel):
    """One model call: what kind of answer it gave, what running it showed, and what went wrong."""

    call: int
    kind: AnswerKind
    error: str | None = None
    original: ScriptRun | None = None
    edited: ScriptRun | None = None
    candidates: list[ScriptRun] = []


class TestingResult(BaseModel):
    __test__ = False

    index: int
    script: str | None = None
    original: ScriptRun | None = None
    turns: list[Turn] = []
    error: str | None = None

    @property
    def calls(self) -> int:
        return len(self.turns)


class EditingResult(BaseModel):
    index: int
    patch: str | None = None
    script: str | None = None
    original: ScriptRun | None = None
    edited: ScriptRun | None = None
    turns: list[Turn] = []
    error: str | None = None

    @property
    def calls(self) -> int:
        return len(self.turns)


class Candidate(BaseModel):
    """A distinct patch; `sources[i]` is an editing trajectory that produced it and `scripts[i]` its final script."""

    id: int
    patch: str
    sources: list[int] = []
    scripts: list[str] = []


class VoteResult(BaseModel):
    """`matrix[s][c]`: exit code of `scripts[s]` on the candidate `candidate_ids[c]` (None: the run failed)."""

    scripts: list[str] = []
    candidate_ids: list[int] = []
    matrix: list[list[int | None]] = []
    empty_patch: list[int | None] = []
    suspicious: list[int] = []
    votes: dict[int, int] = {}
    top: list[int] = []
    error: str | None = None


class SelectionResult(BaseModel):
    """`chosen_id` is a position in the candidates given to the selection (0 = the top-voted one)."""

    chosen_id: int = 0
    fallback: bool = False
    turns: list[Turn] = []
    error: str | None = None
