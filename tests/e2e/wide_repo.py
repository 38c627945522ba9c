"""A real git repository whose fix touches many large files, and a scripted model that knows that fix: for the
tests of prompts planned against a small context window."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.fake_model_server import current_stage

FILES = 6
FILLERS = 60  # functions per file before the buggy one: each file is ~16k characters, ~4k tokens
ISSUE = "Every `units.mN.scale(x)` must triple its input, but it doubles it (N from 0 to 5)."

TEST = f"""import sys
import importlib

wrong = []
for n in range({FILES}):
    got = importlib.import_module(f"units.m{{n}}").scale(5)
    if got != 15:
        wrong.append(f"m{{n}}.scale(5) = {{got}}")
print("checked every module " * 150)
print(wrong or "all scale() triple their input")
sys.exit(2 if wrong else 0)
"""


def module(n: int) -> str:
    fillers = "".join(
        f'\n\ndef helper_{n}_{k}(value):\n    """Helper {k} of module {n}: unrelated to scaling."""\n'
        f"    total = value + {k}\n    total = total * {k + 1}\n    return total - {k}\n"
        for k in range(FILLERS)
    )
    scale = f'\n\ndef scale(x):\n    """Module {n}: triples its input."""\n    factor = 2\n    return x * factor\n'
    return f'"""Units, part {n}."""{fillers}{scale}'


def make_wide_repo(tmp: Path) -> Path:
    repo = tmp / "wide-repo"
    (repo / "units").mkdir(parents=True)
    (repo / "units" / "__init__.py").write_text("")
    for n in range(FILES):
        (repo / "units" / f"m{n}.py").write_text(module(n))
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "wide"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


def edit(files: range, factor: int) -> str:
    return "".join(
        f"units/m{n}.py\n<<<<<<< SEARCH\n    factor = 2\n=======\n    factor = {factor}\n>>>>>>> REPLACE\n"
        for n in files
    )


RIGHT = edit(range(FILES), 3)
PARTIAL = edit(range(FILES - 1), 3)  # forgets the last module


def oracle(messages: list[dict], model: str) -> str:
    """The `right` model tries several wrong edits first (so its conversation grows), then the right one;
    the `partial` model forgets one module. Selection checks it was shown every touched function."""
    stage = current_stage()
    text = "\n".join(str(m.get("content")) for m in messages)
    answers = sum(1 for m in messages if m["role"] == "assistant")
    if stage == "relevance":
        return "RELEVANCE: Relevant\nSUMMARY: defines scale()."
    if stage == "ranking":
        return "```json\n" + str([f"units/m{n}.py" for n in range(FILES)]).replace("'", '"') + "\n```"
    if stage == "testing":
        return f"<test>\n{TEST}</test>" if answers == 0 else "<done>"
    if stage == "editing":
        if "partial" in model:
            return f"<edit>\n{PARTIAL}</edit>" if answers == 0 else "<done>"
        attempts = [edit(range(FILES), factor) for factor in (4, 5, 6, 7, 8, 9)] + [RIGHT]
        return f"<edit>\n{attempts[answers]}</edit>" if answers < len(attempts) else "<done>"
    if stage != "selection":
        raise ValueError(f"no known stage: {stage!r}")
    shown = re.findall(r'<file path="(units/m\d\.py)"( regions="true")?>(.*?)</file>', text, re.S)
    seen = {path for path, _, body in shown if "def scale(x):" in body and "factor = 2" in body}
    if seen != {f"units/m{n}.py" for n in range(FILES)}:
        return f"I was not shown every touched function: only {sorted(seen)}"
    candidates = re.findall(r"<candidate_fix candidate_id=(\d+)>(.*?)</candidate_fix>", text, re.S)
    best = max(candidates, key=lambda c: c[1].count("+    factor = 3"))[0]
    return f"<chosen_candidate_fix_id>{best}</chosen_candidate_fix_id>"
