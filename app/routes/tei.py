"""TEI's extras: POST /tokenize and POST /decode, in text-embeddings-inference's request and response shapes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from app.errors import error_responses
from app.routes.common import engine_of, json_response

router = APIRouter(tags=["tokenizer"])


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
    for index, text in enumerate(texts):
        tokens = engine.tokenizer.tokenize(text, add_special_tokens=body.add_special_tokens, label=f"input {index}")
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
    for index, ids in enumerate(sequences):
        engine.tokenizer.check_ids(ids, f"ids {index}")
    return json_response([engine.tokenizer.decode(ids, body.skip_special_tokens) for ids in sequences])
