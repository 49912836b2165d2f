"""TEI's extras: POST /tokenize and POST /decode, in text-embeddings-inference's request and response shapes.

Also `error_responses`, which documents a route's errors in OpenAPI straight from the one error table
(app.errors.ERROR_TABLE), so /docs cannot drift from what the handlers send.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from app.errors import ERROR_TABLE, InvalidInput
from app.routes.common import engine_of, json_response
from app.schemas import ErrorBody

router = APIRouter(tags=["tokenizer"])

# What can go wrong on any inference route, beyond the route's own kinds.
COMMON_ERRORS = ("validation", "payload_too_large", "unauthorized", "internal")


def error_responses(*kinds: str, body: type[BaseModel] = ErrorBody) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: one entry per HTTP status, listing the error kinds that produce it."""
    by_status: dict[int, list[str]] = {}
    for kind in dict.fromkeys(kinds + COMMON_ERRORS):
        by_status.setdefault(ERROR_TABLE[kind][0], []).append(kind)
    return {
        status: {"model": body, "description": "error kind: " + ", ".join(f"`{kind}`" for kind in kinds_here)}
        for status, kinds_here in sorted(by_status.items())
    }


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class TokenizeRequest(_Request):
    inputs: str | list[str] = Field(examples=["test"])
    add_special_tokens: bool = Field(default=True, description="Add [CLS] and [SEP] as the model sees them.")


class SimpleToken(BaseModel):
    id: int
    text: str = Field(description="The input's text for this token; the token itself for special tokens.")
    special: bool
    start: int | None = Field(description="Character offset in the input; null for special tokens.")
    stop: int | None


class DecodeRequest(_Request):
    ids: list[int] | list[list[int]] = Field(examples=[[101, 3231, 102]])
    skip_special_tokens: bool = True


@router.post(
    "/tokenize",
    response_model=list[list[SimpleToken]],
    summary="Tokenize inputs (TEI's /tokenize): one token list per input",
    responses=error_responses("tokenizer"),
)
async def tokenize(body: TokenizeRequest, request: Request) -> Response:
    engine = engine_of(request)
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    engine.check_limits(len(texts))
    result = []
    for text in texts:
        tokens = engine.tokenizer.tokenize(text, add_special_tokens=body.add_special_tokens)
        result.append(
            [
                {
                    "id": token.id,
                    # TEI reports the covered input text ("ing" for "##ing"), and the token for specials.
                    "text": token.text if token.start is None or token.stop is None else text[token.start : token.stop],
                    "special": token.special,
                    "start": token.start,
                    "stop": token.stop,
                }
                for token in tokens
            ]
        )
    return json_response(result)


@router.post(
    "/decode",
    response_model=list[str],
    summary="Decode token ids to text (TEI's /decode): one string per id list",
    responses=error_responses(),
)
async def decode(body: DecodeRequest, request: Request) -> Response:
    engine = engine_of(request)
    single = not body.ids or isinstance(body.ids[0], int)
    sequences: list[list[int]] = [body.ids] if single else body.ids  # type: ignore[list-item,assignment]
    engine.check_limits(len(sequences))
    vocab_size = engine.tokenizer.vocab_size
    for index, ids in enumerate(sequences):
        if any(not 0 <= token < vocab_size for token in ids):
            raise InvalidInput(f"ids {index} has token ids outside the vocabulary [0, {vocab_size})")
    return json_response([engine.tokenizer.decode(ids, body.skip_special_tokens) for ids in sequences])
