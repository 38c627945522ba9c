"""Grading by the official rules: hand-built logs in each parser format the 12 real Verified records use, the
official markers and failure codes, the run summary, and a real eval script run on a tiny repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from codemonkeys.swebench.dataset import load_instances
from codemonkeys.swebench.grading import eval_script, grade, parse_log, run_report
from codemonkeys.swebench.models import EnvSpec, EvalVerdict, SWEInstance
from codemonkeys.swebench.specs import SpecError, get_spec

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "swebench_verified_sample.jsonl"
START, END = ">>>>> Start Test Output", ">>>>> End Test Output"  # the official markers, written out
PATCH = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n"


@pytest.fixture(scope="module")
def instances() -> dict[str, SWEInstance]:
    return {i.instance_id: i for i in load_instances(str(SAMPLE))}


def pytest_summary(statuses: dict[str, str]) -> list[str]:
    """pytest -rA: the short test summary, a reason after FAILED."""
    lines = ["=========================== short test summary info ============================"]
    for test, status in statuses.items():
        lines.append(f"{status} {test}" + (" - AssertionError: assert 1 == 2" if status == "FAILED" else ""))
    return lines


def render_output(parser: str, statuses: dict[str, str]) -> str:
    """What the repository's test command prints, in the format its official parser reads."""
    lines = ["============================= test session starts ==============================", "rootdir: /testbed"]
    if parser == "parse_log_django":
        lines = ["Testing against Django installed in '/testbed/django'", "Creating test database..."]
        word = {"PASSED": "ok", "FAILED": "FAIL", "ERROR": "ERROR"}
        lines += [f"{test} ... {word[status]}" for test, status in statuses.items()]
        for test, status in statuses.items():
            if status != "PASSED":
                lines += ["=" * 70, f"{word[status]}: {test}", "-" * 70, "Traceback (most recent call last):"]
        lines.append(f"Ran {len(statuses)} tests in 0.101s")
    elif parser == "parse_log_sympy":
        lines = ["============================= test process starts ==============================", ""]
        word = {"PASSED": "ok", "FAILED": "F", "ERROR": "E"}
        lines += [f"{test} {word[status]}" for test, status in statuses.items()]
        for test, status in statuses.items():
            if status != "PASSED":
                lines.append(f"________ sympy/geometry/tests/test_point.py:{test} ________")
        lines.append("============= tests finished: 1 passed, 1 failed, in 0.50 seconds ==============")
    elif parser == "parse_log_pytest_v2":
        # astropy's `-vv -o console_output_style=classic` puts the status after the name
        lines += [f"{test} {status}" for test, status in statuses.items()]
    else:
        lines += pytest_summary(statuses)
    return "\n".join(lines)


def wrap(tests: str) -> str:
    """A whole evaluation log: the patch applied, the eval script's output around the test run."""
    return (
        ">>>>> Applied Patch\nChecking patch tests/test_x.py...\nApplied patch tests/test_x.py cleanly.\n"
        f"{START}\n{tests}\n{END}\nUpdated 1 path from 1a2b3c4\n"
    )


def statuses_for(instance: SWEInstance, **overrides: str) -> dict[str, str]:
    statuses = dict.fromkeys([*instance.FAIL_TO_PASS, *instance.PASS_TO_PASS], "PASSED")
    return statuses | overrides


@pytest.mark.parametrize(
    "iid",
    [
        "astropy__astropy-14369",
        "django__django-14007",
        "matplotlib__matplotlib-24570",
        "mwaskom__seaborn-3187",
        "pallets__flask-5014",
        "psf__requests-2317",
        "pydata__xarray-4695",
        "pylint-dev__pylint-6528",
        "pytest-dev__pytest-6202",
        "scikit-learn__scikit-learn-14087",
        "sphinx-doc__sphinx-8459",
        "sympy__sympy-17655",
    ],
)
def test_each_record_resolves_only_when_every_listed_test_passes(instances: dict[str, SWEInstance], iid: str) -> None:
    instance = instances[iid]
    spec = get_spec(instance)
    f2p, p2p = instance.FAIL_TO_PASS[0], instance.PASS_TO_PASS[-1]

    passing = grade(instance, spec, wrap(render_output(spec.log_parser, statuses_for(instance))), PATCH)
    assert (passing.patch_exists, passing.patch_successfully_applied, passing.resolved) == (True, True, True)
    assert passing.tests_status is not None
    assert passing.tests_status.FAIL_TO_PASS == {"success": instance.FAIL_TO_PASS, "failure": []}
    assert passing.tests_status.PASS_TO_PASS == {"success": instance.PASS_TO_PASS, "failure": []}
    assert passing.error == ""

    f2p_fails = grade(
        instance, spec, wrap(render_output(spec.log_parser, statuses_for(instance, **{f2p: "FAILED"}))), PATCH
    )
    assert f2p_fails.patch_successfully_applied and not f2p_fails.resolved
    assert f2p_fails.tests_status is not None and f2p_fails.tests_status.FAIL_TO_PASS["failure"] == [f2p]

    p2p_breaks = grade(
        instance, spec, wrap(render_output(spec.log_parser, statuses_for(instance, **{p2p: "ERROR"}))), PATCH
    )
    assert not p2p_breaks.resolved
    assert p2p_breaks.tests_status is not None and p2p_breaks.tests_status.PASS_TO_PASS["failure"] == [p2p]


def test_a_test_missing_from_the_log_counts_as_failed(instances: dict[str, SWEInstance]) -> None:
    flask = instances["pallets__flask-5014"]
    statuses = statuses_for(flask)
    del statuses[flask.PASS_TO_PASS[3]]
    verdict = grade(flask, get_spec(flask), wrap(render_output("parse_log_pytest", statuses)), PATCH)
    assert not verdict.resolved
    assert verdict.tests_status is not None and verdict.tests_status.PASS_TO_PASS["failure"] == [flask.PASS_TO_PASS[3]]


def test_xfail_counts_as_passed(instances: dict[str, SWEInstance]) -> None:
    flask = instances["pallets__flask-5014"]
    log = wrap(render_output("parse_log_pytest", statuses_for(flask, **{flask.PASS_TO_PASS[0]: "XFAIL"})))
    assert grade(flask, get_spec(flask), log, PATCH).resolved


def test_only_the_output_between_the_markers_is_parsed(instances: dict[str, SWEInstance]) -> None:
    flask = instances["pallets__flask-5014"]
    f2p = flask.FAIL_TO_PASS[0]
    before = "\n".join(pytest_summary({f2p: "FAILED"}))  # a stale run before the markers
    log = before + "\n" + wrap(render_output("parse_log_pytest", statuses_for(flask)))
    assert parse_log(flask, get_spec(flask), log) == statuses_for(flask)
    assert grade(flask, get_spec(flask), log, PATCH).resolved


def test_with_nothing_between_the_markers_the_whole_log_is_parsed(instances: dict[str, SWEInstance]) -> None:
    """The official fallback: output that went around the markers (another stream) is still read."""
    flask = instances["pallets__flask-5014"]
    log = f"{START}\n{END}\n" + render_output("parse_log_pytest", statuses_for(flask))
    assert grade(flask, get_spec(flask), log, PATCH).resolved


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (">>>>> Patch Apply Failed", "the patch did not apply"),
        (">>>>> Tests Timed Out", "the tests timed out"),
        (">>>>> Reset Failed", ""),
        (">>>>> Tests Errored", ""),
    ],
)
def test_failure_codes_make_the_log_ungradable(instances: dict[str, SWEInstance], code: str, error: str) -> None:
    """The official harness writes no report for a patch that did not apply or tests that timed out (an error
    in the run summary); the other codes give a report that is not resolved."""
    flask = instances["pallets__flask-5014"]
    spec = get_spec(flask)
    log = wrap(render_output("parse_log_pytest", statuses_for(flask))) + f"\n{code}\n"
    assert parse_log(flask, spec, log) is None
    verdict = grade(flask, spec, log, PATCH, candidate="c3", log_path="/logs/c3.log")
    assert (verdict.patch_exists, verdict.patch_successfully_applied, verdict.resolved) == (True, False, False)
    assert verdict.tests_status is None
    assert (verdict.error, verdict.candidate, verdict.log_path) == (error, "c3", "/logs/c3.log")


def test_a_log_without_both_markers_is_not_graded(instances: dict[str, SWEInstance]) -> None:
    flask = instances["pallets__flask-5014"]
    spec = get_spec(flask)
    tests = render_output("parse_log_pytest", statuses_for(flask))
    for log in (tests, f"{START}\n{tests}\n", f"{tests}\n{END}\n"):
        assert parse_log(flask, spec, log) is None
        verdict = grade(flask, spec, log, PATCH)
        assert (verdict.patch_successfully_applied, verdict.resolved, verdict.error) == (False, False, "")


def test_an_empty_patch_or_no_log_is_not_resolved(instances: dict[str, SWEInstance]) -> None:
    flask = instances["pallets__flask-5014"]
    spec = get_spec(flask)
    passing = wrap(render_output("parse_log_pytest", statuses_for(flask)))
    for empty in ("", "  \n"):
        verdict = grade(flask, spec, passing, empty)
        assert (verdict.patch_is_None, verdict.patch_exists, verdict.resolved) == (False, False, False)
    missing = grade(flask, spec, None, PATCH)
    assert missing.patch_exists and not missing.resolved and missing.error


def test_fail_only_repositories_count_only_reported_failures(instances: dict[str, SWEInstance]) -> None:
    """For the official FAIL_ONLY_REPOS a test absent from the log is not a failure."""
    flask = instances["pallets__flask-5014"]
    only_f2p = wrap(render_output("parse_log_pytest", dict.fromkeys(flask.FAIL_TO_PASS, "PASSED")))
    fail_only = get_spec(flask).model_copy(update={"repo": "processing/p5.js"})
    assert grade(flask, fail_only, only_f2p, PATCH).resolved
    assert not grade(flask, get_spec(flask), only_f2p, PATCH).resolved


def test_an_unknown_parser_name_is_a_spec_error(instances: dict[str, SWEInstance]) -> None:
    flask = instances["pallets__flask-5014"]
    spec = get_spec(flask).model_copy(update={"log_parser": "parse_log_nose"})
    with pytest.raises(SpecError, match="parse_log_nose"):
        parse_log(flask, spec, wrap("PASSED x"))


def test_run_report_counts_like_the_official_summary() -> None:
    def verdict(iid: str, resolved: bool = False, error: str = "") -> EvalVerdict:
        return EvalVerdict(
            instance_id=iid, patch_exists=True, patch_successfully_applied=not error, resolved=resolved, error=error
        )

    ids = ["a__a-1", "b__b-2", "c__c-3", "d__d-4", "e__e-5", "f__f-6", "g__g-7"]
    predictions = {
        "a__a-1": PATCH,
        "b__b-2": PATCH,
        "c__c-3": "",
        "e__e-5": PATCH,
        "f__f-6": PATCH,
        "g__g-7": PATCH,
        "z__z-9": PATCH,  # not among the instances: submitted, nothing else
    }
    verdicts = {
        "a__a-1": verdict("a__a-1", resolved=True),
        "b__b-2": verdict("b__b-2"),
        "c__c-3": verdict("c__c-3"),
        "e__e-5": verdict("e__e-5", error="the patch did not apply"),
        "g__g-7": verdict("g__g-7", resolved=True),
    }
    report = run_report(ids, predictions, verdicts, "org/model", "run-1")
    assert report == {
        "total_instances": 7,
        "submitted_instances": 7,
        "completed_instances": 3,
        "resolved_instances": 2,
        "unresolved_instances": 1,
        "empty_patch_instances": 1,
        "error_instances": 2,
        "completed_ids": ["a__a-1", "b__b-2", "g__g-7"],
        "incomplete_ids": ["d__d-4"],
        "empty_patch_ids": ["c__c-3"],
        "submitted_ids": ["a__a-1", "b__b-2", "c__c-3", "e__e-5", "f__f-6", "g__g-7", "z__z-9"],
        "resolved_ids": ["a__a-1", "g__g-7"],
        "unresolved_ids": ["b__b-2"],
        "error_ids": ["e__e-5", "f__f-6"],
        "schema_version": 2,
        "unstopped_instances": 0,
        "unstopped_containers": [],
        "unremoved_images": [],
    }


def test_every_records_eval_script_is_valid_bash_in_the_official_order(
    instances: dict[str, SWEInstance], tmp_path: Path
) -> None:
    for instance in instances.values():
        spec = get_spec(instance)
        script = eval_script(instance, spec, ".codemonkeys-eval/test.patch")
        path = tmp_path / f"{instance.instance_id}.sh"
        path.write_text(script)
        checked = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr
        lines = script.splitlines()
        reset = next(line for line in lines if line.startswith("git checkout"))
        assert reset.startswith("git checkout HEAD -- ")
        assert lines.index(reset) < lines.index("git apply -v .codemonkeys-eval/test.patch")
        start, end = lines.index(f"echo '{START}'"), lines.index(f"echo '{END}'")
        assert lines[start + 1].startswith(spec.test_cmd) and end == start + 2
        assert lines[-1] == reset


def test_nothing_from_the_instance_reaches_the_shell(instances: dict[str, SWEInstance], tmp_path: Path) -> None:
    evil = "$(touch pwned)"
    test_patch = (
        f"diff --git a/tests/test_{evil}.py b/tests/test_{evil}.py\n--- a/tests/test_{evil}.py\n"
        f"+++ b/tests/test_{evil}.py\n@@ -1 +1 @@\n-a\n+b\n"
    )
    instance = instances["pallets__flask-5014"].model_copy(
        update={"base_commit": f"abcd;{evil}", "test_patch": test_patch}
    )
    script = eval_script(instance, get_spec(instance), f"{tmp_path}/my patch;{evil}")
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["bash", "-c", script], cwd=repo, capture_output=True, check=False, timeout=60)
    assert not (repo / "pwned").exists()
    assert f"'tests/test_{evil}.py'" in script


CALC = "def add(a, b):\n    if b < 0:\n        return a\n    return a + b\n"
TEST_CALC = (
    "import os\n\nfrom calc import add\n\n\ndef test_add():\n"
    "    assert os.environ['CALC_MODE'] == 'strict'\n    assert add(2, 3) == 5\n"
)
NEW_TEST = "\n\ndef test_add_negative():\n    assert add(2, -3) == -1\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def calc_repo(tmp_path: Path) -> tuple[Path, SWEInstance, EnvSpec, str]:
    """A repository with a bug, its test patch (a new test in an existing file) and the fixing patch."""
    repo = tmp_path / "calc"
    (repo / "tests").mkdir(parents=True)
    (repo / "calc.py").write_text(CALC)
    (repo / "tests" / "test_calc.py").write_text(TEST_CALC)
    (repo / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    base = git(repo, "rev-parse", "HEAD").strip()
    (repo / "tests" / "test_calc.py").write_text(TEST_CALC + NEW_TEST)
    test_patch = git(repo, "diff")
    (repo / "tests" / "test_calc.py").write_text(TEST_CALC)
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    fix = git(repo, "diff")
    git(repo, "checkout", "-q", "--", ".")
    instance = SWEInstance(
        instance_id="me__calc-1",
        repo="me/calc",
        base_commit=base,
        problem_statement="add ignores negative numbers",
        version="1.0",
        test_patch=test_patch,
        FAIL_TO_PASS=["tests/test_calc.py::test_add_negative"],
        PASS_TO_PASS=["tests/test_calc.py::test_add"],
    )
    spec = EnvSpec(
        repo="me/calc",
        version="1.0",
        python="3.11",
        test_cmd="pytest -rA -p no:cacheprovider",
        eval_commands=["export CALC_MODE=strict"],
        log_parser="parse_log_pytest",
        source="file",
    )
    return repo, instance, spec, fix


def run_eval(repo: Path, instance: SWEInstance, spec: EnvSpec) -> str:
    """The eval script as the evaluator runs it: from the root, the environment's bin directory on PATH."""
    work = repo / ".codemonkeys-eval"
    work.mkdir(exist_ok=True)
    (work / "test.patch").write_text(instance.test_patch)
    (work / "eval.sh").write_text(eval_script(instance, spec, ".codemonkeys-eval/test.patch"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("CALC_MODE", None)
    result = subprocess.run(
        ["bash", ".codemonkeys-eval/eval.sh"], cwd=repo, env=env, capture_output=True, text=True, timeout=120
    )
    return ">>>>> Applied Patch\n" + result.stdout


def test_a_real_eval_run_resolves_only_with_the_fix(calc_repo: tuple[Path, SWEInstance, EnvSpec, str]) -> None:
    repo, instance, spec, fix = calc_repo

    unfixed_log = run_eval(repo, instance, spec)
    unfixed = grade(instance, spec, unfixed_log, fix)
    assert unfixed.patch_successfully_applied and not unfixed.resolved, unfixed_log
    assert unfixed.tests_status is not None
    assert unfixed.tests_status.FAIL_TO_PASS["failure"] == ["tests/test_calc.py::test_add_negative"]
    assert unfixed.tests_status.PASS_TO_PASS["success"] == ["tests/test_calc.py::test_add"]
    assert git(repo, "status", "--porcelain", "--", "tests") == ""  # the test files were restored

    subprocess.run(["git", "apply", "-"], cwd=repo, input=fix, text=True, check=True)
    fixed_log = run_eval(repo, instance, spec)
    fixed = grade(instance, spec, fixed_log, fix)
    assert fixed.resolved, fixed_log
    assert parse_log(instance, spec, fixed_log) == {
        "tests/test_calc.py::test_add": "PASSED",
        "tests/test_calc.py::test_add_negative": "PASSED",
    }
    assert git(repo, "diff", "--name-only") == "calc.py\n"
