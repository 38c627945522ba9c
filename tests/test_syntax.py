import importlib.util
import inspect
import textwrap

import pytest

from codemonkeys import syntax

MODULE = '''\
import os


class Store(Base):
    """Keeps things."""

    limit = 3

    @property
    def size(self) -> int:
        return 1

    async def put(self, key: str,
                  value: bytes = b"") -> None:
        def check():
            return True
        check()


def helper(*args, **kwargs):
    return args
'''


def test_language_for_known_and_unknown_extensions():
    assert syntax.language_for("pkg/mod.py") == "python"
    assert syntax.language_for("pkg/stub.PYI") == "python"
    assert syntax.language_for("README.md") is None
    assert syntax.language_for("Makefile") is None


def test_check_accepts_valid_python_and_ignores_unsupported_files():
    assert syntax.check("m.py", MODULE) is None
    assert syntax.check("notes.txt", "def f(:\n") is None


def test_check_points_at_the_first_error_with_line_column_and_source():
    text = 'def f():\n    s = "é" + )\n    return s\n'
    message = syntax.check("m.py", text)
    assert message is not None
    assert message.startswith("line 2, column 15: syntax error")  # columns count characters, not UTF-8 bytes
    assert '2 |     s = "é" + )' in message


def test_check_reports_a_missing_token():
    message = syntax.check("m.py", "def f(:\n    pass\n")
    assert message is not None
    assert message.startswith("line 1, column 7: missing `)`")


def test_outline_lists_classes_and_functions_nested_with_signatures_and_lines():
    assert syntax.outline("store.py", MODULE) == "\n".join(
        [
            "class Store(Base)  (lines 4-17)",
            "    def size(self) -> int  (lines 10-11)",
            '    async def put(self, key: str, value: bytes = b"") -> None  (lines 13-17)',
            "        def check()  (lines 15-16)",
            "def helper(*args, **kwargs)  (lines 20-21)",
        ]
    )


TEST_MODULE = '''\
import pytest


class TestStore(Base):
    """Docstring."""

    @pytest.mark.parametrize("key", ["a", "b"])
    @override_settings(DEBUG=True)
    def test_put(self, key,
                 value=None) -> None:
        def check():
            class Local:
                pass
        check()

    async def test_get(self):
        pass


@skip
def test_helper(*args):
    return args
'''


def test_outline_of_tests_is_one_line_per_test_and_class_with_short_decorators_and_no_lines_or_bodies():
    definitions = syntax.outline_of_tests("tests/test_store.py", TEST_MODULE)
    assert definitions is not None
    assert [d.line for d in definitions] == [
        "class TestStore(Base)",
        "    @parametrize @override_settings def test_put(self, key, value=None)",
        "    async def test_get(self)",
        "@skip def test_helper(*args)",
    ]
    assert [(d.name, d.parent) for d in definitions] == [
        ("TestStore", None),
        ("test_put", 0),
        ("test_get", 0),
        ("test_helper", None),
    ]
    assert syntax.outline_of_tests("tests/data.csv", "a,b\n") is None


def test_outline_of_tests_in_another_language_uses_its_signatures():
    definitions = syntax.outline_of_tests(
        "widget_test.go", "package w\n\nfunc TestWidget(t *testing.T) {\n\tt.Fail()\n}\n"
    )
    assert definitions == [syntax.Definition(name="TestWidget", line="func TestWidget(t *testing.T)", parent=None)]


def test_outline_of_a_real_stdlib_module_has_the_true_line_numbers():
    text = inspect.getsource(textwrap)
    outline = syntax.outline("textwrap.py", text)
    assert outline is not None
    lines = outline.splitlines()
    start = inspect.getsourcelines(textwrap.TextWrapper)[1]
    assert any(line.startswith(f"class TextWrapper  (lines {start}-") for line in lines)
    wrap_line = inspect.getsourcelines(textwrap.TextWrapper.wrap)[1]
    assert any(line.startswith(f"    def wrap(self, text)  (lines {wrap_line}-") for line in lines)
    dedent_line = inspect.getsourcelines(textwrap.dedent)[1]
    assert any(line.startswith(f"def dedent(text)  (lines {dedent_line}-") for line in lines)


def test_outline_survives_syntax_trees_deeper_than_the_recursion_limit():
    text = "x = " + " + ".join(["1"] * 5000) + "\n\ndef after():\n    pass\n"
    assert syntax.outline("deep.py", text) == "def after()  (lines 3-4)"
    assert syntax.check("deep.py", text) is None


def test_outline_is_none_for_unsupported_files():
    assert syntax.outline("data.csv", "a,b\n") is None


def test_a_missing_grammar_package_means_unsupported(monkeypatch):
    monkeypatch.setitem(syntax._GRAMMARS, "python", ("tree_sitter_no_such_grammar", "language"))
    syntax._parser.cache_clear()
    try:
        assert syntax.language_for("m.py") is None
        assert syntax.check("m.py", "def f(:\n") is None
        assert syntax.outline("m.py", MODULE) is None
    finally:
        monkeypatch.undo()
        syntax._parser.cache_clear()
    assert syntax.language_for("m.py") == "python"


OTHER_LANGUAGES = [
    (
        "tree_sitter_javascript",
        "app.js",
        "class A extends B {\n  constructor(x) { this.x = x; }\n  run() { return 1; }\n}\nfunction f(a, b) {\n  return a + b;\n}\n",
        [
            "class A extends B  (lines 1-4)",
            "    constructor(x)  (lines 2-2)",
            "    run()  (lines 3-3)",
            "function f(a, b)  (lines 5-7)",
        ],
        "function f( {\n  return 1;\n}\n",
        1,
    ),
    (
        "tree_sitter_typescript",
        "app.ts",
        "interface I { a: number }\nexport class C implements I {\n  a = 1;\n  get<T>(x: T): T { return x; }\n}\n",
        ["interface I  (lines 1-1)", "class C implements I  (lines 2-5)", "    get<T>(x: T): T  (lines 4-4)"],
        "let x: number = ;\n",
        1,
    ),
    (
        "tree_sitter_go",
        "main.go",
        "package main\n\ntype Point struct {\n\tX int\n}\n\nfunc (p *Point) Move(dx int) error {\n\treturn nil\n}\n",
        ["type Point struct  (lines 3-5)", "func (p *Point) Move(dx int) error  (lines 7-9)"],
        "package main\n\nfunc main() {\n\tx := \n}\n",
        4,
    ),
    (
        "tree_sitter_rust",
        "lib.rs",
        "struct P { x: i32 }\n\nimpl P {\n    fn new() -> Self {\n        P { x: 1 }\n    }\n}\n",
        ["struct P  (lines 1-1)", "impl P  (lines 3-7)", "    fn new() -> Self  (lines 4-6)"],
        "fn main() {\n    let x = ;\n}\n",
        2,
    ),
    (
        "tree_sitter_java",
        "A.java",
        "public class A {\n    public A() {}\n    int twice(int a) {\n        return 2 * a;\n    }\n}\n",
        ["public class A  (lines 1-6)", "    public A()  (lines 2-2)", "    int twice(int a)  (lines 3-5)"],
        "class A {\n    void m() {\n        int x = ;\n    }\n}\n",
        3,
    ),
    (
        "tree_sitter_c",
        "point.c",
        "struct point { int x; };\nstruct point origin;\n\nint add(int a, int b) {\n    return a + b;\n}\n",
        ["struct point  (lines 1-1)", "int add(int a, int b)  (lines 4-6)"],
        "int main(void) {\n    return 0\n}\n",
        2,
    ),
    (
        "tree_sitter_cpp",
        "k.cpp",
        "namespace ns {\nclass K {\n public:\n  int get() const { return 1; }\n};\n}\n",
        ["namespace ns  (lines 1-6)", "    class K  (lines 2-5)", "        int get() const  (lines 4-4)"],
        "int main() {\n  int x = ;\n}\n",
        2,
    ),
]


@pytest.mark.parametrize(
    ("module", "path", "good", "expected", "broken", "error_line"),
    OTHER_LANGUAGES,
    ids=[case[1] for case in OTHER_LANGUAGES],
)
def test_other_languages_when_their_grammar_is_installed(module, path, good, expected, broken, error_line):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    assert syntax.check(path, good) is None
    assert syntax.outline(path, good) == "\n".join(expected)
    message = syntax.check(path, broken)
    assert message is not None
    assert message.startswith(f"line {error_line}, column ")


def test_a_c_header_may_be_cpp():
    if importlib.util.find_spec("tree_sitter_c") is None or importlib.util.find_spec("tree_sitter_cpp") is None:
        pytest.skip("needs both the C and the C++ grammar")
    cpp_header = "template <typename T>\nclass Box {\n  T value;\n};\n"
    assert syntax.check("box.h", cpp_header) is None
    assert syntax.check("box.h", "int f(int a {\n") is not None
