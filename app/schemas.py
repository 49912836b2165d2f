"""Request and response models. Strict types: a wrong type is a 422 that names the field."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.model_config import SCHEMA_MAX_INPUTS, SCHEMA_MAX_TOKEN_IDS

# Capped lists: a huge list is one parse error, not thousands of per-item errors built on the event loop.
Texts = Annotated[list[str], Field(max_length=SCHEMA_MAX_INPUTS)]
TokenIdList = Annotated[list[int], Field(max_length=SCHEMA_MAX_TOKEN_IDS)]

MODEL_FIELD_DESCRIPTION = "The model to use (its id in /v1/models). Unset: the first model that serves this task."


class ModelRequest(BaseModel):
    # Unknown fields are ignored like TEI does (clients add options we do not know); types are strict.
    model_config = ConfigDict(strict=True, extra="ignore")

    model: str | None = Field(default=None, description=MODEL_FIELD_DESCRIPTION)


class FillMaskParameters(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    top_k: int = Field(default=5, description="Candidates per mask, highest score first.")
    targets: Texts | str | None = Field(
        default=None, description="Only score these tokens (a word outside the vocabulary uses its first piece)."
    )


class FillMaskRequest(ModelRequest):
    inputs: str | Texts = Field(description="Text(s) with at least one mask token each.")
    parameters: FillMaskParameters = Field(default_factory=FillMaskParameters)


class FillMaskCandidate(BaseModel):
    score: float
    token: int
    token_str: str
    sequence: str


class EmbedRequest(ModelRequest):
    inputs: str | Texts
    normalize: bool = Field(default=True, description="L2-normalize each embedding.")
    truncate: bool = Field(default=False, description="Cut inputs over the max length instead of refusing them.")
    truncation_direction: Literal["right", "left", "Right", "Left"] = Field(
        default="right", description="Which end to cut when truncating: right keeps the start."
    )
    dimensions: int | None = Field(default=None, description="Keep the first N dimensions (then normalize).")


class ErrorBody(BaseModel):
    """The error body on every route but the OpenAI ones."""

    error: str
    error_type: str = Field(description="The error kind (TEI's error_type vocabulary plus ours).")


class OpenAIError(BaseModel):
    message: str
    type: str = Field(description="OpenAI's error type, e.g. invalid_request_error.")
    code: str = Field(description="distilserve's error kind (TEI's error_type vocabulary).")


class OpenAIErrorBody(BaseModel):
    """The error body on /v1/embeddings and /embeddings, as the openai client reads it."""

    error: OpenAIError


class Health(BaseModel):
    status: Literal["ok", "unhealthy"]


class Ready(BaseModel):
    ready: bool
    reason: str | None = Field(default=None, description="Why not, for the first model that is not ready.")
    models: dict[str, str] | None = Field(default=None, description="Each model that is not ready, with why.")


class ModelInfo(BaseModel):
    """One served model (TEI's /info fields, per model)."""

    model_id: str
    model_sha: str | None = Field(description="Source revision, when the export knew it.")
    model_dtype: str
    model_type: dict[str, dict[str, str]]
    tasks: list[str]
    variant: str
    providers: list[str] = Field(description="Execution providers the session actually runs on.")
    requested_providers: list[str]
    io_binding: bool
    padding_free: bool = Field(description="True when the backend runs batches without padding.")
    pooling: str
    hidden_size: int
    max_input_length: int
    max_batch_tokens: int
    max_batch_requests: int
    max_client_batch_size: int
    max_concurrent_requests: int
    max_queue_ms: float | None
    max_top_k: int
    mask_token: str | None = Field(description="The token fill-mask inputs must contain; null without an MLM head.")
    demo: bool = Field(description="True for the offline demo model (an MLM head trained here, not the original).")
    model_selection_reason: str
    ready: bool


class Info(ModelInfo):
    """The first configured model's fields at the top level (what TEI clients read), then the server's,
    then every model."""

    tokenization_workers: int = Field(description="Threads that tokenize and post-process, off the event loop.")
    auto_truncate: bool
    version: str
    sha: str | None = Field(description="The server build's git commit (TEI's `sha`), from DISTILSERVE_BUILD_SHA; null if unset.")
    docker_label: str | None = Field(description="The image label (TEI's `docker_label`), from DISTILSERVE_DOCKER_LABEL.")
    models: list[ModelInfo] = Field(description="Every served model, the default (first) one included.")


class ModelCard(BaseModel):
    """OpenAI's model object, as GET /v1/models lists it."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="When the model was exported (Unix seconds).")
    owned_by: str
    tasks: list[str] = Field(description="What the model serves: embed, fill-mask (distilserve's addition).")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
