"""TEI's extras: POST /tokenize and POST /decode, in text-embeddings-inference's request and response shapes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from app.errors import error_responses
from app.registry import ANY_TASK
from app.routes.common import ModelQuery, json_response, runtime_for
from app.schemas import ModelRequest, Texts, TokenIdList
from app.tokenizer import Token

router = APIRouter(tags=["tokenizer"])


class TokenizeRequest(ModelRequest):
    inputs: str | Texts = Field(examples=["test"])
    add_special_tokens: bool = Field(default=True, description="Add [CLS] and [SEP] as the model sees them.")


class SimpleToken(BaseModel):
    id: int
    text: str = Field(description="The input's text for this token; the token itself for special tokens.")
    special: bool
    start: int | None = Field(description="Character offset in the input; null for special tokens.")
    stop: int | None


class DecodeRequest(ModelRequest):
    ids: TokenIdList | list[TokenIdList] = Field(examples=[[101, 3231, 102]])
    skip_special_tokens: bool = True


def token_json(text: str, token: Token) -> dict[str, object]:
    # TEI reports the covered input text ("ing" for "##ing"), and the token for specials.
    covered = token.text if token.start is None or token.stop is None else text[token.start : token.stop]
    return {"id": token.id, "text": covered, "special": token.special, "start": token.start, "stop": token.stop}


@router.post(
    "/tokenize",
    response_model=list[list[SimpleToken]],
    summary="Tokenize inputs (TEI's /tokenize): one token list per input",
    responses=error_responses("tokenizer", "model_not_found", "overloaded"),
)
async def tokenize(body: TokenizeRequest, request: Request, model: ModelQuery = None) -> Response:
    runtime = runtime_for(request, body.model, model, ANY_TASK)
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    tokenized = await runtime.tokenize(texts, body.add_special_tokens)
    return await json_response(
        request,
        lambda: [[token_json(text, token) for token in tokens] for text, tokens in zip(texts, tokenized, strict=True)],
        size=5 * sum(map(len, tokenized)),
    )


@router.post(
    "/decode",
    response_model=list[str],
    summary="Decode token ids to text (TEI's /decode): one string per id list",
    responses=error_responses("tokenizer", "model_not_found", "overloaded"),
)
async def decode(body: DecodeRequest, request: Request, model: ModelQuery = None) -> Response:
    runtime = runtime_for(request, body.model, model, ANY_TASK)
    single = not body.ids or isinstance(body.ids[0], int)
    sequences: list[list[int]] = [body.ids] if single else body.ids  # type: ignore[list-item,assignment]
    decoded = await runtime.decode(sequences, body.skip_special_tokens)
    return await json_response(request, decoded, size=sum(map(len, decoded)) // 4)
