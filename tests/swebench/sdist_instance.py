"""A SWE-bench instance made of real upstream code: sympy 1.12 from the package index as a source distribution
(downloaded at test time into a cache directory, never committed here), turned into a git repository in a
`--repos` directory as `sympy+sympy`, with a bug in one small, well-tested function and the records that
grade its fix with the official sympy 1.12 spec of swebench 4.1.0 (python 3.9, mpmath==1.3.0,
`bin/test -C --verbose`, the official sympy log parser).

- commit 1, the release: the sdist as it is, less what only an sdist has (PKG-INFO, the egg-info) and plus
  `bin/test`, the runner the official test command calls, which upstream's repository has and its sdist
  leaves out. Ours is a small stand-in (written here, not copied): it takes the two options the official
  command passes and calls `sympy.test`, whose output the official parser reads.
- commit 2, the bug (the instance's base commit): `sympy.utilities.misc._replace` stops escaping the keys
  of its regular expression, so `replace` treats them as patterns: `replace("1.5 + 2", {".": ",", "+": "plus"})`
  raises `re.error` instead of giving "1,5 plus 2". sympy's own tests of `replace` use plain letters only.
- gold patch: the reverse of the bug. test patch: a new test in `sympy/utilities/tests/test_misc.py` that
  fails with the bug. A wrong patch: a plausible fix that only stops the KeyError of unescaped `.` and still
  fails the new test.

Commits have fixed dates and identity, so the same sdist gives the same commits every session.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.build_outputs import unpack_sdist

SDIST = ("sympy", "1.12")
REPO = "sympy/sympy"
VERSION = "1.12"
SOURCE = "sympy/utilities/misc.py"
TEST_FILE = "sympy/utilities/tests/test_misc.py"
FAIL_TO_PASS = ["test_replace_keys_are_not_patterns"]
PASS_TO_PASS = ["test_translate", "test_replace", "test_ordinal"]

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_AUTHOR_DATE": "2023-05-10T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2023-05-10T00:00:00+00:00",
}

# The runner upstream keeps at bin/test (absent from the sdist): the options of the official test command.
BIN_TEST = '''\
#!/usr/bin/env python
"""Run sympy's tests with its own runner: bin/test [-C] [-v] [paths ...] (a stand-in for upstream's bin/test)."""

import os
import sys
from optparse import OptionParser

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

parser = OptionParser(usage="test [options ...] [tests ...]")
parser.add_option("-v", "--verbose", action="store_true", dest="verbose", default=False)
parser.add_option("-C", "--no-cache", action="store_false", dest="cache", default=True,
                  help="disable the cache mechanism")
options, paths = parser.parse_args()
if not options.cache:
    os.environ["SYMPY_USE_CACHE"] = "no"

import sympy  # noqa: E402

sys.exit(0 if sympy.test(*paths, verbose=options.verbose) else 1)
'''

RELEASED = """    pattern = _re.compile("|".join(
        [_re.escape(k) for k, v in reps.items()]), _re.M)
"""
BUGGY = """    pattern = _re.compile("|".join(reps), _re.M)
"""
# Looks like a fix for `replace('1.5', {'.': ','})` (no more KeyError) but keys like '+' still break the pattern.
WRONG_FIX = (
    "    D = lambda match: reps[match.group(0)]\n",
    "    D = lambda match: reps.get(match.group(0), match.group(0))\n",
)
ANCHOR = "def test_ordinal():\n"
NEW_TEST = """def test_replace_keys_are_not_patterns():
    assert replace('1.5 + 2', {'.': ',', '+': 'plus'}) == '1,5 plus 2'
    assert replace('f(x)*y', {'(': '[', ')': ']', '*': ' '}) == 'f[x] y'


"""
ISSUE = """replace() treats its keys as regular expressions

`sympy.utilities.misc.replace` is documented to replace every key of the mapping with its value, but keys
holding characters that mean something in a regular expression break it:

```python
>>> from sympy.utilities.misc import replace
>>> replace('1.5 + 2', {'.': ',', '+': 'plus'})
Traceback (most recent call last):
...
re.error: nothing to repeat at position 2
>>> replace('1.5', {'.': ','})
Traceback (most recent call last):
...
KeyError: '1'
```

Expected `'1,5 plus 2'` and `'1,5'`.
"""


@dataclass(frozen=True)
class SdistBenchmark:
    repos: Path  # the --repos directory, holding sympy+sympy
    repo: Path
    release: str  # commit 1
    base_commit: str  # commit 2, the bug
    dataset: Path
    patches: dict[str, str]  # gold, wrong
    test_patch: str


def _run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def download_sdist(cache: Path, name: str, version: str) -> Path:
    """`pip download` of the source distribution only, once per cache directory (safe for concurrent sessions:
    downloaded beside, then renamed into place)."""
    target = cache / "sdists" / f"{name}-{version}"
    found = sorted(target.glob("*.tar.gz")) if target.is_dir() else []
    if not found:
        partial = cache / "sdists" / f".{name}-{version}-{uuid.uuid4().hex[:8]}"
        partial.mkdir(parents=True)
        argv = ["-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps", "--no-binary", ":all:"]
        try:
            _run([sys.executable, *argv, f"{name}=={version}", "-d", str(partial)])
            with contextlib.suppress(OSError):  # another session got there first
                partial.rename(target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        found = sorted(target.glob("*.tar.gz"))
    if len(found) != 1:
        raise RuntimeError(f"expected one sdist of {name} {version} in {target}, found {found}")
    return found[0]


def _git(repo: Path, *args: str) -> str:
    return _run(["git", "-c", "commit.gpgsign=false", *args], cwd=repo, env={**os.environ, **GIT_ENV})


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: expected one {old!r}"
    path.write_text(text.replace(old, new))


def _diff(repo: Path, path: str, old: str, new: str) -> str:
    """The `git diff` of one edit against HEAD, the work tree left as it was."""
    target = repo / path
    before = target.read_text()
    try:
        _edit(target, old, new)
        return _git(repo, "diff", "--", path)
    finally:
        target.write_text(before)


def make_sympy_benchmark(root: Path, cache: Path, ids: list[str]) -> SdistBenchmark:
    """`root/repos/sympy+sympy` at the bug, and `root/dataset.jsonl` with one record per id (all of the one
    instance, so each id can carry a different prediction)."""
    repos = root / "repos"
    repos.mkdir(parents=True)
    repo = repos / "sympy+sympy"
    unpack_sdist(download_sdist(cache, *SDIST), repo)
    assert RELEASED in (repo / SOURCE).read_text(), "sympy's _replace is not what the bug expects"
    assert ANCHOR in (repo / TEST_FILE).read_text()
    assert not (repo / "bin" / "test").exists(), "the sdist has a bin/test now: use it"
    (repo / "bin" / "test").write_text(BIN_TEST)
    (repo / "bin" / "test").chmod(0o755)
    _git(repo, "init", "-q", "-b", "master")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", f"sympy {VERSION} from its sdist, with bin/test")
    release = _git(repo, "rev-parse", "HEAD").strip()
    _edit(repo / SOURCE, RELEASED, BUGGY)
    _git(repo, "commit", "-q", "-am", "misc: build the replace pattern from the keys directly")
    base = _git(repo, "rev-parse", "HEAD").strip()
    gold = _git(repo, "diff", base, release, "--", SOURCE)
    patches = {"gold": gold, "wrong": _diff(repo, SOURCE, *WRONG_FIX)}
    test_patch = _diff(repo, TEST_FILE, ANCHOR, NEW_TEST + ANCHOR)
    records = [
        {
            "instance_id": iid,
            "repo": REPO,
            "base_commit": base,
            "problem_statement": ISSUE,
            "version": VERSION,
            "patch": gold,
            "test_patch": test_patch,
            "FAIL_TO_PASS": json.dumps(FAIL_TO_PASS),
            "PASS_TO_PASS": json.dumps(PASS_TO_PASS),
            "environment_setup_commit": release,
            "hints_text": "",
            "created_at": "2023-05-10T00:00:00Z",
        }
        for iid in ids
    ]
    dataset = root / "dataset.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in records))
    return SdistBenchmark(repos, repo, release, base, dataset, patches, test_patch)
