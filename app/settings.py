"""The one settings object. Every field is an env var `DISTILSERVE_<NAME>` and a `--<name>` flag.

The descriptions feed `python -m app --help` and the README table (`python -m app --settings-markdown`),
so they are written for an operator, not for a reader of this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "DISTILSERVE_"

# Short names an operator may type, mapped to onnxruntime's provider names.
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
KNOWN_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """distilserve configuration: built once at start-up and passed explicitly."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    model_dir: Path | None = Field(
        default=None,
        description="Exported model directory to serve (has manifest.json). Unset: chosen from model_source.",
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
        description="When set, inference routes require `Authorization: Bearer <key>`.",
    )
    host: str = Field(default="127.0.0.1", description="Interface to listen on (0.0.0.0 in containers).")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level.")
    build_sha: str | None = Field(default=None, description="Git commit the image was built from, reported as /info `sha` (set at image build).")
    docker_label: str | None = Field(default=None, description="Image label, reported as /info `docker_label` (set at image build).")

    providers: Annotated[list[str], NoDecode] = Field(
        default=["CUDAExecutionProvider", "CPUExecutionProvider"],
        description=(
            "onnxruntime execution providers in order of preference, comma-separated "
            "(short names cpu, cuda, tensorrt accepted). Unavailable ones are skipped with a warning."
        ),
    )
    strict_providers: bool = Field(
        default=False,
        description="Fail start-up unless the first requested provider is the one actually active.",
    )
    variant: Literal["fp32", "fp16", "int8"] | None = Field(
        default=None,
        description=(
            "Model variant to load. Unset: fp16 on CUDA (fp32 on TensorRT, which builds its own fp16 engine), "
            "fp32 on CPU (exact; int8 is opt-in)."
        ),
    )
    intra_op_threads: int = Field(
        default=0, ge=0, description="onnxruntime intra-op threads; 0 lets onnxruntime use one per physical core."
    )
    device_id: int = Field(default=0, ge=0, description="GPU index for the CUDA and TensorRT providers.")
    io_binding: bool = Field(default=True, description="Use onnxruntime IO binding when CUDA is the active provider.")
    trt_fp16: bool = Field(default=True, description="Let TensorRT build fp16 engines.")
    trt_engine_cache_dir: Path | None = Field(
        default=None, description="TensorRT engine and timing cache directory. Unset: <cache_dir>/tensorrt."
    )
    trt_workspace_bytes: int = Field(default=2 << 30, ge=0, description="TensorRT builder workspace limit.")

    max_batch_tokens: int = Field(
        default=8192,
        ge=1,
        description="Padded-token budget of one batch: longest input in the batch x batch size.",
    )
    max_batch_size: int = Field(default=32, ge=1, description="Most inputs in one batch.")
    max_wait_ms: float = Field(
        default=1.0,
        ge=0,
        description="How long an idle worker waits for more inputs before running a batch that is not full.",
    )
    max_queue: int = Field(
        default=2048, ge=1, description="Most inputs waiting in the queue; beyond it requests get 429 at once."
    )
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After seconds sent with a 429.")
    max_body_bytes: int = Field(default=2 << 20, ge=1, description="Largest request body; larger gets 413.")
    max_inputs_per_request: int = Field(default=64, ge=1, description="Most inputs in one request; more gets 422.")
    max_input_length: int | None = Field(
        default=None,
        ge=3,
        description="Longest input in tokens, special tokens included. Unset: the manifest's max_length (the cap).",
    )
    max_top_k: int = Field(default=100, ge=1, description="Largest fill-mask top_k accepted; larger gets 422.")
    warmup: bool = Field(
        default=True, description="Run the largest configured batch shapes once before reporting ready."
    )

    @field_validator("providers", mode="before")
    @classmethod
    def _split_providers(cls, value: object) -> object:
        return _comma_list(value)

    @field_validator("providers")
    @classmethod
    def _canonical_providers(cls, value: list[str]) -> list[str]:
        names = [PROVIDER_ALIASES.get(name.lower(), name) for name in value]
        unknown = [name for name in names if name not in KNOWN_PROVIDERS]
        if unknown:
            raise ValueError(f"unknown provider(s) {unknown}; use {', '.join(KNOWN_PROVIDERS)} or cpu/cuda/tensorrt")
        if not names:
            raise ValueError("at least one provider is required")
        return list(dict.fromkeys(names))

    @field_validator("model_dir", "cache_dir", "trt_engine_cache_dir")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @model_validator(mode="after")
    def _consistent_limits(self) -> Settings:
        if self.max_inputs_per_request > self.max_queue:
            raise ValueError("max_inputs_per_request must not exceed max_queue (such a request could never fit)")
        if self.max_input_length is not None and self.max_input_length > self.max_batch_tokens:
            raise ValueError("max_input_length must not exceed max_batch_tokens (a longest input must fit a batch)")
        return self

    @property
    def trt_cache_path(self) -> Path:
        return self.trt_engine_cache_dir or self.cache_dir / "tensorrt"


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def settings_markdown() -> str:
    """The README's settings table, generated from the fields so the two cannot drift."""
    lines = ["| env var | flag | default | description |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, list):
            shown = ",".join(default)
        elif isinstance(default, Path):
            shown = str(default).replace(str(Path.home()), "~")
        else:
            shown = "" if default is None else str(default)
        flag = "--" + name.replace("_", "-")
        lines.append(f"| `{env_name(name)}` | `{flag}` | {f'`{shown}`' if shown else '(unset)'} | {field.description} |")
    return "\n".join(lines) + "\n"
