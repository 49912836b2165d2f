"""OpenAI-compatible embeddings: POST /v1/embeddings and POST /embeddings.

The openai package posts to `<base_url>/embeddings`, so both paths serve the same handler. Its
default `encoding_format` is base64 (little-endian float32), and it retries every 5xx: a client
mistake must therefore always be a 4xx here (the error handlers render these two paths in OpenAI's
`{"error": {"message", "type", "code"}}` style).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from app import tasks
from app.errors import EmptyInput, error_responses
from app.routes.common import cancel_on_disconnect, engine_of, json_response
from app.schemas import OpenAIErrorBody

router = APIRouter(tags=["openai"])

TokenIds = list[StrictInt]
EmbeddingInput = StrictStr | list[StrictStr] | TokenIds | list[TokenIds]


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"model": "distilbert-base-uncased", "input": "The food was delicious."}]},
    )

    input: EmbeddingInput = Field(
        description="A string, a list of strings, a list of token ids, or a list of lists of token ids."
    )
    model: str | None = Field(default=None, description="Echoed back; the server serves one model.")
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="`base64`: each embedding is little-endian float32 bytes, base64-encoded."
    )
    dimensions: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Keep the first N dimensions and re-normalize (at most the model's hidden size)."
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
    if any(not text for text in texts):
        raise EmptyInput("`input` contains an empty string")
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
    "responses": error_responses("empty", "tokenizer", "overloaded", "unhealthy", "backend", body=OpenAIErrorBody),
}


@router.post("/v1/embeddings", **_ROUTE)
@router.post("/embeddings", **_ROUTE)
async def create_embeddings(body: EmbeddingsRequest, request: Request) -> Response:
    engine = engine_of(request)
    texts, ids = split_input(body.input)
    engine.check_dimensions(body.dimensions)
    result = await cancel_on_disconnect(
        request, engine.embeddings(texts=texts) if texts else engine.embeddings(ids=ids)
    )
    # OpenAI's embeddings are unit length; shortened ones are truncated first, then re-normalized.
    vectors = [tasks.embedding(vector, True, body.dimensions) for vector in result.vectors]
    model = body.model or engine.manifest.model_id
    return json_response(response_content(vectors, result.token_counts, model, body.encoding_format), result.timings)
