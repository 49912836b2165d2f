"""The one settings object. Every field is an env var `DISTILSERVE_<NAME>` and a `--<name>` flag.

The descriptions feed `python -m app --help` and the README table (`python -m app --settings-markdown`),
so they are written for an operator, not for a reader of this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.model_config import ModelOptions, comma_list

ENV_PREFIX = "DISTILSERVE_"


class Settings(BaseSettings, ModelOptions):
    """distilserve configuration: built once at start-up and passed explicitly.

    Server-wide fields are declared here; the per-model ones (providers, variant, batch and input
    limits) come from ModelOptions and are the defaults of every model the server loads.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    model_dir: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description=(
            "Exported model directories to serve (each has manifest.json), comma-separated; the flag repeats. "
            "Unset: chosen from model_source."
        ),
    )
    models_file: Path | None = Field(
        default=None,
        description="YAML file of per-model overrides keyed by model id (variant, providers, batch and input limits).",
    )
    model_source: str = Field(
        default="distilbert-base-uncased",
        description="Hub id or local checkpoint directory exported into cache_dir when model_dir is unset.",
    )
    cache_dir: Path = Field(
        default=Path("~/.cache/distilserve").expanduser(),
        description="Where exported models and TensorRT engines are cached.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description=(
            "When set, inference routes require `Authorization: Bearer <key>`, checked before the body is read "
            "(401). /health and /ready stay open."
        ),
    )
    protect_info_metrics: bool = Field(
        default=False,
        description=(
            "With api_key set, require the key on /info and /metrics too (model names, limits and traffic). Off: "
            "they stay open for Prometheus and the widget. Needs api_key."
        ),
    )
    host: str = Field(default="127.0.0.1", description="Interface to listen on (0.0.0.0 in containers).")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level.")
    build_sha: str | None = Field(default=None, description="Git commit the image was built from, reported as /info `sha` (set at image build).")
    docker_label: str | None = Field(default=None, description="Image label, reported as /info `docker_label` (set at image build).")
    trt_engine_cache_dir: Path | None = Field(
        default=None, description="TensorRT engine and timing cache directory. Unset: <cache_dir>/tensorrt."
    )
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After seconds sent with a 429.")
    max_body_bytes: int = Field(default=2 << 20, ge=1, description="Largest request body; larger gets 413.")
    max_connections: int = Field(
        default=1024,
        ge=1,
        description=(
            "Most client connections held at once, lowered to fit the process's descriptor limit. At the limit the "
            "one that has waited longest on its client (a second or more) is closed for a new one; if none has, "
            "new clients wait in the listen backlog."
        ),
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Seconds a connection has to send a complete request head, from opening (or from the end of its "
            "keep-alive wait); then 408 and close, or a close alone if it sent nothing."
        ),
    )
    body_timeout_s: float = Field(
        default=20.0,
        gt=0,
        description="Seconds a request has to deliver its whole body once its head has arrived; then 408 and close.",
    )
    keep_alive_s: int = Field(
        default=5,
        ge=1,
        description=(
            "Seconds an idle connection stays open for its next request (above a load balancer's idle timeout "
            "when there is one)."
        ),
    )
    graceful_shutdown_timeout_s: int = Field(
        default=25,
        ge=1,
        description=(
            "On SIGTERM, seconds to let in-flight and queued requests finish; what is left is answered 503 and "
            "the process exits 0. Keep it below the orchestrator's grace period (the k8s base: 40 s, 5 of them preStop)."
        ),
    )
    worker_threads: int = Field(
        default=2,
        ge=1,
        le=64,
        description=(
            "Threads for tokenization, fill-mask decoding and large responses, so the event loop only parses, "
            "admits and awaits (shared by all models)."
        ),
    )

    @field_validator("model_dir", mode="before")
    @classmethod
    def _split_model_dirs(cls, value: object) -> object:
        return comma_list(str(value) if isinstance(value, Path) else value)

    @field_validator("model_dir")
    @classmethod
    def _expand_all(cls, value: list[Path]) -> list[Path]:
        return [path.expanduser() for path in value]

    @field_validator("cache_dir", "trt_engine_cache_dir", "models_file")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @model_validator(mode="after")
    def _protection_needs_a_key(self) -> Settings:
        if self.protect_info_metrics and (self.api_key is None or not self.api_key.get_secret_value()):
            raise ValueError("protect_info_metrics is set but api_key is not: there is no key to require")
        return self

    @property
    def trt_cache_path(self) -> Path:
        return self.trt_engine_cache_dir or self.cache_dir / "tensorrt"


def setting_fields() -> list[tuple[str, FieldInfo]]:
    """Every setting, the server-wide ones first, then the per-model defaults (for --help and the README)."""
    fields = Settings.model_fields
    server = [name for name in fields if name not in ModelOptions.model_fields]
    return [(name, fields[name]) for name in server + list(ModelOptions.model_fields)]


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def settings_markdown() -> str:
    """The README's settings table, generated from the fields so the two cannot drift."""
    lines = ["| env var | flag | default | description |", "|---|---|---|---|"]
    for name, field in setting_fields():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, list):
            shown = ",".join(default)
        elif isinstance(default, Path):
            shown = str(default).replace(str(Path.home()), "~")
        else:
            shown = "" if default is None else str(default)
        flag = "--" + name.replace("_", "-")
        lines.append(f"| `{env_name(name)}` | `{flag}` | {f'`{shown}`' if shown else '(unset)'} | {field.description} |")
    return "\n".join(lines) + "\n"
