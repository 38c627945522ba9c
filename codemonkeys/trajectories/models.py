"""What the trajectories and the vote hand on and save (`testing/<i>.json`, `editing/<i>.json`, `votes.json`,
`selection.json`). Every result carries `error`: a trajectory that crashed still returns what it had."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from codemonkeys.sandbox.base import ExecResult, Outcome

AnswerKind = Literal["test", "done", "edit", "choose", "invalid"]


OUTPUT_KEPT = 4_000  # characters of a script run's output kept for the report: the end, where verdicts are


class ScriptRun(BaseModel):
    """One test-script run: its verdict, and for a reviewer the last `OUTPUT_KEPT` characters of its output
    (the model saw all of it; older records have none)."""

    exit_code: int
    timed_out: bool = False
    seconds: float = 0.0
    output: str = ""

    @classmethod
    def of(cls, result: ExecResult) -> ScriptRun:
        return cls(
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            seconds=round(result.seconds, 3),
            output=result.output[-OUTPUT_KEPT:],
        )

    @property
    def clipped(self) -> bool:
        """Whether `output` is only the end of what the run printed (an exactly full record may be whole)."""
        return len(self.output) >= OUTPUT_KEPT

    @property
    def outcome(self) -> Outcome:
        return ExecResult(exit_code=self.exit_code, output="", timed_out=self.timed_out).outcome


class Turn(BaseModel):
    """One model call: what kind of answer it gave, what running it showed, and what went wrong."""

    call: int
    kind: AnswerKind
    error: str | None = None
    original: ScriptRun | None = None
    edited: ScriptRun | None = None
    candidates: list[ScriptRun] = []


class TrajectoryResult(BaseModel):
    """What both generation trajectories keep: their final script, its run on the original code, their turns."""

    index: int
    script: str | None = None
    original: ScriptRun | None = None
    turns: list[Turn] = []
    error: str | None = None

    @property
    def calls(self) -> int:
        return len(self.turns)


class TestingResult(TrajectoryResult):
    __test__ = False


class EditingResult(TrajectoryResult):
    """The last edit set that applied (`patch`, the files it `touched`) and its script's run on it."""

    patch: str | None = None
    edited: ScriptRun | None = None
    touched: list[str] = []


class Candidate(BaseModel):
    """A distinct patch; `sources[i]` is an editing trajectory that produced it and `scripts[i]` its final script;
    `paths` are the files it changes, as the editing trajectories applied them."""

    id: int
    patch: str
    paths: list[str] = []
    sources: list[int] = []
    scripts: list[str] = []


class VoteResult(BaseModel):
    """`matrix[s][c]`: what `scripts[s]` says of the candidate `candidate_ids[c]` (None: the sandbox broke)."""

    scripts: list[str] = []
    candidate_ids: list[int] = []
    matrix: list[list[Outcome | None]] = []
    empty_patch: list[Outcome | None] = []
    suspicious: list[int] = []
    votes: dict[int, int] = {}
    top: list[int] = []
    error: str | None = None


class SelectionResult(BaseModel):
    """`chosen_candidate` is the Candidate.id chosen; a fallback chose the top-voted candidate."""

    chosen_candidate: int
    fallback: bool = False
    turns: list[Turn] = []
    error: str | None = None
