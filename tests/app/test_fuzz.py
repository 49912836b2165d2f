"""Property-based fuzzing of the real app (tiny exported model) against its own OpenAPI document.

Every request, valid or not, must get a documented status (never 5xx), a body that matches the
documented schema (the TEI or OpenAI error body for errors), and the right content type. Bounded
and derandomized so CI is deterministic and quick.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import OPENAI_STYLE_PATHS
from app.server import create_app
from app.settings import Settings
from tests.app.conftest import serving
from tests.conftest import IN_CI

try:
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
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


@pytest.fixture(scope="module")
def client(tiny_mlm_model_dir: Path) -> Iterator[TestClient]:
    app = create_app(Settings(model_dir=tiny_mlm_model_dir, providers=["cpu"], intra_op_threads=1))
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


def test_every_operation_conforms_to_its_schema(client: TestClient) -> None:
    # Strategies per operation (not schemathesis' pytest plugin, whose fixture support lags pytest).
    schema = schemathesis.openapi.from_dict(client.app.openapi())  # type: ignore[attr-defined]
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {"/fill-mask", "/embed", "/", "/v1/embeddings", "/tokenize", "/decode"} <= {op.path for op in operations}
    for operation in operations:

        @BOUNDED
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = client.request(**request_kwargs(case))
            case.validate_response(response, checks=checks)
            if response.headers.get("content-type", "").startswith("application/json"):
                assert_error_shape(case.path, response.status_code, response.json())

        check()


# Text the schema cannot describe: control characters, emoji, lone surrogates (JSON's "\ud800").
nasty_text = st.lists(
    st.characters(categories=["Cs", "Cc", "So", "Zs", "L", "Nd", "P"]) | st.sampled_from(["[MASK]", " ", "a" * 300]),
    max_size=30,
).map("".join)
any_int = st.integers() | st.sampled_from([2**63, 2**70, -(2**63) - 1])
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
    "/decode": st.fixed_dictionaries({"ids": st.lists(any_int, max_size=5) | st.lists(st.lists(any_int, max_size=3), max_size=3)}),
    "/v1/embeddings": st.fixed_dictionaries(
        {"input": nasty_text | st.lists(nasty_text, max_size=3) | st.lists(any_int, max_size=5)
         | st.lists(st.lists(any_int, max_size=3), max_size=3)},
        optional={"dimensions": any_int, "encoding_format": st.sampled_from(["float", "base64", "float16", ""])},
    ),
}


@pytest.mark.parametrize("path", sorted(ROUTE_BODIES))
def test_nasty_values_get_a_documented_4xx_or_an_answer(client: TestClient, path: str) -> None:
    @BOUNDED
    @given(body=ROUTE_BODIES[path])
    def check(body: dict[str, Any]) -> None:
        # json.dumps escapes lone surrogates as \udXXX, as a client's encoder would.
        response = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
        assert response.status_code < 500, (body, response.text)
        assert_error_shape(path, response.status_code, response.json())

    check()
