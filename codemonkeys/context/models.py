"""What the context stage hands to the trajectories."""

from __future__ import annotations

from pydantic import BaseModel


class SkippedFile(BaseModel):
    path: str
    reason: str


class FileRelevance(BaseModel):
    """One relevance call's verdict; `relevant` is None when the answer could not be parsed twice."""

    path: str
    tokens: int
    relevant: bool | None
    summary: str = ""
    error: str | None = None


class ContextFile(BaseModel):
    """A ranked file packed into the prompt: whole, or as an outline when too large to show whole."""

    path: str
    text: str
    tokens: int
    outline: bool = False


class ContextResult(BaseModel):
    files: list[ContextFile]
    ranked: list[str]
    rankings: list[list[str]] = []
    relevance: list[FileRelevance] = []
    skipped: list[SkippedFile] = []

    @property
    def tokens(self) -> int:
        return sum(f.tokens for f in self.files)
