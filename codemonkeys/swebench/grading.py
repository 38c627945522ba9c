"""Evaluation by the official rules (swebench 4.1.0, behind this adapter): the eval script that applies the test
patch and runs the instance's tests, the official log parsers and markers, and the official per-instance report
and run summary, so our numbers mean what a SWE-bench leaderboard's numbers mean."""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from swebench.harness.constants import (
    APPLY_PATCH_FAIL,
    APPLY_PATCH_PASS,
    END_TEST_OUTPUT,
    FAIL_ONLY_REPOS,
    FAIL_TO_PASS,
    PASS_TO_PASS,
    RESET_FAILED,
    START_TEST_OUTPUT,
    TESTS_ERROR,
    TESTS_TIMEOUT,
    EvalType,
    ResolvedStatus,
)
from swebench.harness.grading import get_eval_tests_report, get_resolution_status
from swebench.harness.utils import get_modified_files

from codemonkeys.swebench.models import EnvSpec, EvalVerdict, SWEInstance, TestsStatus
from codemonkeys.swebench.specs import SpecError, log_parsers, test_directives

__all__ = [
    "APPLY_PATCH_FAIL",
    "APPLY_PATCH_PASS",
    "END_TEST_OUTPUT",
    "START_TEST_OUTPUT",
    "TESTS_TIMEOUT",
    "eval_script",
    "grade",
    "parse_log",
    "run_report",
]

# The markers with which the official harness says a log cannot be graded.
BAD_CODES = (APPLY_PATCH_FAIL, RESET_FAILED, TESTS_ERROR, TESTS_TIMEOUT)


def eval_script(instance: SWEInstance, spec: EnvSpec, test_patch_path: str) -> str:
    """The official Python eval script (`make_eval_script_list_py`) without conda: run from the repository root
    after the candidate patch is applied, its environment already on PATH. Only the spec's own commands reach
    the shell unquoted."""
    test_files = get_modified_files(instance.test_patch) if instance.test_patch.strip() else []
    # HEAD, not base_commit: the sandbox's pristine commit is the instance's tree, but a docker repo image or a
    # tree after setup holds it as a commit of its own, where base_commit does not exist.
    reset = f"git checkout {_quoted(['HEAD', '--', *test_files])}" if test_files else ""
    # One stream, so the markers and the test output (django's runner writes to stderr) stay in order.
    lines = ["#!/bin/bash", "set -uo pipefail", "exec 2>&1", *spec.eval_commands]
    lines += [
        reset,
        f"git apply -v {shlex.quote(test_patch_path)}",
        f"echo {shlex.quote(START_TEST_OUTPUT)}",
        " ".join([spec.test_cmd, *map(shlex.quote, test_directives(instance))]),
        f"echo {shlex.quote(END_TEST_OUTPUT)}",
        reset,
    ]
    return "\n".join(line for line in lines if line) + "\n"


def parse_log(instance: SWEInstance, spec: EnvSpec, log: str) -> dict[str, str] | None:
    """Test name → status from the output between the official markers (the whole log when that holds no
    results, as the official `get_logs_eval` does); None when the official harness would not grade the log."""
    parsers = log_parsers()
    if spec.log_parser not in parsers:
        raise SpecError(f"instance {instance.instance_id}: {spec.log_parser!r} is not an official log parser")
    if any(code in log for code in BAD_CODES):
        return None
    if START_TEST_OUTPUT not in log or END_TEST_OUTPUT not in log:
        return None
    parser = parsers[spec.log_parser]
    tests = log.split(START_TEST_OUTPUT)[1].split(END_TEST_OUTPUT)[0]
    # The Python parsers never read their test_spec argument.
    return parser(tests, None) or parser(log, None)


def grade(
    instance: SWEInstance, spec: EnvSpec, log: str | None, patch: str, candidate: str = "", log_path: str = ""
) -> EvalVerdict:
    """The official per-instance report (`get_eval_report`) for one patch. A missing log, a patch that did not
    apply and a timeout set `error`: the official harness writes no report for those, so they count as errors."""
    verdict = EvalVerdict(instance_id=instance.instance_id, candidate=candidate, log_path=log_path)
    if not patch.strip():
        return verdict
    verdict.patch_exists = True
    if log is None:
        verdict.error = "no evaluation log: the tests did not run"
        return verdict
    if APPLY_PATCH_FAIL in log:
        verdict.error = "the patch did not apply"
        return verdict
    if TESTS_TIMEOUT in log:
        verdict.error = "the tests timed out"
        return verdict
    status = parse_log(instance, spec, log)
    if status is None:
        return verdict
    verdict.patch_successfully_applied = True
    eval_type = EvalType.FAIL_ONLY if spec.repo in FAIL_ONLY_REPOS else EvalType.PASS_AND_FAIL
    gold = {FAIL_TO_PASS: instance.FAIL_TO_PASS, PASS_TO_PASS: instance.PASS_TO_PASS}
    report = get_eval_tests_report(status, gold, eval_type=eval_type)
    verdict.resolved = get_resolution_status(report) == ResolvedStatus.FULL.value
    verdict.tests_status = TestsStatus.model_validate(report)
    return verdict


def run_report(
    instance_ids: list[str],
    predictions: dict[str, str],
    verdicts: dict[str, EvalVerdict],
    model: str,
    run_id: str,
) -> dict:
    """The official run summary (`make_run_report`, schema 2, no docker client) for the submitted predictions of
    `model` in run `run_id`: an instance without a prediction is incomplete, an empty patch is counted apart and
    never graded, and a prediction with no verdict or an errored one is an error. The official file is named
    `<model>.<run_id>.json`; the summary itself does not repeat either."""
    completed: set[str] = set()
    resolved: set[str] = set()
    unresolved: set[str] = set()
    errors: set[str] = set()
    incomplete: set[str] = set()
    empty: set[str] = set()
    for iid in instance_ids:
        if iid not in predictions:
            incomplete.add(iid)
            continue
        if not predictions[iid].strip():
            empty.add(iid)
            continue
        verdict = verdicts.get(iid)
        if verdict is None or verdict.error:
            errors.add(iid)
            continue
        completed.add(iid)
        (resolved if verdict.resolved else unresolved).add(iid)
    return {
        "total_instances": len(instance_ids),
        "submitted_instances": len(predictions),
        "completed_instances": len(completed),
        "resolved_instances": len(resolved),
        "unresolved_instances": len(unresolved),
        "empty_patch_instances": len(empty),
        "error_instances": len(errors),
        "completed_ids": sorted(completed),
        "incomplete_ids": sorted(incomplete),
        "empty_patch_ids": sorted(empty),
        "submitted_ids": sorted(predictions),
        "resolved_ids": sorted(resolved),
        "unresolved_ids": sorted(unresolved),
        "error_ids": sorted(errors),
        "schema_version": 2,
        "unstopped_instances": 0,
        "unstopped_containers": [],
        "unremoved_images": [],
    }


def _quoted(words: Iterable[str]) -> str:
    return " ".join(shlex.quote(word) for word in words)
