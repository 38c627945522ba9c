"""What the context stage hands to the trajectories."""

from __future__ import annotations

from pydantic import BaseModel

from codemonkeys.repo_files import SkippedFile


class FileRelevance(BaseModel):
    """One relevance call's verdict; `relevant` is None when the answer could not be parsed twice
    or the call failed (`call_failed`: asked again on resume, unlike an unparsable answer, which was paid for)."""

    path: str
    tokens: int
    relevant: bool | None
    summary: str = ""
    error: str | None = None
    call_failed: bool = False


class ContextFile(BaseModel):
    """A ranked file packed into the prompt: whole, or (`outline`) condensed when too large to show whole:
    its tree-sitter outline, or its head and tail when no grammar outlines it."""

    path: str
    text: str
    tokens: int
    outline: bool = False


class ContextResult(BaseModel):
    """`ranked` is the averaged order, `files` what of it fit the budget; `notes` say what fell back and why."""

    files: list[ContextFile]
    ranked: list[str]
    rankings: list[list[str]] = []
    relevance: list[FileRelevance] = []
    skipped: list[SkippedFile] = []
    notes: list[str] = []

    @property
    def tokens(self) -> int:
        return sum(f.tokens for f in self.files)
