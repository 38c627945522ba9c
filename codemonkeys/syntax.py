"""Tree-sitter: catches edits that leave a file unparsable, and outlines files too large to show whole.

Grammars are optional wheels loaded on first use; a language whose grammar is not installed is
simply unsupported (no check, no outline) rather than an error.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import PurePosixPath
from typing import NamedTuple

from tree_sitter import Language, Node, Parser

# language -> (module, function returning the grammar)
_GRAMMARS = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
}

# `.h` is C or C++: a header counts as parsable when either grammar accepts it.
_EXTENSIONS = {
    ".py": ("python",),
    ".pyi": ("python",),
    ".js": ("javascript",),
    ".mjs": ("javascript",),
    ".cjs": ("javascript",),
    ".jsx": ("javascript",),
    ".ts": ("typescript",),
    ".mts": ("typescript",),
    ".cts": ("typescript",),
    ".tsx": ("tsx",),
    ".go": ("go",),
    ".rs": ("rust",),
    ".java": ("java",),
    ".c": ("c",),
    ".h": ("c", "cpp"),
    ".cc": ("cpp",),
    ".cpp": ("cpp",),
    ".cxx": ("cpp",),
    ".hh": ("cpp",),
    ".hpp": ("cpp",),
    ".hxx": ("cpp",),
}

_JS_DEFS = {
    "class_declaration",
    "abstract_class_declaration",
    "interface_declaration",
    "enum_declaration",
    "function_declaration",
    "generator_function_declaration",
    "method_definition",
}
_C_DEFS = {"function_definition", "struct_specifier", "union_specifier", "enum_specifier"}

# Node types that the outline lists, per language.
_DEFINITIONS = {
    "python": {"class_definition", "function_definition"},
    "javascript": _JS_DEFS,
    "typescript": _JS_DEFS,
    "tsx": _JS_DEFS,
    "go": {"function_declaration", "method_declaration", "type_declaration"},
    "rust": {
        "function_item",
        "function_signature_item",
        "struct_item",
        "enum_item",
        "trait_item",
        "impl_item",
        "mod_item",
    },
    "java": {
        "class_declaration",
        "interface_declaration",
        "enum_declaration",
        "record_declaration",
        "method_declaration",
        "constructor_declaration",
    },
    "c": _C_DEFS,
    "cpp": _C_DEFS | {"class_specifier", "namespace_definition"},
}

_SIGNATURE_LIMIT = 200
_FUNCTION_KINDS = ("function", "method", "constructor")


def _languages(path: str) -> list[str]:
    names = _EXTENSIONS.get(PurePosixPath(path).suffix.lower(), ())
    return [name for name in names if _parser(name) is not None]


def language_for(path: str) -> str | None:
    """The language whose installed grammar parses `path`, judged by its extension."""
    names = _languages(path)
    return names[0] if names else None


@cache
def _parser(language: str) -> Parser | None:
    module_name, function = _GRAMMARS[language]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return Parser(Language(getattr(module, function)()))


def _parse(language: str, text: str) -> Node:
    parser = _parser(language)
    assert parser is not None, language
    return parser.parse(text.encode("utf-8")).root_node


def check(path: str, text: str) -> str | None:
    """None when the file parses (or its language is unsupported), else where the first error is."""
    first_error = None
    for language in _languages(path):
        error = _first_error(_parse(language, text), text)
        if error is None:
            return None
        first_error = first_error or error
    return first_error


def _first_error(root: Node, text: str) -> str | None:
    """Walks only the subtrees that contain an error, in source order, to the first ERROR or MISSING node."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_missing:
            return _describe(node, text, f"missing `{node.type}`")
        if node.is_error:
            return _describe(node, text, "syntax error")
        stack.extend(child for child in reversed(node.children) if child.has_error or child.is_missing)
    return None


def _describe(node: Node, text: str, what: str) -> str:
    row, byte_col = node.start_point
    lines = text.split("\n")
    line = lines[row] if row < len(lines) else ""
    col = len(line.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore")) + 1
    return f"line {row + 1}, column {col}: {what}\n{row + 1} | {line.rstrip()}"


def outline(path: str, text: str) -> str | None:
    """Classes, functions and methods with their signatures and line ranges, nested by indentation."""
    language = language_for(path)
    if language is None:
        return None
    source = text.encode("utf-8")
    return "\n".join(
        f"{'    ' * depth}{_signature(node, source)}  (lines {node.start_point.row + 1}-{node.end_point.row + 1})"
        for node, depth in _definitions(language, text)
    )


class Definition(NamedTuple):
    """One line of a test outline; `parent` is the index of the definition it is nested in."""

    name: str
    line: str
    parent: int | None


def outline_of_tests(path: str, text: str) -> list[Definition] | None:
    """A test file's classes and functions (not those inside a function) in source order, one indented line each:
    the name and parameters (Python decorators by their last name, `@parametrize def test_x(a, b)`), no bodies,
    docstrings or line ranges; None without a grammar."""
    language = language_for(path)
    if language is None:
        return None
    source = text.encode("utf-8")
    found: list[Definition] = []
    parents: list[int | None] = []  # the enclosing definitions' indices, one per depth; None for a function
    for node, depth in _definitions(language, text):
        del parents[depth:]
        if None in parents:
            parents.append(None)
            continue
        name = node.child_by_field_name("name")
        signature = _python_signature(node, source) if language == "python" else _signature(node, source)
        found.append(
            Definition(
                name=_text(name, source) if name is not None else "",
                line="    " * depth + signature,
                parent=parents[-1] if parents else None,
            )
        )
        parents.append(None if any(kind in node.type for kind in _FUNCTION_KINDS) else len(found) - 1)
    return found


def _definitions(language: str, text: str) -> list[tuple[Node, int]]:
    """The outlined definitions in source order with their nesting depth."""
    definitions = _DEFINITIONS[language]
    found = []
    stack = [(_parse(language, text), 0)]
    while stack:
        node, depth = stack.pop()
        listed = node.type in definitions and _is_definition(node)
        if listed:
            found.append((node, depth))
        stack.extend((child, depth + listed) for child in reversed(node.children))
    return found


def _python_signature(node: Node, source: bytes) -> str:
    """`class Name(bases)` or `[async ]def name(parameters)`, after its decorators' last names."""
    decorators = []
    if node.parent is not None and node.parent.type == "decorated_definition":
        for decorator in node.parent.children:
            if decorator.type == "decorator":
                target = decorator.named_children[0] if decorator.named_children else decorator
                if target.type == "call":
                    target = target.child_by_field_name("function") or target
                decorators.append("@" + _text(target, source).rsplit(".", 1)[-1])
    name = node.child_by_field_name("name")
    if node.type == "class_definition":
        bases = node.child_by_field_name("superclasses")
        head = f"class {_text(name, source)}{_text(bases, source) if bases is not None else ''}"
    else:
        params = node.child_by_field_name("parameters")
        keyword = "async def" if node.children[0].type == "async" else "def"
        head = f"{keyword} {_text(name, source)}{_text(params, source) if params is not None else '()'}"
    signature = " ".join([*decorators, head])
    return signature[: _SIGNATURE_LIMIT - 3] + "..." if len(signature) > _SIGNATURE_LIMIT else signature


def _text(node: Node, source: bytes) -> str:
    return " ".join(source[node.start_byte : node.end_byte].decode("utf-8", errors="replace").split())


def definition_spans(path: str, text: str) -> list[tuple[int, int]]:
    """(first line, last line), 1-based, of every class, function and method; [] without a grammar."""
    language = language_for(path)
    if language is None:
        return []
    definitions = _DEFINITIONS[language]
    spans = []
    stack = [_parse(language, text)]
    while stack:
        node = stack.pop()
        if node.type in definitions and _is_definition(node):
            spans.append((node.start_point.row + 1, node.end_point.row + 1))
        stack.extend(node.children)
    return spans


def _is_definition(node: Node) -> bool:
    """C/C++ specifiers are also mere type uses (`struct point p;`); only those with a body define."""
    return not node.type.endswith("_specifier") or node.child_by_field_name("body") is not None


def _signature(node: Node, source: bytes) -> str:
    """The definition's text up to its body (or its first line), on one line."""
    body = node.child_by_field_name("body")
    end = body.start_byte if body is not None and body.start_byte > node.start_byte else node.end_byte
    head = source[node.start_byte : end].decode("utf-8", errors="replace")
    if body is None:
        head = head.split("\n", 1)[0]
    signature = " ".join(head.split()).rstrip("{:;").rstrip()
    if len(signature) > _SIGNATURE_LIMIT:
        signature = signature[: _SIGNATURE_LIMIT - 3] + "..."
    return signature
