"""The evaluator's sandbox settings: what `swebench eval`'s flags ask for reaches the sandboxes the tests run in."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

from codemonkeys.config import SandboxSettings, Settings
from codemonkeys.sandbox.base import SandboxError
from codemonkeys.swebench import evaluate as evaluate_module
from codemonkeys.swebench.evaluate import evaluate
from codemonkeys.swebench.jobs import EvalJob, eval_job
from codemonkeys.swebench.models import EnvManifest, EnvSpec, EvalVerdict, SWEInstance
from codemonkeys.swebench.prepare import Prepared

SPEC = EnvSpec(repo="acme/widget", version="1.0", python="3.11", test_cmd="pytest -rA", log_parser="parse_log_pytest")
INSTANCE = SWEInstance(
    instance_id="acme__widget-1",
    repo="acme/widget",
    base_commit="0" * 40,
    problem_statement="widget is broken",
    version="1.0",
    FAIL_TO_PASS=["tests/test_widget.py::test_version"],
)
PATCH = "diff --git a/x b/x\n"


@pytest.mark.parametrize("network", [False, True])
async def test_the_sandbox_network_setting_reaches_the_eval_sandboxes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, network: bool
) -> None:
    """Off unless asked for. The official harness's containers have the network (psf/requests' tests call
    httpbin.org); `--sandbox-network` was accepted by `eval` and then ignored."""
    seen: list[SandboxSettings] = []

    async def provider(settings: SandboxSettings, problem: object, run_label: str) -> NoReturn:
        seen.append(settings)
        raise SandboxError("no sandbox in this test")

    monkeypatch.setattr(evaluate_module, "make_provider", provider)
    settings = Settings.model_validate({"sandbox": {"kind": "local", "sandbox_network": network}})
    manifest = EnvManifest(
        key=SPEC.key, kind="local", spec=SPEC, location=str(tmp_path), python_wanted="3.11", python_used="3.11.7"
    )
    prepared = Prepared(INSTANCE, tmp_path, SPEC, manifest, settings)
    verdicts = await evaluate(prepared, {"": PATCH}, tmp_path / "logs")
    assert [v.error for v in verdicts] == ["the sandbox did not start: no sandbox in this test"]
    assert [s.sandbox_network for s in seen] == [network]
    assert seen[0].test_timeout == settings.swebench.eval_timeout


async def test_empty_patches_are_graded_without_building_anything(tmp_path: Path) -> None:
    """The official harness counts an empty patch and never runs it: no repository or environment is needed,
    so an instance whose repository is nowhere still gets its empty verdicts, and a non-empty patch of it the
    preparation's error."""
    lost = INSTANCE.model_copy(update={"repo": "acme/nowhere"})
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "repos" / "acme+nowhere.git")], check=True)
    settings = Settings.model_validate(
        {
            "run_dir": str(tmp_path / "run"),
            "swebench": {"env": "local", "repos_dir": str(tmp_path / "repos"), "env_cache": str(tmp_path / "envs")},
        }
    )
    only_empty = await eval_job(EvalJob(instance=lost, patches={"": "", "candidate-1": "\n"}), settings)
    assert only_empty == [
        EvalVerdict(instance_id=lost.instance_id, candidate=""),
        EvalVerdict(instance_id=lost.instance_id, candidate="candidate-1"),
    ]
    mixed = await eval_job(EvalJob(instance=lost, patches={"": "", "candidate-1": PATCH}), settings)
    assert mixed[0] == EvalVerdict(instance_id=lost.instance_id, candidate="")
    assert mixed[1].candidate == "candidate-1" and mixed[1].patch_exists and "is not in" in mixed[1].error
    assert not (tmp_path / "envs").exists()
