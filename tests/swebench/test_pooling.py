"""Pooling candidates of several systems: the same fix written differently is one candidate with every source,
different fixes stay apart, and empty patches are only listed. The diffs are real `git diff` output."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from codemonkeys.swebench.batch import ensemble_inputs
from codemonkeys.swebench.models import SWEInstance
from codemonkeys.swebench.pooling import Provenance, diff_key, patch_paths, pool_patches
from tests.swebench.shaped import make_benchmark, write_predictions


@pytest.fixture(scope="module")
def patches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_benchmark(tmp_path_factory.mktemp("pooling"), ["acme__calc-1"])[3]


def restyled(patch: str) -> str:
    """The same change as another tool writes it: other hunk line numbers and section text, another `index`
    line, trailing spaces on changed lines, no final newline."""
    patch = re.sub(
        r"^@@ -(\d+),(\d+) \+(\d+),(\d+) @@.*$",
        lambda m: f"@@ -{int(m[1]) + 3},{m[2]} +{int(m[3]) + 3},{m[4]} @@ class Elsewhere:",
        patch,
        flags=re.M,
    )
    patch = re.sub(r"^index \S+", "index 0123456..789abcd", patch, flags=re.M)
    return re.sub(r"^([+-](?![+-]{2} ).*)$", r"\1  ", patch, flags=re.M).rstrip("\n")


def source(origin: str, name: str = "m") -> Provenance:
    return Provenance(origin=origin, name=name)


def test_the_same_fix_in_other_form_and_file_order_pools_once(patches: dict[str, str]) -> None:
    ours = patches["gold"] + patches["unrelated"]
    theirs = restyled(patches["unrelated"]) + "\n" + restyled(patches["gold"])
    assert theirs != ours and "@@ class Elsewhere:" in theirs
    pool = pool_patches("i", [(source("a.jsonl"), ours), (source("b.jsonl", "other"), theirs)])
    assert len(pool.patches) == 1
    assert pool.patches[0].patch == ours, "the first-seen text represents the group"
    assert pool.patches[0].provenance == [source("a.jsonl"), source("b.jsonl", "other")]
    assert pool.patches[0].paths == ["calc/stats.py", "calc/fmt.py"]


def test_different_fixes_stay_apart_and_empty_patches_are_dropped(patches: dict[str, str]) -> None:
    sources = [
        (source("a.jsonl"), patches["gold"]),
        (source("b.jsonl"), "  \n"),
        (source("run", "candidate-0"), patches["wrong"]),
        (source("c.jsonl"), patches["breaks_mean"]),
        (source("d.jsonl"), ""),
        (source("run", "candidate-1"), restyled(patches["wrong"])),
    ]
    pool = pool_patches("i", sources)
    assert [p.patch for p in pool.patches] == [patches["gold"], patches["wrong"], patches["breaks_mean"]]
    assert [p.id for p in pool.patches] == [0, 1, 2]
    assert pool.sources(1) == [source("run", "candidate-0"), source("run", "candidate-1")]
    assert pool.empty == [source("b.jsonl"), source("d.jsonl")]


def test_the_key_still_sees_changed_lines_and_context(patches: dict[str, str]) -> None:
    gold = patches["gold"]
    assert diff_key(gold) != diff_key(gold.replace("mid - 1", "mid + 1"))
    assert diff_key(gold) != diff_key(gold.replace("+    if", "+     if")), "leading whitespace matters"


def test_paths_of_new_changed_and_deleted_files(tmp_path: Path) -> None:
    diff = (
        "diff --git a/new.py b/new.py\nnew file mode 100644\n--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n+x = 1\n"
        "diff --git a/old.py b/old.py\ndeleted file mode 100644\n--- a/old.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-y = 2\n"
    )
    assert patch_paths(diff) == ["new.py", "old.py"]
    plain = "--- a/pkg/m.py\t2024-01-01\n+++ b/pkg/m.py\t2024-01-02\n@@ -1 +1 @@\n-a\n+b\n"
    assert patch_paths(plain) == ["pkg/m.py"]
    assert diff_key(plain) == diff_key(plain.replace("@@ -1 +1 @@", "@@ -5 +5 @@ def f():"))


def test_prediction_files_naming_instances_outside_the_dataset_are_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    instance = SWEInstance(instance_id="acme__calc-1", repo="acme/calc", base_commit="abcd", problem_statement="x")
    ids = ["acme__calc-1", *(f"other__repo-{n}" for n in range(7))]
    path = write_predictions(tmp_path / "p.jsonl", dict.fromkeys(ids, "diff"))
    with caplog.at_level(logging.WARNING, logger="codemonkeys.swebench"):
        [job] = ensemble_inputs([instance], [path], [], only_mentioned=True)
    assert job.instance.instance_id == "acme__calc-1"
    assert "7 instance(s) that are not in the dataset" in caplog.text
    assert "other__repo-0, other__repo-1, other__repo-2, other__repo-3, other__repo-4 and 2 more" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="codemonkeys.swebench"):
        ensemble_inputs([instance], [path], [], only_mentioned=False)
    assert caplog.text == "", "with --instances, the files' other instances are left out on purpose"
