"""Evaluation: each patch on a fresh copy of the instance in its environment, the instance's test patch on top,
its test command for FAIL_TO_PASS and PASS_TO_PASS with no network, the log graded by the official rules."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from codemonkeys.jsonfiles import atomic_write_text
from codemonkeys.sandbox.base import PatchError, Sandbox, SandboxError, SandboxProvider
from codemonkeys.sandbox.factory import make_provider
from codemonkeys.swebench import grading
from codemonkeys.swebench.models import EvalVerdict
from codemonkeys.swebench.prepare import Prepared

log = logging.getLogger("codemonkeys.swebench")

WORK = ".codemonkeys-eval"
EVAL_OUTPUT_LIMIT = 50_000_000  # the whole log: the parsers need every test line, not a middle-cut excerpt
FUZZY_APPLY = "patch --batch --fuzz=5 -p1 -i"  # the official harness's last resort after `git apply`


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:80] or "patch"


async def evaluate(prepared: Prepared, patches: dict[str, str], log_dir: Path) -> list[EvalVerdict]:
    """One verdict per patch (keyed by candidate name; "" is the submitted prediction). Every patch gets a
    sandbox of its own, made from the instance's pristine tree. The tests get the network only when the
    settings ask for it (`--sandbox-network`), as the official harness's containers have it."""
    instance, timeout = prepared.instance, prepared.settings.swebench.eval_timeout
    sandbox_settings = prepared.settings.sandbox.model_copy(
        update={"output_limit": EVAL_OUTPUT_LIMIT, "test_timeout": timeout}
    )
    verdicts: list[EvalVerdict] = []
    empty = {name: patch for name, patch in patches.items() if not patch.strip()}
    for name, patch in empty.items():
        verdicts.append(grading.grade(instance, prepared.spec, None, patch, candidate=name))
    if len(empty) == len(patches):
        return verdicts
    label = f"eval-{_slug(instance.instance_id)}"
    try:
        provider = await make_provider(sandbox_settings, prepared.problem(), run_label=label)
    except SandboxError as exc:
        why = f"the sandbox did not start: {exc}"
        return verdicts + [
            EvalVerdict(instance_id=instance.instance_id, candidate=name, patch_exists=True, error=why)
            for name in patches
            if name not in empty
        ]
    try:
        for name, patch in patches.items():
            if name not in empty:
                verdicts.append(await _evaluate_one(provider, prepared, name, patch, log_dir, timeout))
    finally:
        await provider.aclose()
    return verdicts


async def _evaluate_one(
    provider: SandboxProvider, prepared: Prepared, name: str, patch: str, log_dir: Path, timeout: float
) -> EvalVerdict:
    instance = prepared.instance
    log_path = log_dir / _slug(instance.instance_id) / f"{_slug(name or 'prediction')}.log"
    try:
        async with await provider.open(f"eval-{_slug(name or 'prediction')}") as sandbox:
            text = await _run(sandbox, prepared, patch, timeout)
    except SandboxError as exc:
        return EvalVerdict(
            instance_id=instance.instance_id, candidate=name, patch_exists=True, error=f"the sandbox failed: {exc}"
        )
    atomic_write_text(log_path, text)
    verdict = grading.grade(instance, prepared.spec, text, patch, candidate=name, log_path=str(log_path))
    log.info("eval %s %s: %s", instance.instance_id, name or "prediction", "resolved" if verdict.resolved else "not")
    return verdict


async def _run(sandbox: Sandbox, prepared: Prepared, patch: str, timeout: float) -> str:
    """The log the official harness would write: the patch applied (or the failure marker), then the tests."""
    await sandbox.reset()
    applied = await _apply(sandbox, patch)
    if applied is not None:
        return f"{grading.APPLY_PATCH_FAIL}\n{applied}\n"
    instance, spec = prepared.instance, prepared.spec
    await sandbox.write_file(f"{WORK}/test.patch", instance.test_patch)
    await sandbox.write_file(f"{WORK}/eval.sh", grading.eval_script(instance, spec, f"{WORK}/test.patch"))
    result = await sandbox.run(f"bash {WORK}/eval.sh", timeout)
    text = f"{grading.APPLY_PATCH_PASS}\n{result.output}"
    if result.timed_out:
        text += f"\n{grading.TESTS_TIMEOUT} after {timeout:.0f}s\n"
    return text


async def _apply(sandbox: Sandbox, patch: str) -> str | None:
    """None when the patch applied; else why not, after `git apply` and a fuzzy `patch` both refused."""
    try:
        await sandbox.apply_patch(patch)
        return None
    except PatchError as exc:
        first = str(exc)
    await sandbox.write_file(f"{WORK}/candidate.patch", patch)
    fuzzy = await sandbox.run(f"{FUZZY_APPLY} {WORK}/candidate.patch", 120)
    if fuzzy.exit_code == 0:
        return None
    await sandbox.reset()
    return f"git apply: {first}\npatch: {fuzzy.output.strip()}"
