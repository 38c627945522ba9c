"""What a repository file is, by its path: code a fix may need (screened whole), a test (screened from its
outline), or something a fix does not need (documentation, test data, licences, ...), with the reason.

File types come from `identify` (pre-commit's file identification: tags such as `python`, `markdown`,
`json`); the repository conventions on top (docs/, changelog fragments, tests' data, vendored packages) are
path rules. Only what is plainly not code is left out: an unknown extension stays screened.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from pathlib import PurePosixPath
from typing import Literal

from identify import identify
from pydantic import BaseModel

# `code`: screen what a fix can need; `all`: every text file whole (the original behaviour).
Screen = Literal["code", "all"]


class Kind(BaseModel):
    """A screened file is `test` (shown to relevance as its outline) or not; `skip` says why it is not screened."""

    test: bool = False
    skip: str | None = None


# Tags that say what a file holds without saying it is code: data, markup, prose.
_NOT_CODE_TAGS = frozenset(
    {
        "text",
        "binary",
        "executable",
        "non-executable",
        "plain-text",
        "markdown",
        "rst",
        "asciidoc",
        "json",
        "json5",
        "jsonld",
        "yaml",
        "xml",
        "toml",
        "ini",
        "csv",
        "tsv",
        "html",
        "svg",
        "image",
        "jupyter",
        "pem",
        "pofile",
        "diff",
        "tex",
        "bib",
    }
)
_PROSE_TAGS = frozenset({"markdown", "rst", "asciidoc"})
_DOC_DIRS = frozenset({"doc", "docs", "documentation", "man", "manual"})
_CHANGELOG_DIRS = frozenset({"changelog.d", "changes", "newsfragments", "news", ".changes", "changelog", "whatsnew"})
_CHANGELOG_NAMES = re.compile(r"^(changelog|changes|history|news|release[-_ ]?notes|whatsnew)\b", re.IGNORECASE)
_LICENCE_NAMES = re.compile(r"^(licen[cs]e|copying|notice|copyright|unlicense)\b", re.IGNORECASE)
_PROSE_NAMES = re.compile(
    r"^(readme|authors|contributors|contributing|code[-_]of[-_]conduct|security|support|maintainers|thanks|todo)\b",
    re.IGNORECASE,
)
_TEST_DIRS = re.compile(r"^(tests?|testing|__tests__|specs?|testsuite|test[-_]\w+|\w+[-_]tests?)$", re.IGNORECASE)
_TEST_NAMES = re.compile(
    r"^(test_.+\.py|.+_tests?\.(py|go|rb|exs?)|conftest\.py|.+\.(test|spec)\.[cm]?[jt]sx?|.+(Test|Tests|Spec)\.\w+)$"
)
_TRANSLATION_SUFFIXES = frozenset({".po", ".pot", ".mo"})
_KEY_SUFFIXES = frozenset({".pem", ".crt", ".cer", ".der", ".key", ".p12", ".pfx", ".jks"})
# Third-party code copied into a package: inside a package these folder names hold someone else's library.
_VENDORED_IN_PACKAGE = frozenset({"packages", "extern", "externals"})
_VENDORED_WEB_LIBRARY = re.compile(
    r"^(jquery|underscore|backbone|lodash|bootstrap|popper|d3|require|mathjax|katex|highlight|prism|moment|"
    r"modernizr|doctools-min)([-._].*)?\.(js|css)$|^[a-z][\w.]*?-v?\d+(\.\d+)+(\.min)?\.(js|css)$",
    re.IGNORECASE,
)
_TEMPLATE_DIRS = frozenset({"templates", "prompts", "_templates"})


@cache
def tags(path: str) -> frozenset[str]:
    """identify's tags for the file name (extension and well-known names); empty when unknown."""
    return frozenset(identify.tags_from_filename(PurePosixPath(path).name))


def is_code(path: str) -> bool:
    """A programming or build language by identify's tags (python, c, makefile, cmake, shell, ...)."""
    return bool(tags(path) - _NOT_CODE_TAGS)


def package_dirs(paths: Iterable[str]) -> frozenset[str]:
    """The folders that are Python packages (hold an `__init__.py`): a `packages/` folder inside one is vendored."""
    return frozenset(str(PurePosixPath(p).parent) for p in paths if PurePosixPath(p).name == "__init__.py")


def classify(path: str, packages: frozenset[str] = frozenset()) -> Kind:
    """What `path` is for screening under the `code` screen; `packages` from `package_dirs` of the whole tree."""
    p = PurePosixPath(path)
    name = p.name
    dirs = [d.lower() for d in p.parts[:-1]]
    file_tags = tags(path)
    code = is_code(path)
    if _LICENCE_NAMES.match(name) or "licenses" in dirs or "licences" in dirs:
        return Kind(skip="licence")
    if "pem" in file_tags or p.suffix.lower() in _KEY_SUFFIXES:
        return Kind(skip=f"certificate or key ({p.suffix.lower() or name})")
    if p.suffix.lower() in _TRANSLATION_SUFFIXES or "lc_messages" in dirs:
        return Kind(skip="translation catalogue")
    if "jupyter" in file_tags:
        return Kind(skip="notebook")
    for i, folder in enumerate(p.parts[:-1]):
        if folder.lower() in _VENDORED_IN_PACKAGE and "/".join(p.parts[:i]) in packages:
            return Kind(skip=f"vendored ({'/'.join(p.parts[: i + 1])}/)")
    if _VENDORED_WEB_LIBRARY.match(name):
        return Kind(skip="vendored (web library)")
    if any(d.endswith(".egg-info") for d in dirs) or name == "PKG-INFO":
        return Kind(skip="generated (packaging metadata)")
    fragment = any(d in _CHANGELOG_DIRS for d in dirs) and str(p.parent) not in packages  # towncrier's any suffix
    if fragment or (not code and _CHANGELOG_NAMES.match(name)):
        return Kind(skip="changelog")
    if not code and any(d in _DOC_DIRS for d in dirs):
        return Kind(skip="documentation")
    in_tests = any(_TEST_DIRS.match(d) for d in dirs)
    if in_tests and not code:
        return Kind(skip="test data")
    if in_tests or (code and _TEST_NAMES.match(name)):
        return Kind(test=True)
    if _is_prose(p, file_tags, dirs, packages):
        return Kind(skip="documentation")
    return Kind()


def _is_prose(p: PurePosixPath, file_tags: frozenset[str], dirs: list[str], packages: frozenset[str]) -> bool:
    """Markdown, reStructuredText and README-like text, unless it sits where code reads it (a package's data,
    templates or prompts)."""
    if _PROSE_NAMES.match(p.name) and not file_tags - {"text", "plain-text"} - _PROSE_TAGS:
        return True
    prose = bool(file_tags & _PROSE_TAGS) or (file_tags == {"text", "plain-text"} and p.suffix.lower() == ".txt")
    if not prose or p.name.lower().startswith(("requirements", "constraints")):
        return False
    return str(p.parent) not in packages and not _TEMPLATE_DIRS & set(dirs)
