"""Per-model configuration: what each model's runtime is built from.

`ModelOptions` holds every setting that may differ between the models of one server (providers,
variant, batch and input limits). `Settings` inherits these fields, so each is also a server-wide
default with its env var and flag; the optional models file overrides them per model id:

    models:
      sentence-transformers/all-MiniLM-L6-v2:
        variant: int8
        max_batch_size: 16
      distilbert-base-uncased:
        providers: [cuda, cpu]

An id in the file that no served model has, or an unknown option, refuses start-up (a typo must not
silently leave a model on the defaults).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import NoDecode

# Short names an operator may type, mapped to onnxruntime's provider names.
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
KNOWN_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")

# Request schemas cap their lists at these sizes, so a huge list is refused while parsing (one error)
# instead of being validated item by item on the event loop. The per-model limits must fit under them.
SCHEMA_MAX_INPUTS = 4096
SCHEMA_MAX_TOKEN_IDS = 8192


def comma_list(value: object) -> object:
    """"a,b" -> ["a", "b"]; a list (a repeated flag) has each of its strings split the same way."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [part for item in value for part in comma_list(item)]  # type: ignore[union-attr]
    return value


class ModelOptions(BaseModel):
    """Options of one model's runtime. Every field is also a server-wide default in Settings."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    providers: Annotated[list[str], NoDecode] | None = Field(
        default=None,
        description=(
            "onnxruntime execution providers in order of preference, comma-separated "
            "(short names cpu, cuda, tensorrt accepted). Unavailable ones are skipped with a warning. "
            "Unset: CUDA then CPU where this onnxruntime build has CUDA, else CPU."
        ),
    )
    strict_providers: bool = Field(
        default=False,
        description="Fail start-up unless the first requested provider is the one actually active.",
    )
    variant: Literal["fp32", "fp16", "int8", "fp32-unfused", "fp16-packed"] | None = Field(
        default=None,
        description=(
            "Model variant to load. Unset: fp16 on CUDA (fp32-unfused, else fp32, on TensorRT, which builds its "
            "own fp16 engine), fp32 on CPU (exact; int8 is opt-in). fp16-packed (CUDA only) skips padding."
        ),
    )
    intra_op_threads: int = Field(
        default=0, ge=0, description="onnxruntime intra-op threads; 0 lets onnxruntime use one per physical core."
    )
    inference_workers: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description=(
            "Batches run at once on the model's one session, each on its own thread (the intra-op threads are "
            "shared). Unset: 2 on CPU, so one input uses every core and, under load, two small batches of "
            "similar length keep both busy; 1 on CUDA and TensorRT."
        ),
    )
    intra_op_spinning: bool = Field(
        default=False,
        description=(
            "Let idle onnxruntime threads spin between operators: slightly lower latency on a dedicated machine, "
            "but a core stays busy waiting that tokenization and other processes could use."
        ),
    )
    device_id: int = Field(default=0, ge=0, description="GPU index for the CUDA and TensorRT providers.")
    io_binding: bool = Field(default=True, description="Use onnxruntime IO binding when CUDA is the active provider.")
    trt_fp16: bool = Field(default=True, description="Let TensorRT build fp16 engines.")
    cuda_graph: bool = Field(
        default=False,
        description=(
            "CUDA provider: capture one CUDA graph per (batch, length) bucket and replay it; inputs are padded "
            "to the bucket's shape. Embedding-only models (fill-mask outputs vary in shape). Off until a GPU "
            "check shows it pays."
        ),
    )
    trt_workspace_bytes: int = Field(default=2 << 30, ge=0, description="TensorRT builder workspace limit.")

    max_batch_tokens: int = Field(
        default=8192,
        ge=1,
        description=(
            "Token budget of one batch: for a backend that pads, longest input in the batch x batch size; "
            "for a padding-free one, the sum of the inputs' tokens."
        ),
    )
    max_batch_size: int = Field(default=32, ge=1, description="Most inputs in one batch.")
    max_batch_mask_rows: int = Field(
        default=1024,
        ge=1,
        description=(
            "Most mask tokens in one fill-mask batch. Each costs a vocabulary-wide row of logits "
            "(about 120 KB for a 30k vocabulary), so this bounds a batch's memory."
        ),
    )
    max_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description=(
            "How long an input waits, from its arrival, for others to join its batch when a worker is free "
            "(a full batch goes at once; inputs left over by the last batch have waited already and go at once). "
            "0: a free worker takes what is queued at once, and batches form while workers are busy; measured on "
            "2 CPU cores, 1 ms of waiting added 1-3 ms to p50 at concurrency 1 and no throughput at 8-128."
        ),
    )
    max_queue: int = Field(
        default=2048,
        ge=1,
        description="Most inputs admitted (tokenizing, queued or running); beyond it requests get 429 at once.",
    )
    max_queue_ms: float | None = Field(
        default=3000.0,
        gt=0,
        description=(
            "Refuse (429) a request whose expected wait, from the tokens admitted ahead of it and the measured "
            "throughput, is longer than this. Unset: bound the queue by max_queue only."
        ),
    )
    max_inputs_per_request: int = Field(
        default=64, ge=1, le=SCHEMA_MAX_INPUTS, description="Most inputs in one request; more gets 422."
    )
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
        return comma_list(value)

    @field_validator("providers")
    @classmethod
    def _canonical_providers(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        names = [PROVIDER_ALIASES.get(name.lower(), name) for name in value]
        unknown = [name for name in names if name not in KNOWN_PROVIDERS]
        if unknown:
            raise ValueError(f"unknown provider(s) {unknown}; use {', '.join(KNOWN_PROVIDERS)} or cpu/cuda/tensorrt")
        if not names:
            raise ValueError("at least one provider is required")
        return list(dict.fromkeys(names))

    @model_validator(mode="after")
    def _consistent_limits(self) -> Any:
        if self.max_inputs_per_request > self.max_queue:
            raise ValueError("max_inputs_per_request must not exceed max_queue (such a request could never fit)")
        if self.max_input_length is not None and self.max_input_length > self.max_batch_tokens:
            raise ValueError("max_input_length must not exceed max_batch_tokens (a longest input must fit a batch)")
        return self

    def default_model_options(self) -> ModelOptions:
        """These options alone (on Settings: the server-wide defaults every model starts from)."""
        return ModelOptions.model_validate({name: getattr(self, name) for name in ModelOptions.model_fields})


class ModelsFileError(Exception):
    """The models file cannot be used; the message names the file and what is wrong."""


class _ModelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: dict[str, dict[str, Any]] = Field(default_factory=dict)


def read_models_file(path: Path) -> dict[str, dict[str, Any]]:
    """Per-model-id overrides from a YAML (or JSON) file; options are checked when applied."""
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as error:
        raise ModelsFileError(f"models file {path}: {error}".replace("\n", " ")) from None
    try:
        return _ModelsFile.model_validate(document or {}).models
    except ValidationError as error:
        raise ModelsFileError(f"models file {path}: {_one_line(error)}") from None


def options_for(model_id: str, defaults: ModelOptions, overrides: dict[str, dict[str, Any]]) -> ModelOptions:
    """The defaults with this model's overrides applied and the whole checked again."""
    try:
        return ModelOptions.model_validate(defaults.model_dump() | overrides.get(model_id, {}))
    except ValidationError as error:
        raise ModelsFileError(f"models file, model {model_id}: {_one_line(error)}") from None


def _one_line(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, item['loc'])) or 'file'}: {item['msg']}" for item in error.errors())
