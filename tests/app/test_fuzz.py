"""Property-based fuzzing of the real app (tiny exported model) against its own OpenAPI document.

Every request, valid or not, must get a documented status (never 5xx), a body that matches the
documented schema (the TEI or OpenAI error body for errors), and the right content type. A body the
schema allows must be answered, unless it breaks a limit only the model knows (documented in the
field descriptions and /info); a body the schema forbids must be refused. Bounded and derandomized
so CI is deterministic and quick.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import OPENAI_STYLE_PATHS
from app.schemas import WHITESPACE
from app.server import create_app
from app.settings import Settings
from app.tokenizer import is_blank
from tests.app.conftest import serving
from tests.conftest import IN_CI

try:
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        positive_data_acceptance,
        response_schema_conformance,
        status_code_conformance,
    )
except ImportError:  # a test dependency; CI installs it, so there it must not silently skip
    if IN_CI:
        raise
    pytest.skip("schemathesis not installed", allow_module_level=True)

BOUNDED = settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


# The classifier routes' models (the tiny masked LM serves every other route).
CLASSIFIERS = {
    "/predict": ("sentiment", "bert"),
    "/classify": ("sentiment", "bert"),
    "/rerank": ("reranker", "bert"),
    "/token-classification": ("ner", "distilbert"),
}


@pytest.fixture(scope="module")
def client(tiny_mlm_model_dir: Path, tiny_classifier_dir: Callable[..., Path]) -> Iterator[TestClient]:
    classifiers = list(dict.fromkeys(tiny_classifier_dir(*kind) for kind in CLASSIFIERS.values()))
    app = create_app(Settings(model_dir=[tiny_mlm_model_dir, *classifiers], providers=["cpu"], intra_op_threads=1))
    with serving(app) as test_client:
        yield test_client


def assert_error_shape(path: str, status: int, body: Any) -> None:
    if status < 400:
        return
    if path in OPENAI_STYLE_PATHS:
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code"}, body
    else:
        assert set(body) == {"error", "error_type"}, body


def request_kwargs(case: Any) -> dict[str, Any]:
    """The case as TestClient (httpx) arguments: raw bytes as `content`, no per-request cookies."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    kwargs.pop("cookies", None)
    if isinstance(kwargs.get("data"), bytes | str):
        kwargs["content"] = kwargs.pop("data")
    return kwargs


def error_message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("message", "") if isinstance(error, dict) else error or "")


def over(upper: str, got: str) -> bool:
    return int(got) > int(upper)


# A schema-valid body may still break a limit that depends on the model (/info lists them; the field
# descriptions say so): a 422 whose message names one of these is the documented answer. Each
# entry checks the refusal is for the model's side of the limit, not a static bound the schema states.
MODEL_LIMITS: list[tuple[str, Callable[..., bool]]] = [
    (r"has \d+ tokens but this server accepts at most \d+", lambda: True),  # max_input_length
    (r"\d+ inputs in one request; this server accepts at most \d+", lambda: True),  # max_client_batch_size
    (r"dimensions must be between 1 and (\d+), got (-?\d+)", over),  # hidden_size
    (r"top_k must be between 0 and (\d+), got (-?\d+)", over),  # max_top_k
    (r"has token ids outside the vocabulary \[0, \d+\)", lambda: True),  # the schema's minimum is 0
    (r"none of the targets maps to a vocabulary token", lambda: True),  # what the vocabulary spells
    (r"mask tokens x top_k \d+ is \d+ candidates", lambda: True),  # max_client_batch_size x max_top_k
    (r"has \d+ mask tokens; this model takes at most", lambda: True),  # max_batch_mask_rows
]


def breaks_a_model_limit(response: Any) -> bool:
    if response.status_code != 422:
        return False
    message = error_message(response)
    for pattern, check in MODEL_LIMITS:
        match = re.search(pattern, message)
        if match and check(*match.groups()):
            return True
    return False


def accepts_valid_data(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis' positive data acceptance, except for the documented model limits."""
    if breaks_a_model_limit(response):
        return None
    return positive_data_acceptance(ctx, response, case)


def as_served(model_id: str, mask_token: str) -> Callable[[Any], Any]:
    """A valid case, made to reach the model: the model it names is a served one that has the route's
    task (an unknown one is a 404 by design), and fill-mask inputs carry the model's mask token (which
    the schema cannot name)."""

    def apply(case: Any) -> Any:
        kind = CLASSIFIERS.get(case.path)
        served = f"tiny-{kind[1]}-{kind[0]}" if kind else model_id
        if isinstance(case.query, dict) and "model" in case.query:
            case.query["model"] = served
        body = case.body
        if not isinstance(body, dict):
            return case
        if "model" in body:
            body["model"] = served
        if case.path == "/fill-mask" or (case.path == "/" and "parameters" in body):
            inputs = body.get("inputs")
            if isinstance(inputs, str):
                body["inputs"] = f"{inputs} {mask_token}"
            elif isinstance(inputs, list):
                body["inputs"] = [f"{text} {mask_token}" if isinstance(text, str) else text for text in inputs]
        return case

    return apply


BODY_ROUTES = {"/fill-mask", "/embed", "/", "/v1/embeddings", "/embeddings", "/tokenize", "/decode", *CLASSIFIERS}


def test_every_operation_conforms_to_its_schema(client: TestClient) -> None:
    # Strategies per operation (not schemathesis' pytest plugin, whose fixture support lags pytest).
    schema = schemathesis.openapi.from_dict(client.app.openapi())  # type: ignore[attr-defined]
    checks = [
        not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
        accepts_valid_data,
    ]
    info = client.get("/info").json()
    served = as_served(info["model_id"], info["mask_token"])
    operations = [result.ok() for result in schema.get_all_operations()]
    assert BODY_ROUTES <= {op.path for op in operations}
    assert {("HEAD", "/health"), ("HEAD", "/ready")} <= {(op.method.upper(), op.path) for op in operations}
    for operation in operations:

        @BOUNDED
        @given(case=operation.as_strategy().map(served))
        def check(case: Any) -> None:
            response = client.request(**request_kwargs(case))
            case.validate_response(response, checks=checks)
            if case.method.upper() == "HEAD":
                assert response.content == b""
            elif response.headers.get("content-type", "").startswith("application/json"):
                assert_error_shape(case.path, response.status_code, response.json())

        check()


# Bodies that break one static limit the schema states, as a client might send them: blank text (TEI's
# 400 `empty`), numbers as strings or booleans, negative ids and sizes, empty or blank targets.
blank = st.text(alphabet=WHITESPACE, max_size=4)
not_an_integer = st.integers(min_value=1, max_value=99).map(str) | st.booleans() | st.just(1.5)
mask = "a [MASK]"
FORBIDDEN: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "/embed": st.one_of(
        st.builds(lambda text: {"inputs": text}, blank),
        st.builds(lambda text: {"inputs": ["ok", text]}, blank),
        st.builds(lambda value: {"inputs": "x", "dimensions": value}, not_an_integer | st.integers(max_value=0)),
    ),
    "/fill-mask": st.one_of(
        st.builds(lambda text: {"inputs": text}, blank),
        st.builds(lambda value: {"inputs": mask, "parameters": {"top_k": value}}, not_an_integer | st.integers(max_value=-1)),
        st.builds(lambda text: {"inputs": mask, "parameters": {"targets": text}}, blank),
        st.builds(lambda text: {"inputs": mask, "parameters": {"targets": ["cat", text]}}, blank),
        st.just({"inputs": mask, "parameters": {"targets": []}}),
    ),
    "/": st.one_of(
        st.builds(lambda text: {"inputs": text}, blank),
        st.builds(lambda text: {"inputs": [text], "parameters": {}}, blank),
        st.builds(lambda value: {"inputs": "x", "dimensions": value}, not_an_integer | st.integers(max_value=0)),
        st.builds(lambda value: {"inputs": mask, "parameters": {"top_k": value}}, not_an_integer),
    ),
    "/v1/embeddings": st.one_of(
        st.builds(lambda text: {"input": text}, blank),
        st.builds(lambda text: {"input": ["ok", text]}, blank),
        st.builds(lambda value: {"input": "x", "dimensions": value}, not_an_integer | st.integers(max_value=0)),
        st.builds(lambda ids: {"input": ids}, st.lists(st.integers(max_value=-1), min_size=1, max_size=3)),
        st.sampled_from([{"input": []}, {"input": [[]]}, {"input": [[101], []]}]),
    ),
    "/decode": st.builds(lambda ids: {"ids": ids}, st.lists(st.integers(max_value=-1), min_size=1, max_size=3)),
    "/predict": st.one_of(
        st.builds(lambda text: {"inputs": text}, blank),
        st.builds(lambda text: {"inputs": ["ok", text]}, blank),
        st.just({"inputs": ["a", "b", "c"]}),
    ),
    "/rerank": st.one_of(
        st.builds(lambda text: {"query": text, "texts": ["ok"]}, blank),
        st.builds(lambda text: {"query": "ok", "texts": [text]}, blank),
    ),
    "/classify": st.one_of(
        st.builds(lambda text: {"inputs": {"text": "ok", "text_pair": text}}, blank),
        st.builds(lambda value: {"inputs": "x", "parameters": {"top_k": value}}, not_an_integer | st.integers(max_value=-1)),
    ),
}


@pytest.mark.parametrize("path", sorted(FORBIDDEN))
def test_what_the_schema_forbids_is_refused(client: TestClient, path: str) -> None:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")  # schemathesis' validator
    document = client.app.openapi()  # type: ignore[attr-defined]
    body_schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    validator = jsonschema_rs.validator_for({**body_schema, "components": document["components"]})

    @settings(BOUNDED, max_examples=30)
    @given(body=FORBIDDEN[path])
    def check(body: dict[str, Any]) -> None:
        assert not validator.is_valid(body), f"the schema allows {body}"
        response = client.post(path, json=body)
        assert response.status_code in (400, 422), (body, response.text)
        assert_error_shape(path, response.status_code, response.json())
        texts = body.get("inputs", body.get("input"))
        if any(isinstance(text, str) and is_blank(text) for text in (texts if isinstance(texts, list) else [texts])):
            assert response.status_code == 400, "blank text is empty text, as TEI answers it"

    check()


# Text the schema cannot describe: control characters, emoji, lone surrogates (JSON's "\ud800").
nasty_text = st.lists(
    st.characters(categories=["Cs", "Cc", "So", "Zs", "L", "Nd", "P"]) | st.sampled_from(["[MASK]", " ", "a" * 300]),
    max_size=30,
).map("".join)
any_int = st.integers() | st.sampled_from([2**63, 2**70, -(2**63) - 1])
model_name = st.fixed_dictionaries({}, optional={"model": nasty_text | st.sampled_from(["\ud800", "tiny\udfff"])})
ROUTE_BODIES = {
    "/fill-mask": st.fixed_dictionaries(
        {"inputs": nasty_text | st.lists(nasty_text, max_size=3)},
        optional={"parameters": st.fixed_dictionaries({}, optional={"top_k": any_int, "targets": st.lists(nasty_text, max_size=3)})},
    ),
    "/": st.fixed_dictionaries(
        {"inputs": nasty_text | st.lists(nasty_text, max_size=3)},
        optional={"parameters": st.fixed_dictionaries({}, optional={"top_k": any_int, "targets": nasty_text}),
                  "dimensions": any_int},
    ),
    "/embed": st.fixed_dictionaries(
        {"inputs": nasty_text | st.lists(nasty_text, max_size=3)},
        optional={"dimensions": any_int, "truncate": st.booleans()},
    ),
    "/tokenize": st.fixed_dictionaries({"inputs": nasty_text | st.lists(nasty_text, max_size=3)}),
    "/predict": st.fixed_dictionaries(
        {"inputs": nasty_text | st.lists(nasty_text, max_size=3) | st.lists(st.lists(nasty_text, max_size=3), max_size=3)},
        optional={"truncate": st.booleans(), "raw_scores": st.booleans()},
    ),
    "/rerank": st.fixed_dictionaries(
        {"query": nasty_text, "texts": st.lists(nasty_text, max_size=3)},
        optional={"truncate": st.booleans(), "return_text": st.booleans()},
    ),
    "/classify": st.fixed_dictionaries(
        {"inputs": nasty_text | st.lists(nasty_text, max_size=3)
         | st.fixed_dictionaries({"text": nasty_text}, optional={"text_pair": nasty_text})},
        optional={"parameters": st.fixed_dictionaries({}, optional={"top_k": any_int | st.none()})},
    ),
    "/token-classification": st.fixed_dictionaries(
        {"inputs": nasty_text | st.lists(nasty_text, max_size=3)},
        optional={"parameters": st.fixed_dictionaries({}, optional={"aggregation_strategy": st.sampled_from(["none", "first", "x"])})},
    ),
    "/decode": st.fixed_dictionaries({"ids": st.lists(any_int, max_size=5) | st.lists(st.lists(any_int, max_size=3), max_size=3)}),
    "/v1/embeddings": st.fixed_dictionaries(
        {"input": nasty_text | st.lists(nasty_text, max_size=3) | st.lists(any_int, max_size=5)
         | st.lists(st.lists(any_int, max_size=3), max_size=3)},
        optional={"dimensions": any_int, "encoding_format": st.sampled_from(["float", "base64", "float16", ""])},
    ),
}


# A lone surrogate, as a message would repeat it (repr's \udXXX); a raw one cannot even be encoded.
ECHOED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")


@pytest.mark.parametrize("path", sorted(ROUTE_BODIES))
def test_nasty_values_get_a_documented_4xx_or_an_answer(client: TestClient, path: str) -> None:
    @BOUNDED
    @given(body=st.builds(lambda body, named: {**body, **named}, ROUTE_BODIES[path], model_name))
    def check(body: dict[str, Any]) -> None:
        # json.dumps escapes lone surrogates as \udXXX, as a client's encoder would.
        response = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
        assert response.status_code < 500, (body, response.text)
        assert_error_shape(path, response.status_code, response.json())
        assert not ECHOED_SURROGATE.search(error_message(response)), (body, response.text)

    check()


# The body is read only as JSON (application/json or application/*+json, any parameters) and only without
# a content coding; anything else is a 415 before the body is read.
media_types = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "Application/JSON", "application/problem+json",
    "text/plain", "text/json", "application/jsonx", "application/x-www-form-urlencoded", "multipart/form-data",
]) | st.from_regex(r"[a-z]{1,8}/[a-z+.-]{1,10}(; ?charset=utf-8)?", fullmatch=True)
content_codings = st.sampled_from(["", "identity", "IDENTITY", "gzip", "br", "deflate", "zstd", "identity, gzip"])


def test_only_plain_json_bodies_are_read(client: TestClient) -> None:
    @BOUNDED
    @given(content_type=media_types, coding=content_codings)
    def check(content_type: str, coding: str) -> None:
        headers = {"content-type": content_type} | ({"content-encoding": coding} if coding else {})
        response = client.post("/tokenize", content=b'{"inputs": "x"}', headers=headers)
        main, _, sub = content_type.split(";")[0].strip().lower().partition("/")
        json_type = main == "application" and (sub == "json" or sub.endswith("+json"))
        plain = all(part.strip().lower() in ("", "identity") for part in coding.split(","))
        assert response.status_code == (200 if json_type and plain else 415), (headers, response.text)
        assert_error_shape("/tokenize", response.status_code, response.json())

    check()
