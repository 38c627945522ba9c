"""A small real git repository with a real bug, shaped like a SWE-bench instance (hidden fail-to-pass test)."""

from __future__ import annotations

import subprocess
from pathlib import Path

STATS = '''"""Summary statistics."""


def mean(values):
    return sum(values) / len(values)


def median(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
'''

FORMAT = '''"""Formatting helpers."""


def percent(x, digits=1):
    return f"{x * 100:.{digits}f}%"
'''

OWN_TESTS = """from calc.stats import mean, median


def test_mean():
    assert mean([1, 2, 3]) == 2


def test_median_odd():
    assert median([3, 1, 2]) == 2
"""

HIDDEN_TEST = """from calc.stats import median


def test_median_even():
    assert median([4, 1, 3, 2]) == 2.5
    assert median([1, 2]) == 1.5
"""

ISSUE = """median() is wrong for lists with an even number of elements

`calc.stats.median([1, 2, 3, 4])` returns 3, but the median of an even-length list is the mean of
the two middle values, 2.5.

```python
from calc.stats import median
print(median([1, 2, 3, 4]))  # 3, expected 2.5
```
"""

RIGHT_FIX = """calc/stats.py
<<<<<<< SEARCH
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
=======
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2
>>>>>>> REPLACE
"""

WRONG_FIX = """calc/stats.py
<<<<<<< SEARCH
    return ordered[len(ordered) // 2]
=======
    return ordered[len(ordered) // 2] - 0.5
>>>>>>> REPLACE
"""

RIGHT_TEST = """import sys
from calc.stats import median

got = median([1, 2, 3, 4])
print("median([1, 2, 3, 4]) =", got)
print("median([5, 1, 3]) =", median([5, 1, 3]))
sys.exit(0 if got == 2.5 and median([5, 1, 3]) == 3 else 2)
"""

WRONG_TEST = """import sys
from calc.stats import median

got = median([1, 2, 3, 4])
print("median([1, 2, 3, 4]) =", got)
sys.exit(0 if got == 2.5 else 2)
"""


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def make_toy_repo(root: Path) -> Path:
    """Creates the repository and returns its path; HEAD is the buggy commit."""
    repo = root / "calc-repo"
    (repo / "calc").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "calc" / "__init__.py").write_text("")
    (repo / "calc" / "stats.py").write_text(STATS)
    (repo / "calc" / "fmt.py").write_text(FORMAT)
    (repo / "tests" / "test_stats.py").write_text(OWN_TESTS)
    (repo / "README.md").write_text("# calc\n\nTiny statistics helpers.\n")
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00binary")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "calc with a median bug")
    return repo


def hidden_tests_pass(repo: Path, patch: str, workdir: Path, python: str) -> subprocess.CompletedProcess[str]:
    """Applies `patch` to a fresh clone, adds the hidden test, and runs the repo's whole test suite."""
    clone = workdir / "graded"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    subprocess.run(["git", "apply", "-"], cwd=clone, input=patch, text=True, check=True)
    (clone / "tests" / "test_hidden.py").write_text(HIDDEN_TEST)
    return subprocess.run([python, "-m", "pytest", "-q", "tests"], cwd=clone, capture_output=True, text=True)
