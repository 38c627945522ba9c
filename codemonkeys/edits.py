"""Search/replace edits (DESIGN.md "Edit format"): parse the model's blocks, apply them to the ORIGINAL
files with precise errors, and turn the result into a diff that `git apply` accepts.

A block is a file path line, then:

    <<<<<<< SEARCH
    old lines
    =======
    new lines
    >>>>>>> REPLACE

The divider must be exactly seven `=` so that reST underlines inside the text are not taken for it.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from pydantic import BaseModel, field_validator

from codemonkeys import syntax

_SEARCH = re.compile(r"^\s*<{5,9} ?SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={7}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9} ?REPLACE\s*$")
_FENCE_LINE = re.compile(r"^\s*```(\S*)\s*(.*?)\s*$")
_SHORTLIST = 20  # windows that difflib ranks when a block does not match


class EditFormatError(ValueError):
    """The edit text is not a well-formed list of search/replace blocks; the message says what is wrong and where."""


def path_problem(path: str) -> str | None:
    """Why `path` may not be edited (it must stay inside the repository), or None."""
    if not path:
        return "the file path is empty"
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", path):
        return f"the file path {path!r} is absolute; use a path relative to the repository root"
    if ".." in re.split(r"[\\/]", path):
        return f"the file path {path!r} contains '..'; use a path inside the repository"
    return None


class EditBlock(BaseModel):
    path: str
    search: str
    replace: str

    @field_validator("path")
    @classmethod
    def _inside_repository(cls, path: str) -> str:
        problem = path_problem(path)
        if problem:
            raise ValueError(problem)
        return path


class EditResult(BaseModel):
    """The new full text of every file the blocks touched, and every block that failed to apply."""

    files: dict[str, str]
    errors: list[str]


def _split_lines(text: str) -> list[str]:
    """Lines with their `\\n`; unlike str.splitlines, never splits on `\\r`, form feeds or other separators."""
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


# ---------------------------------------------------------------- parsing


def parse_edit_blocks(text: str) -> list[EditBlock]:
    """Every block in the text, in order; a block without its own path line belongs to the previous block's file."""
    lines = _split_lines(text.replace("\r\n", "\n"))
    blocks: list[EditBlock] = []
    previous_end = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        if _DIVIDER.match(line) or _REPLACE.match(line):
            raise EditFormatError(
                f"line {i + 1}: `{line.strip()}` appears outside a block; "
                "every block must start with the file path and a `<<<<<<< SEARCH` line"
            )
        if not _SEARCH.match(line):
            i += 1
            continue
        path = _path_before(lines, previous_end, i) or (blocks[-1].path if blocks else None)
        if path is None:
            raise EditFormatError(
                f"line {i + 1}: no file path before `<<<<<<< SEARCH`; put the file's path on the line above it"
            )
        start = i
        search, i = _section(lines, i + 1, _DIVIDER, "=======", path, start)
        replace, i = _section(lines, i + 1, _REPLACE, ">>>>>>> REPLACE", path, start)
        blocks.append(EditBlock(path=path, search=search, replace=replace))
        i += 1
        previous_end = i
    if not blocks:
        raise EditFormatError(
            "found no search/replace blocks; each block is the file path on its own line, then "
            "`<<<<<<< SEARCH`, the old lines, `=======`, the new lines and `>>>>>>> REPLACE`"
        )
    return blocks


def _section(lines: list[str], first: int, end: re.Pattern[str], marker: str, path: str, start: int) -> tuple[str, int]:
    """The text from `first` up to the `end` marker, and the marker's index."""
    for j in range(first, len(lines)):
        if end.match(lines[j]):
            return "".join(lines[first:j]), j
        for other, name in ((_SEARCH, "<<<<<<< SEARCH"), (_DIVIDER, "======="), (_REPLACE, ">>>>>>> REPLACE")):
            if other is not end and other.match(lines[j]):
                raise EditFormatError(
                    f"the block for {path} that starts at line {start + 1} has `{name}` at line {j + 1} "
                    f"where `{marker}` was expected first"
                )
    raise EditFormatError(
        f"the block for {path} that starts at line {start + 1} has no `{marker}` line before the end of the edit"
    )


def _path_before(lines: list[str], lower: int, search_line: int) -> str | None:
    """The path on the nearest meaningful line above a SEARCH marker, skipping blank and bare fence lines."""
    for j in range(search_line - 1, lower - 1, -1):
        candidate = lines[j].strip()
        fence = _FENCE_LINE.match(candidate)
        if fence:  # ```python path, ```path.py, or a bare fence to skip
            language, rest = fence.groups()
            candidate = rest or (language if re.search(r"[./]", language) else "")
        if not candidate:
            continue
        path = candidate.strip("`*: \t").removeprefix("./")
        if not path or any(ch.isspace() for ch in path):
            raise EditFormatError(
                f"line {j + 1}: expected the file path on the line before `<<<<<<< SEARCH` (line {search_line + 1}), "
                f"found {candidate!r}"
            )
        problem = path_problem(path)
        if problem:
            raise EditFormatError(f"line {j + 1}: {problem}")
        return path
    return None


# ---------------------------------------------------------------- applying


def apply_edits(blocks: list[EditBlock], read_original: Callable[[str], str | None]) -> EditResult:
    """Applies the blocks in order to the original files; a failed block is reported and skipped, never guessed."""
    read = cache(read_original)
    files: dict[str, str] = {}
    errors: list[str] = []
    for number, block in enumerate(blocks, start=1):
        path = _resolve_path(block.path, files, read)
        edited_before = path in files
        current = files[path] if edited_before else read(path)
        label = f"Edit block {number} ({path})"
        if current is None:
            if block.search.strip():
                errors.append(f"{label}: {path} does not exist. To create a new file, leave the SEARCH section empty.")
            else:
                files[path] = block.replace
            continue
        if not block.search.strip():
            if current.strip():
                errors.append(
                    f"{label}: the SEARCH section is empty but {path} already exists and is not empty, so it is "
                    "unclear where the new lines go. Copy the lines to replace into SEARCH."
                )
            else:
                files[path] = block.replace
            continue
        place = f"{path} (as changed by the earlier blocks for it)" if edited_before else path
        try:
            files[path] = _replace(current, block.search, block.replace, place)
        except _BlockError as exc:
            errors.append(f"{label}: {exc}")
    return EditResult(files=files, errors=errors)


def _resolve_path(path: str, files: dict[str, str], read_original: Callable[[str], str | None]) -> str:
    """Tolerates the `a/` or `b/` prefix of diff headers when only the path without it exists."""
    if path in files or path[:2] not in ("a/", "b/"):
        return path
    if read_original(path) is None and (path[2:] in files or read_original(path[2:]) is not None):
        return path[2:]
    return path


class _BlockError(Exception):
    """A block that does not apply; the message is written for the model."""


def _replace(text: str, search: str, replace: str, place: str) -> str:
    """The text with `search` replaced; raises when it matches nowhere or in several places of `place`."""
    crlf = "\r\n" in text and text.count("\r\n") == text.count("\n")
    if crlf:
        text = text.replace("\r\n", "\n")
    lines = _split_lines(text)
    search_lines = _split_lines(search)
    replace_lines = _split_lines(replace)
    for matcher in (_exact, _ignoring_trailing_space, _ignoring_indentation):
        matches = [m for i in range(len(lines) - len(search_lines) + 1) if (m := matcher(lines, i, search_lines))]
        if len(matches) > 1:
            starts = ", ".join(str(m.start + 1) for m in matches[:10])
            raise _BlockError(
                f"the SEARCH text matches {len(matches)} places in {place} (starting at lines {starts}). "
                "Add more surrounding lines to SEARCH so that it matches exactly one place."
            )
        if matches:
            match = matches[0]
            new = match.reindent(replace_lines)
            end = match.start + len(search_lines)
            if end == len(lines) and not lines[-1].endswith("\n") and new:
                new[-1] = new[-1].removesuffix("\n")
            updated = "".join(lines[: match.start] + new + lines[end:])
            return updated.replace("\n", "\r\n") if crlf else updated
    raise _BlockError(_no_match(lines, search_lines, place))


@dataclass(frozen=True)
class _Match:
    """Where SEARCH matched, and how its indentation differs from the file's there."""

    start: int
    search_indent: str = ""
    file_indent: str = ""

    def reindent(self, lines: list[str]) -> list[str]:
        """Shifts the replacement by the same indentation difference that SEARCH had from the file."""
        old, new = self.search_indent, self.file_indent
        if old == new:
            return list(lines)
        return [_shift(line, old, new) if line.strip() else line for line in lines]


def _shift(line: str, old: str, new: str) -> str:
    if new.endswith(old):  # the file is more indented: add what SEARCH lacked
        return new[: len(new) - len(old)] + line
    if old.endswith(new):  # the file is less indented: remove the excess, as far as the line has it
        indent = len(line) - len(line.lstrip(" \t"))
        return line[min(len(old) - len(new), indent) :]
    return new + line[len(old) :] if line.startswith(old) else line  # tabs against spaces


def _exact(lines: list[str], start: int, search: list[str]) -> _Match | None:
    window = lines[start : start + len(search)]
    if all(a.removesuffix("\n") == b.removesuffix("\n") for a, b in zip(window, search, strict=True)):
        return _Match(start)
    return None


def _ignoring_trailing_space(lines: list[str], start: int, search: list[str]) -> _Match | None:
    window = lines[start : start + len(search)]
    if all(a.rstrip() == b.rstrip() for a, b in zip(window, search, strict=True)):
        return _Match(start)
    return None


def _ignoring_indentation(lines: list[str], start: int, search: list[str]) -> _Match | None:
    """Matches when every non-blank line differs only by one common leading-whitespace change."""
    window = lines[start : start + len(search)]
    content = [s for s in search if s.strip()]
    if not content:
        return None
    search_indent = _common_indent(content)
    file_indent = None
    for line, wanted in zip(window, search, strict=True):
        if not wanted.strip():
            if line.strip():
                return None
            continue
        body = wanted.rstrip()[len(search_indent) :]
        have = line.rstrip()
        if not have.endswith(body):
            return None
        indent = have[: len(have) - len(body)]
        if indent.strip() or (file_indent is not None and indent != file_indent):
            return None
        file_indent = indent
    return _Match(start, search_indent, file_indent or "")


def _common_indent(lines: list[str]) -> str:
    indents = [line[: len(line) - len(line.lstrip(" \t"))] for line in lines]
    common = indents[0]
    for indent in indents[1:]:
        while not indent.startswith(common):
            common = common[:-1]
    return common


def _no_match(lines: list[str], search: list[str], place: str) -> str:
    """The error for a SEARCH that matches nowhere, quoting the most similar lines of the file."""
    message = f"the SEARCH text does not match any lines of {place}."
    if not lines:
        return message + " The file is empty."
    size = min(len(search), len(lines))
    best_start = _closest_window(lines, search, size)
    width = len(str(best_start + size))
    quoted = "".join(f"{str(n + 1).rjust(width)} | {lines[n].rstrip()}\n" for n in range(best_start, best_start + size))
    return (
        f"{message} The most similar lines are {best_start + 1}-{best_start + size}:\n{quoted}"
        "SEARCH must repeat the file's lines exactly (indentation, comments, blank lines included)."
    )


def _closest_window(lines: list[str], search: list[str], size: int) -> int:
    """Start of the `size`-line window most like SEARCH: word overlap shortlists windows, difflib ranks them.

    Ranking every window with difflib would take seconds on a large file.
    """
    words = [re.findall(r"\w+", line) for line in lines]
    wanted = Counter(word for line in search for word in re.findall(r"\w+", line))
    have: Counter[str] = Counter()
    overlap = 0
    scores = []
    for i, line_words in enumerate(words):
        for word in line_words:
            have[word] += 1
            overlap += have[word] <= wanted[word]
        if i >= size:
            for word in words[i - size]:
                overlap -= have[word] <= wanted[word]
                have[word] -= 1
        if i >= size - 1:
            scores.append((-overlap, i - size + 1))
    matcher = difflib.SequenceMatcher()
    matcher.set_seq2("".join(search))

    def similarity(start: int) -> float:
        matcher.set_seq1("".join(lines[start : start + size]))
        return matcher.ratio()

    return max((start for _, start in sorted(scores)[:_SHORTLIST]), key=lambda start: (similarity(start), -start))


def check_syntax_of(result: EditResult, read_original: Callable[[str], str | None]) -> list[str]:
    """Errors for files the edit made unparsable; a file whose original already fails is not the edit's fault."""
    errors = []
    for path, text in result.files.items():
        error = syntax.check(path, text)
        if error is None:
            continue
        original = read_original(path)
        if original is not None and syntax.check(path, original) is not None:
            continue
        errors.append(f"After the edit, {path} no longer parses: {error}")
    return errors


# ---------------------------------------------------------------- diffs


def make_diff(originals: dict[str, str | None], updated: dict[str, str]) -> str:
    """A git-style diff of every changed file (`None` original: a new file) that `git apply` accepts."""
    parts = []
    for path in sorted(updated):
        old, new = originals.get(path), updated[path]
        if old == new:
            continue
        header = [f"diff --git a/{path} b/{path}\n"]
        if old is None:
            header.append("new file mode 100644\n")
        hunks = list(
            difflib.unified_diff(
                _split_lines(old or ""),
                _split_lines(new),
                fromfile="/dev/null" if old is None else f"a/{path}",
                tofile=f"b/{path}",
            )
        )
        parts.append("".join(header + [_terminated(line) for line in hunks]))
    return "".join(parts)


def _terminated(line: str) -> str:
    return line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
