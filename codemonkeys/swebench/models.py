"""What crosses the SWE-bench modules' boundaries or touches disk: instances, environment recipes and
manifests, and evaluation verdicts."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

EnvKind = Literal["docker", "local"]


class SWEInstance(BaseModel):
    """One benchmark task as the dataset gives it; test lists arrive JSON-encoded in the public release."""

    model_config = ConfigDict(extra="ignore")

    instance_id: str = Field(min_length=1)
    repo: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    base_commit: str = Field(min_length=4)
    problem_statement: str
    version: str = ""
    patch: str = ""
    test_patch: str = ""
    FAIL_TO_PASS: list[str] = Field(default_factory=list)
    PASS_TO_PASS: list[str] = Field(default_factory=list)
    environment_setup_commit: str = ""
    hints_text: str = ""
    created_at: str = ""

    @field_validator("FAIL_TO_PASS", "PASS_TO_PASS", mode="before")
    @classmethod
    def _decode_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else []
        return value

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        """Some dumps store versions as floats (`3.1`); the specs key them as text."""
        return str(value) if isinstance(value, int | float) else value

    @property
    def env_key(self) -> str:
        return env_key(self.repo, self.version)


def env_key(repo: str, version: str) -> str:
    """The file- and tag-safe name of one (repo, version) environment."""
    return re.sub(r"[^a-z0-9_.-]+", "-", f"{repo.replace('/', '__')}-{version}".lower())


class EnvSpec(BaseModel):
    """The recipe of one (repo, version) environment, from the official specs or a user's spec file."""

    model_config = ConfigDict(extra="forbid")

    repo: str
    version: str
    python: str = Field(description="the Python version the spec asks for, e.g. 3.9")
    pre_install: list[str] = Field(default_factory=list, description="shell commands before the packages")
    packages: str = Field("", description="'requirements.txt', 'environment.yml' or conda/pip package names")
    requirements: list[str] = Field(
        default_factory=list, description="requirement lines read from the repository when packages names a file"
    )
    pip_packages: list[str] = Field(default_factory=list)
    install: str = Field("", description="installs the repository itself, run in its root")
    test_cmd: str
    eval_commands: list[str] = Field(default_factory=list, description="shell commands before the tests run")
    log_parser: str = Field(description="name of the official log parser for this repository's test output")
    source: Literal["official", "file"] = "official"

    @property
    def key(self) -> str:
        return env_key(self.repo, self.version)


class PackageChoice(BaseModel):
    """One requirement and what was installed for it; `note` says why they differ."""

    requested: str
    installed: str
    note: str = ""


class SmokeCheck(BaseModel):
    ok: bool
    command: str
    output: str = ""


class EnvManifest(BaseModel):
    """A built environment: where it is and every way it deviates from its spec."""

    key: str
    kind: EnvKind
    spec: EnvSpec
    location: str = Field(description="local: the virtualenv directory; docker: the image tag")
    official_image: bool = False
    python_wanted: str
    python_used: str
    packages: list[PackageChoice] = Field(default_factory=list)
    deviations: list[str] = Field(default_factory=list)
    smoke: SmokeCheck | None = None
    build_log: str = ""
    seconds: float = 0.0


class TestsStatus(BaseModel):
    """The official report's `tests_status`: per group, which tests succeeded and which failed."""

    FAIL_TO_PASS: dict[str, list[str]] = Field(default_factory=lambda: {"success": [], "failure": []})
    PASS_TO_PASS: dict[str, list[str]] = Field(default_factory=lambda: {"success": [], "failure": []})
    FAIL_TO_FAIL: dict[str, list[str]] = Field(default_factory=lambda: {"success": [], "failure": []})
    PASS_TO_FAIL: dict[str, list[str]] = Field(default_factory=lambda: {"success": [], "failure": []})


class EvalVerdict(BaseModel):
    """One patch evaluated on one instance, in the official per-instance report's terms plus why it errored."""

    instance_id: str
    candidate: str = Field("", description="empty for the submitted prediction, else the run's candidate id")
    patch_is_None: bool = False
    patch_exists: bool = False
    patch_successfully_applied: bool = False
    resolved: bool = False
    tests_status: TestsStatus | None = None
    error: str = Field("", description="why no verdict could be reached (environment, patch, timeout)")
    log_path: str = ""
