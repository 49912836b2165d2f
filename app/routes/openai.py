"""OpenAI-compatible embeddings: POST /v1/embeddings and POST /embeddings.

The openai package posts to `<base_url>/embeddings`, so both paths serve the same handler. Its
default `encoding_format` is base64 (little-endian float32), and it retries every 5xx: a client
mistake must therefore always be a 4xx here (the error handlers render these two paths in OpenAI's
`{"error": {"message", "type", "code"}}` style).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from app.errors import EmptyInput, InvalidInput

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


def reduce_dimensions(embeddings: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Keep the first `dimensions` columns and L2-normalize each row (OpenAI's shortened embeddings).

    Without `dimensions` the rows are only normalized: OpenAI's embeddings are unit length.
    """
    hidden = embeddings.shape[-1]
    if dimensions is not None:
        if dimensions > hidden:
            raise InvalidInput(f"`dimensions` is {dimensions} but this model's embeddings have {hidden} dimensions")
        embeddings = embeddings[..., :dimensions]
    norms = np.linalg.norm(embeddings, axis=-1, keepdims=True)
    return (embeddings / np.maximum(norms, np.finfo(np.float32).tiny)).astype(np.float32)


def encode_base64(vector: np.ndarray) -> str:
    """Little-endian float32 bytes, base64: what the openai client decodes with numpy's `<f4`."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def build_response(
    embeddings: np.ndarray, token_counts: Sequence[int], model: str, encoding_format: str
) -> EmbeddingsResponse:
    data = [
        Embedding(index=index, embedding=encode_base64(row) if encoding_format == "base64" else row.tolist())
        for index, row in enumerate(embeddings)
    ]
    tokens = int(sum(token_counts))
    return EmbeddingsResponse(data=data, model=model, usage=Usage(prompt_tokens=tokens, total_tokens=tokens))
