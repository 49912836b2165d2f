"""OpenAI-compatible embeddings and model list: POST /v1/embeddings and POST /embeddings, GET /v1/models.

The openai package posts to `<base_url>/embeddings`, so both paths serve the same handler. Its
default `encoding_format` is base64 (little-endian float32), and it retries every 5xx: a client
mistake must therefore always be a 4xx here (the error handlers render these two paths in OpenAI's
`{"error": {"message", "type", "code"}}` style).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from app import tasks
from app.errors import EmptyInput, error_responses
from app.model_config import SCHEMA_MAX_INPUTS
from app.routes.common import cancel_on_disconnect, json_response, registry_of, runtime_for
from app.schemas import (
    INPUT_LIMITS,
    MODEL_FIELD_DESCRIPTION,
    Dimensions,
    InputText,
    InputTexts,
    ModelCard,
    ModelList,
    OpenAIErrorBody,
    TokenIdList,
)
from app.tokenizer import is_blank

router = APIRouter(tags=["openai"])

TokenIds = Annotated[TokenIdList, Field(json_schema_extra={"minItems": 1})]
EmbeddingInput = (
    InputText
    | InputTexts
    | TokenIds
    | Annotated[list[TokenIds], Field(max_length=SCHEMA_MAX_INPUTS, json_schema_extra={"minItems": 1})]
)


class EmbeddingsRequest(BaseModel):
    # Strict like every other request: "dimensions": "8" is a 422 here as on /embed.
    model_config = ConfigDict(
        strict=True,
        extra="ignore",
        json_schema_extra={"examples": [{"model": "distilbert-base-uncased", "input": "The food was delicious."}]},
    )

    input: EmbeddingInput = Field(
        description=(
            "A string, a list of strings, a list of token ids, or a list of lists of token ids (each id below "
            "the model's vocabulary size). " + INPUT_LIMITS
        )
    )
    model: str | None = Field(default=None, description=MODEL_FIELD_DESCRIPTION)
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="`base64`: each embedding is little-endian float32 bytes, base64-encoded."
    )
    dimensions: Dimensions | None = Field(
        default=None, description="Keep the first N dimensions and re-normalize; at most the model's `hidden_size` (/info)."
    )
    user: str | None = Field(default=None, description="Accepted and ignored.")


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="Floats, or a base64 string for encoding_format=base64.")


class Usage(BaseModel):
    prompt_tokens: int = Field(description="Tokens the model saw, special tokens included.")
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


def split_input(value: EmbeddingInput) -> tuple[list[str], list[list[int]]]:
    """(texts, token id lists): exactly one of the two is non-empty. Raises EmptyInput for nothing to embed."""
    if isinstance(value, str):
        texts, ids = [value], []
    elif not value:
        raise EmptyInput("`input` is an empty list")
    elif isinstance(value[0], str):
        texts, ids = [str(text) for text in value], []
    elif isinstance(value[0], int):
        texts, ids = [], [[int(token) for token in value]]  # type: ignore[union-attr]
    else:
        texts, ids = [], [list(map(int, row)) for row in value]  # type: ignore[arg-type]
    if any(is_blank(text) for text in texts):
        raise EmptyInput("`input` contains an empty or blank string")
    if ids and any(not row for row in ids):
        raise EmptyInput("`input` contains an empty list of token ids")
    return texts, ids


def encode_base64(vector: Sequence[float] | np.ndarray) -> str:
    """Little-endian float32 bytes, base64: what the openai client decodes with numpy's `<f4`."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def response_content(
    vectors: Sequence[Sequence[float]], token_counts: Sequence[int], model: str, encoding_format: str
) -> dict[str, Any]:
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": encode_base64(vector) if encoding_format == "base64" else list(vector),
        }
        for index, vector in enumerate(vectors)
    ]
    tokens = int(sum(token_counts))
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


_ROUTE: dict[str, Any] = {
    "response_model": EmbeddingsResponse,
    "summary": "Create embeddings (OpenAI's API): unit-length, optionally shortened to `dimensions`",
    "responses": error_responses(
        "empty", "tokenizer", "model_not_found", "overloaded", "unhealthy", "backend", body=OpenAIErrorBody
    ),
}


@router.post("/v1/embeddings", **_ROUTE)
@router.post("/embeddings", **_ROUTE)
async def create_embeddings(body: EmbeddingsRequest, request: Request) -> Response:
    runtime = runtime_for(request, body.model, None, "embed")
    texts, ids = split_input(body.input)
    runtime.check_dimensions(body.dimensions)
    result = await cancel_on_disconnect(
        request, runtime.embeddings(texts=texts) if texts else runtime.embeddings(ids=ids)
    )

    def content() -> dict[str, Any]:
        # OpenAI's embeddings are unit length; shortened ones are truncated first, then re-normalized.
        vectors = [tasks.embedding(vector, True, body.dimensions) for vector in result.vectors]
        return response_content(vectors, result.token_counts, runtime.model_id, body.encoding_format)

    return await json_response(request, content, result.timings, size=result.vectors.size)


def _created(created_at: str) -> int:
    """The manifest's ISO timestamp as Unix seconds (0 when it does not parse)."""
    try:
        return int(datetime.fromisoformat(created_at.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


@router.get("/v1/models", response_model=ModelList, summary="List the served models (OpenAI's API)")
@router.get("/models", response_model=ModelList, include_in_schema=False)
async def list_models(request: Request) -> ModelList:
    cards = [
        ModelCard(
            id=runtime.model_id,
            created=_created(runtime.manifest.created_at),
            owned_by="distilserve",
            tasks=runtime.tasks,
        )
        for runtime in registry_of(request)
    ]
    return ModelList(data=cards)
