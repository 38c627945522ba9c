"""From a dataset instance to what the pipeline and the evaluator need: the repository at its commit, the
spec, a built and smoke-checked environment, and sandbox settings that use it. Shared by `run` and `eval`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from codemonkeys.config import Settings
from codemonkeys.problem import Problem
from codemonkeys.swebench.envs import EnvBuildError, ensure_environment, sandbox_settings
from codemonkeys.swebench.models import EnvManifest, EnvSpec, SWEInstance
from codemonkeys.swebench.repos import RepoError, repo_checkout
from codemonkeys.swebench.specs import SpecError, get_spec, load_spec_file


class PrepareError(Exception):
    """The instance cannot run here (no repository, no spec, an environment that does not build); the
    message names the instance and, for a failed build, the kept log."""


@dataclass(frozen=True)
class Prepared:
    instance: SWEInstance
    repo_path: Path
    spec: EnvSpec
    manifest: EnvManifest
    settings: Settings

    def problem(self) -> Problem:
        issue = self.instance.problem_statement.strip() or "(no problem statement)"
        return Problem(
            instance_id=self.instance.instance_id,
            repo_path=str(self.repo_path),
            commit=self.instance.base_commit,
            issue=issue + "\n",
        )


def clones_dir(settings: Settings) -> Path:
    """Where repositories are cloned when no `--repos` directory holds them: beside the runs, shared by all."""
    return settings.swebench.repos_dir or (settings.run_dir or Path("runs")).parent / "_repos"


async def prepare(instance: SWEInstance, settings: Settings) -> Prepared:
    iid = instance.instance_id
    try:
        repo_path = await asyncio.to_thread(
            repo_checkout, instance.repo, instance.base_commit, settings.swebench.repos_dir, clones_dir(settings)
        )
        extra = load_spec_file(settings.swebench.specs_file) if settings.swebench.specs_file else None
        spec = get_spec(instance, extra, repo_path)
        manifest = await ensure_environment(spec, instance, repo_path, settings)
    except EnvBuildError as exc:
        raise PrepareError(f"{iid}: the environment did not build: {exc} (log: {exc.log_path})") from exc
    except (RepoError, SpecError) as exc:
        raise PrepareError(f"{iid}: {exc}") from exc
    sandbox = sandbox_settings(manifest, settings.sandbox, instance, repo_path)
    return Prepared(instance, repo_path, spec, manifest, settings.model_copy(update={"sandbox": sandbox}))
