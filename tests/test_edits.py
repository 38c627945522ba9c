import subprocess
from pathlib import Path

import pydantic
import pytest

from codemonkeys.edits import (
    EditBlock,
    EditFormatError,
    apply_edits,
    check_syntax_of,
    make_diff,
    parse_edit_blocks,
)

CALC = """\
import math


class Calculator:
    def add(self, a, b):
        return a + b

    def sqrt(self, x):
        return math.sqrt(x)
"""


def reader(files: dict[str, str]):
    return lambda path: files.get(path)


def block(path: str, search: str, replace: str) -> str:
    return f"{path}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


# ---------------------------------------------------------------- parsing


def test_parse_single_block():
    text = "I will fix add.\n\ncalc.py\n<<<<<<< SEARCH\n        return a + b\n=======\n        return a + b + 0\n>>>>>>> REPLACE\n"
    assert parse_edit_blocks(text) == [
        EditBlock(path="calc.py", search="        return a + b\n", replace="        return a + b + 0\n")
    ]


def test_parse_multiple_blocks_and_files_a_block_without_path_continues_the_previous_file():
    text = (
        block("pkg/a.py", "x = 1\n", "x = 2\n")
        + "\n<<<<<<< SEARCH\ny = 1\n=======\n>>>>>>> REPLACE\n\n"
        + block("pkg/b.py", "", "new\n")
    )
    assert parse_edit_blocks(text) == [
        EditBlock(path="pkg/a.py", search="x = 1\n", replace="x = 2\n"),
        EditBlock(path="pkg/a.py", search="y = 1\n", replace=""),
        EditBlock(path="pkg/b.py", search="", replace="new\n"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "```python\nsrc/calc.py\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n```\n",
        "src/calc.py\n```python\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n```\n",
        "```python src/calc.py\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n```\n",
        "```src/calc.py\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n```\n",
        "`./src/calc.py`\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n",
        "**src/calc.py**:\r\n<<<<<<< SEARCH\r\nold\r\n=======\r\nnew\r\n>>>>>>> REPLACE\r\n",
    ],
    ids=["fence-around", "fence-after-path", "fence-with-path", "fence-is-path", "backticks-dot-slash", "bold-crlf"],
)
def test_parse_tolerates_fences_backticks_and_decorations(text):
    assert parse_edit_blocks(text) == [EditBlock(path="src/calc.py", search="old\n", replace="new\n")]


def test_parse_keeps_fences_inside_the_replacement():
    text = block("README.md", "old\n", "```python\nprint(1)\n```\n")
    assert parse_edit_blocks(text)[0].replace == "```python\nprint(1)\n```\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "calc.py\n<<<<<<< SEARCH\nold\n>>>>>>> REPLACE\n",
            "the block for calc.py that starts at line 2 has `>>>>>>> REPLACE` at line 4 where `=======` was expected first",
        ),
        (
            "calc.py\n<<<<<<< SEARCH\nold\n=======\nnew\n",
            "the block for calc.py that starts at line 2 has no `>>>>>>> REPLACE` line before the end of the edit",
        ),
        (
            "calc.py\n<<<<<<< SEARCH\nold\n=======\nnew\n\nother.py\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n",
            "the block for calc.py that starts at line 2 has `<<<<<<< SEARCH` at line 8 where `>>>>>>> REPLACE` was expected first",
        ),
        (
            "calc.py\n<<<<<<< SEARCH\nold\n",
            "the block for calc.py that starts at line 2 has no `=======` line before the end of the edit",
        ),
        (
            "calc.py\nold\n=======\nnew\n>>>>>>> REPLACE\n",
            "line 3: `=======` appears outside a block",
        ),
        ("<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n", "line 1: no file path before `<<<<<<< SEARCH`"),
        (
            "Here is the fix:\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n",
            "line 1: expected the file path on the line before `<<<<<<< SEARCH` (line 2), found 'Here is the fix:'",
        ),
        ("I changed nothing.", "found no search/replace blocks"),
        (block("/etc/passwd", "a\n", "b\n"), "line 1: the file path '/etc/passwd' is absolute"),
        (block("src/../../x.py", "a\n", "b\n"), "line 1: the file path 'src/../../x.py' contains '..'"),
    ],
    ids=[
        "no-divider",
        "no-replace-at-end",
        "no-replace-before-next",
        "no-divider-at-end",
        "no-search",
        "no-path",
        "prose-path",
        "empty",
        "absolute",
        "dotdot",
    ],
)
def test_parse_rejects_malformed_edits_with_a_precise_message(text, expected):
    with pytest.raises(EditFormatError) as info:
        parse_edit_blocks(text)
    assert expected in str(info.value)


def test_edit_block_itself_refuses_paths_outside_the_repository():
    with pytest.raises(pydantic.ValidationError):
        EditBlock(path="../x.py", search="", replace="")


# ---------------------------------------------------------------- applying


def test_apply_exact():
    result = apply_edits(
        [EditBlock(path="calc.py", search="        return a + b\n", replace="        return b + a\n")],
        reader({"calc.py": CALC}),
    )
    assert result.errors == []
    assert result.files == {"calc.py": CALC.replace("return a + b", "return b + a")}


def test_apply_ignores_trailing_whitespace():
    original = CALC.replace("def add(self, a, b):", "def add(self, a, b):   \t")
    search = "    def add(self, a, b):\n        return a + b\n"
    replace = "    def add(self, a, b):\n        return float(a + b)\n"
    result = apply_edits([EditBlock(path="calc.py", search=search, replace=replace)], reader({"calc.py": original}))
    assert result.errors == []
    assert result.files["calc.py"] == CALC.replace("return a + b", "return float(a + b)")


def test_apply_reindents_a_block_written_with_the_wrong_indentation():
    search = "def sqrt(self, x):\n    return math.sqrt(x)\n"
    replace = "def sqrt(self, x):\n    if x < 0:\n        raise ValueError(x)\n    return math.sqrt(x)\n"
    result = apply_edits([EditBlock(path="calc.py", search=search, replace=replace)], reader({"calc.py": CALC}))
    assert result.errors == []
    assert result.files["calc.py"].endswith(
        "    def sqrt(self, x):\n        if x < 0:\n            raise ValueError(x)\n        return math.sqrt(x)\n"
    )


def test_apply_reindents_a_block_that_was_indented_too_much():
    search = "            return a + b\n"
    replace = "            total = a + b\n            return total\n"
    result = apply_edits([EditBlock(path="calc.py", search=search, replace=replace)], reader({"calc.py": CALC}))
    assert result.errors == []
    assert "        total = a + b\n        return total\n" in result.files["calc.py"]


def test_apply_refuses_an_ambiguous_search_and_says_where_it_matched():
    text = "def a():\n    pass\n\n\ndef b():\n    pass\n"
    result = apply_edits(
        [EditBlock(path="m.py", search="    pass\n", replace="    return 1\n")], reader({"m.py": text})
    )
    assert result.files == {}
    assert result.errors == [
        "Edit block 1 (m.py): the SEARCH text matches 2 places in m.py (starting at lines 2, 6). "
        "Add more surrounding lines to SEARCH so that it matches exactly one place."
    ]


def test_apply_reports_the_closest_lines_with_line_numbers_when_nothing_matches():
    search = "    def sqrt(self, y):\n        return math.sqrt(y)\n"
    result = apply_edits([EditBlock(path="calc.py", search=search, replace="")], reader({"calc.py": CALC}))
    assert result.files == {}
    assert len(result.errors) == 1
    error = result.errors[0]
    assert error.startswith("Edit block 1 (calc.py): the SEARCH text does not match any lines of calc.py.")
    assert "The most similar lines are 8-9:\n8 |     def sqrt(self, x):\n9 |         return math.sqrt(x)\n" in error


def test_apply_finds_the_closest_lines_in_a_large_file():
    lines = [f"def function_{n}(value):\n    return value * {n}\n\n" for n in range(3000)]
    text = "".join(lines)
    search = "def function_2500(value):\n    return value * 2500 + 1\n"
    result = apply_edits([EditBlock(path="big.py", search=search, replace="")], reader({"big.py": text}))
    assert (
        "The most similar lines are 7501-7502:\n7501 | def function_2500(value):\n7502 |     return value * 2500\n"
        in result.errors[0]
    )


def test_apply_creates_new_files_and_refuses_ambiguous_empty_searches():
    blocks = [
        EditBlock(path="pkg/new.py", search="", replace="VALUE = 1\n"),
        EditBlock(path="calc.py", search="", replace="oops\n"),
        EditBlock(path="missing.py", search="x = 1\n", replace="x = 2\n"),
    ]
    result = apply_edits(blocks, reader({"calc.py": CALC}))
    assert result.files == {"pkg/new.py": "VALUE = 1\n"}
    assert result.errors == [
        "Edit block 2 (calc.py): the SEARCH section is empty but calc.py already exists and is not empty, so it is "
        "unclear where the new lines go. Copy the lines to replace into SEARCH.",
        "Edit block 3 (missing.py): missing.py does not exist. To create a new file, leave the SEARCH section empty.",
    ]


def test_several_blocks_on_one_file_apply_in_order_and_every_error_is_collected():
    blocks = [
        EditBlock(path="calc.py", search="import math\n", replace="import math\nimport operator\n"),
        EditBlock(path="calc.py", search="        return a + b\n", replace="        return operator.add(a, b)\n"),
        EditBlock(path="calc.py", search="        return a - b\n", replace=""),
        EditBlock(path="calc.py", search="import operator\n", replace="import operator  # for add\n"),
        EditBlock(path="other.py", search="nothing\n", replace=""),
    ]
    result = apply_edits(blocks, reader({"calc.py": CALC, "other.py": "something\n"}))
    assert result.files["calc.py"] == CALC.replace(
        "import math\n", "import math\nimport operator  # for add\n"
    ).replace("return a + b", "return operator.add(a, b)")
    assert len(result.errors) == 2
    assert result.errors[0].startswith(
        "Edit block 3 (calc.py): the SEARCH text does not match any lines of calc.py (as changed by the earlier blocks for it)."
    )
    assert result.errors[1].startswith("Edit block 5 (other.py): the SEARCH text does not match any lines of other.py.")


def test_apply_keeps_a_missing_final_newline_and_crlf_line_endings():
    files = {"a.txt": "one\ntwo", "w.txt": "one\r\ntwo\r\nthree\r\n"}
    blocks = [
        EditBlock(path="a.txt", search="two\n", replace="2\n"),
        EditBlock(path="w.txt", search="two\n", replace="2\n2.5\n"),
    ]
    result = apply_edits(blocks, reader(files))
    assert result.errors == []
    assert result.files == {"a.txt": "one\n2", "w.txt": "one\r\n2\r\n2.5\r\nthree\r\n"}


def test_apply_accepts_a_diff_style_prefix_only_when_the_prefixed_path_does_not_exist():
    result = apply_edits(
        [EditBlock(path="a/calc.py", search="import math\n", replace="import cmath\n")], reader({"calc.py": CALC})
    )
    assert list(result.files) == ["calc.py"]
    real_dir = {"a/calc.py": "import math\n"}
    result = apply_edits(
        [EditBlock(path="a/calc.py", search="import math\n", replace="import cmath\n")], reader(real_dir)
    )
    assert result.files == {"a/calc.py": "import cmath\n"}


# ---------------------------------------------------------------- syntax


def test_check_syntax_flags_an_edit_that_breaks_python_but_not_a_file_already_broken():
    files = {"calc.py": CALC, "broken.py": "def f(:\n    pass\n\nx = 1\n", "notes.txt": "a\n"}
    blocks = [
        EditBlock(path="calc.py", search="        return a + b\n", replace="        return (a + b\n"),
        EditBlock(path="broken.py", search="x = 1\n", replace="x = 2\n"),
        EditBlock(path="notes.txt", search="a\n", replace="((\n"),
        EditBlock(path="fine.py", search="", replace="ok = True\n"),
    ]
    result = apply_edits(blocks, reader(files))
    assert result.errors == []
    errors = check_syntax_of(result, reader(files))
    assert len(errors) == 1
    assert errors[0].startswith("After the edit, calc.py no longer parses: line 6, column")
    assert "6 |         return (a + b" in errors[0]


def test_check_syntax_flags_a_new_file_that_does_not_parse():
    result = apply_edits([EditBlock(path="new.py", search="", replace="def g(\n")], reader({}))
    errors = check_syntax_of(result, reader({}))
    assert len(errors) == 1
    assert errors[0].startswith("After the edit, new.py no longer parses: line 1")


# ---------------------------------------------------------------- diffs


def git(repo: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    files = {
        "calc.py": CALC.encode(),
        "no_newline.txt": b"first\nsecond\nthird",
        "windows.txt": b"alpha\r\nbeta\r\ngamma\r\n",
        "empty.txt": b"",
        "untouched.txt": b"keep\n",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    return tmp_path


def read_repo(repo: Path):
    def read(path: str) -> str | None:
        file = repo / path
        return file.read_bytes().decode() if file.exists() else None

    return read


def round_trip(repo: Path, originals: dict[str, str | None], updated: dict[str, str]) -> str:
    diff = make_diff(originals, updated)
    git(repo, "apply", "--check", "-", stdin=diff)
    git(repo, "apply", "-", stdin=diff)
    for path, text in updated.items():
        assert (repo / path).read_bytes() == text.encode(), path
    return diff


def test_make_diff_round_trips_through_git_apply(repo):
    read = read_repo(repo)
    edit = (
        block("calc.py", "        return a + b\n", "        return a + b + 0\n")
        + block("no_newline.txt", "third\n", "THIRD\n")
        + block("windows.txt", "beta\n", "beta\ndelta\n")
        + block("empty.txt", "", "now filled\n")
        + block("new/deeper/module.py", "", "def created():\n    return 1\n")
        + block("untouched.txt", "keep\n", "keep\n")
    )
    result = apply_edits(parse_edit_blocks(edit), read)
    assert result.errors == []
    originals = {path: read(path) for path in result.files}
    diff = round_trip(repo, originals, result.files)
    assert (repo / "no_newline.txt").read_bytes() == b"first\nsecond\nTHIRD"
    assert (repo / "windows.txt").read_bytes() == b"alpha\r\nbeta\r\ndelta\r\ngamma\r\n"
    assert "diff --git a/untouched.txt" not in diff
    assert "diff --git a/new/deeper/module.py b/new/deeper/module.py\nnew file mode 100644\n--- /dev/null\n" in diff
    assert git(repo, "status", "--porcelain", "--untracked-files=all").split("\n") == [
        " M calc.py",
        " M empty.txt",
        " M no_newline.txt",
        " M windows.txt",
        "?? new/deeper/module.py",
        "",
    ]


def test_make_diff_handles_newline_changes_at_the_end_and_emptied_or_empty_new_files(repo):
    read = read_repo(repo)
    updated = {
        "no_newline.txt": "first\nsecond\nthird\n",  # gains the final newline
        "calc.py": "",  # emptied
        "windows.txt": "alpha\r\nbeta",  # loses lines and the final newline
        "new_empty.txt": "",
        "new_no_newline.txt": "tail",
    }
    diff = round_trip(repo, {path: read(path) for path in updated}, updated)
    assert diff.count("\\ No newline at end of file\n") == 3
    assert (repo / "new_empty.txt").exists()


def test_make_diff_of_nothing_changed_is_empty():
    assert make_diff({"a.py": "x\n"}, {"a.py": "x\n"}) == ""
