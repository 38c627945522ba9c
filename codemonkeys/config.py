"""Settings: command-line flags override `CODEMONKEYS_*` environment variables, which override a TOML
file, which overrides the defaults below."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

SandboxKind = Literal["auto", "local", "docker"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CODEMONKEYS_", extra="forbid", validate_assignment=True)

    models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["anthropic/claude-sonnet-4-5"], min_length=1
    )
    relevance_model: str | None = None
    api_base: str | None = None
    temperature: float = 1.0
    max_output_tokens: int = 8192

    samples: int = Field(10, ge=1)
    iterations: int = Field(8, ge=1)
    rankings: int = Field(3, ge=1)
    top_k: int = Field(3, ge=1)
    context_tokens: int = Field(120_000, ge=1000)
    max_file_tokens: int = Field(50_000, ge=100)
    selection_iterations: int = Field(8, ge=1)

    budget_usd: float | None = Field(None, gt=0)
    run_budget_usd: float | None = Field(None, gt=0)
    model_concurrency: int = Field(32, ge=1)
    max_retries: int = Field(6, ge=0)
    request_timeout: float = Field(600.0, gt=0)
    breaker_failures: int = Field(
        5, ge=1, description="failed calls in a row after which a model is not called again in this run"
    )
    retry_base_delay: float = Field(1.0, gt=0, description="seconds before the first retry; doubles per attempt")
    prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="USD per million (input, output) tokens, for models litellm has no price for",
    )

    sandbox: SandboxKind = "auto"
    sandbox_network: bool = False
    test_timeout: float = Field(100.0, gt=0)
    output_limit: int = Field(20_000, ge=200)
    python: str = "python"
    image: str | None = None
    setup: str | None = None
    max_containers: int = Field(default_factory=lambda: max(2, (os.cpu_count() or 2) * 2), ge=1)
    docker_cpus: float = Field(2.0, gt=0, description="CPUs per docker sandbox")
    docker_memory: str = Field("4g", description="memory per docker sandbox (no swap on top)")
    docker_pids: int = Field(1024, ge=16, description="processes per docker sandbox")
    workdir: str | None = Field(
        None, description="where --image already holds the repository (SWE-bench: /testbed); unset: it is copied in"
    )
    command_prefix: str | None = Field(
        None,
        description="shell prefix setting up the environment once, e.g. 'source /opt/miniconda3/bin/activate testbed &&'",
    )

    run_dir: Path | None = None

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [m.strip() for m in value.split(",") if m.strip()]
        return value

    @property
    def relevance(self) -> str:
        return self.relevance_model or self.models[0]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = _TOML_FILE.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)


class _TomlPath:
    """Carries the `--config` path into `settings_customise_sources`, which pydantic calls as a classmethod."""

    def __init__(self) -> None:
        self.path: Path | None = None

    def get(self) -> Path | None:
        return self.path


_TOML_FILE = _TomlPath()


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Flags arrive as `overrides`; those left as None fall through to env, TOML and defaults."""
    if config_file is not None and not config_file.is_file():
        raise FileNotFoundError(f"config file not found: {config_file}")
    _TOML_FILE.path = config_file
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    finally:
        _TOML_FILE.path = None
