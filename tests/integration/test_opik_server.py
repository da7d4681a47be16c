"""The loopback Opik server itself: it must accept what the real SDK sends and catch what Opik
would refuse, or the Opik tests prove nothing."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.opik_server import (
    OPIK_DATA_DIR,
    PING_PATH,
    SPANS_BATCH_PATH,
    TRACE_SCORES_PATH,
    VALIDATED_ENDPOINTS,
    OpikSchema,
    OpikTestServer,
    load_openapi,
)

SAMPLE = OPIK_DATA_DIR / "samples" / "sdk-2.2.122-complete-trace.json"
V7_ID = "01a212a1-f5ec-7b3a-9703-08c0d512093b"
V4_ID = "6f1c1a52-3d4e-4b7a-9c1d-2f0e8a7b6c5d"


@pytest.fixture
def bare_server(opik_openapi_schema: OpikSchema) -> Iterator[OpikTestServer]:
    """A server whose schema errors are the subject of the test (not failed at teardown)."""
    server = OpikTestServer(opik_openapi_schema).start()
    yield server
    server.stop()


def _post(server: OpikTestServer, method: str, path: str, body: object) -> httpx.Response:
    data = gzip.compress(json.dumps(body).encode())
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    url = f"http://127.0.0.1:{server.port}{path}"
    return httpx.request(method, url, content=data, headers=headers, timeout=5)


def test_opik_server__sdk_sample_requests__accepted_and_decoded(
    opik_server: OpikTestServer,
) -> None:
    for recorded in json.loads(SAMPLE.read_text()):
        response = _post(opik_server, recorded["method"], recorded["path"], recorded["body"])
        assert response.status_code == 204
    assert opik_server.received_spans()[1]["usage"]["total_tokens"] == 46
    assert opik_server.received_traces()[0]["name"] == "agent-run"


def test_opik_server__ping__200(opik_server: OpikTestServer) -> None:
    response = httpx.get(f"{opik_server.base_url}/is-alive/ping", timeout=5)
    assert response.status_code == 200
    assert opik_server.requests[-1].path == PING_PATH


def test_opik_server__non_v7_span_id__422_and_recorded(bare_server: OpikTestServer) -> None:
    body = {"spans": [{"id": V4_ID, "trace_id": V7_ID, "start_time": "2026-01-01T00:00:00Z"}]}
    response = _post(bare_server, "POST", SPANS_BATCH_PATH, body)
    assert response.status_code == 422
    assert bare_server.schema_errors == [
        f"POST {SPANS_BATCH_PATH}: spans/0/id: '{V4_ID}' is not a UUID version 7"
    ]


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        ({"id": V7_ID}, "'start_time' is a required property"),
        ({"id": V7_ID, "start_time": "yesterday"}, "is not a 'date-time'"),
        ({"id": "not-a-uuid", "start_time": "2026-01-01T00:00:00Z"}, "is not a 'uuid'"),
        ({"start_time": "2026-01-01T00:00:00Z", "type": "agent"}, "is not one of"),
        ({"start_time": "2026-01-01T00:00:00Z", "usage": {"x": 2**31}}, "is not a 'int32'"),
        ({"start_time": "2026-01-01T00:00:00Z", "parent_span_id": None}, "None is not of type"),
    ],
)
def test_opik_server__invalid_span__schema_error(
    bare_server: OpikTestServer, span: dict[str, object], expected: str
) -> None:
    response = _post(bare_server, "POST", SPANS_BATCH_PATH, {"spans": [span]})
    assert response.status_code == 422
    assert any(expected in e for e in bare_server.schema_errors)


def test_opik_server__negative_feedback_value__accepted(opik_server: OpikTestServer) -> None:
    """OpenAPI 3.0 `exclusiveMinimum: false` must not turn into "greater than 0"."""
    score = {"id": V7_ID, "name": "delta", "value": -2.5, "source": "sdk"}
    response = _post(opik_server, "PUT", TRACE_SCORES_PATH, {"scores": [score]})
    assert response.status_code == 204


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        ({"id": V7_ID, "name": "quality", "value": 0.9}, "'source' is a required property"),
        ({"id": V7_ID, "name": "", "value": 0.9, "source": "sdk"}, "should be non-empty"),
        ({"id": V7_ID, "name": "q", "value": 2e9, "source": "sdk"}, "is greater than"),
        ({"id": V7_ID, "name": "q", "value": 1, "source": "user"}, "is not one of"),
        ({"id": V4_ID, "name": "q", "value": 1, "source": "sdk"}, "is not a UUID version 7"),
    ],
)
def test_opik_server__invalid_trace_feedback_score__schema_error(
    bare_server: OpikTestServer, score: dict[str, object], expected: str
) -> None:
    """What `log_feedback` / `log_metric` send (PUT traces/feedback-scores) is validated."""
    response = _post(bare_server, "PUT", TRACE_SCORES_PATH, {"scores": [score]})
    assert response.status_code == 422
    assert any(expected in e for e in bare_server.schema_errors), bare_server.schema_errors


def test_opik_server__refuse_then_recover__same_port(opik_server: OpikTestServer) -> None:
    port = opik_server.port
    opik_server.refuse_connections()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{opik_server.base_url}/is-alive/ping", timeout=5)
    opik_server.recover()
    assert opik_server.port == port
    assert httpx.get(f"{opik_server.base_url}/is-alive/ping", timeout=5).status_code == 200


def test_opik_server__fail_with__status_body_and_headers(opik_server: OpikTestServer) -> None:
    opik_server.fail_with(503, {"errors": ["maintenance"]}, headers={"Retry-After": "3"})
    body = {"spans": [{"id": V7_ID, "start_time": "2026-01-01T00:00:00Z"}]}
    response = _post(opik_server, "POST", SPANS_BATCH_PATH, body)
    assert (response.status_code, response.json()) == (503, {"errors": ["maintenance"]})
    assert response.headers["retry-after"] == "3"
    assert opik_server.received_spans() == []


def test_openapi_subset__validated_endpoints__are_the_subsets_request_schemas() -> None:
    paths = load_openapi()["paths"]
    for (method, path), schema_name in VALIDATED_ENDPOINTS.items():
        operation = paths[path.removeprefix("/api")][method.lower()]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{schema_name}"


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_openapi_subset__every_ref__resolves_inside_the_subset() -> None:
    document = load_openapi()
    names = {ref.removeprefix("#/components/schemas/") for ref in _refs(document)}
    assert names and names <= set(document["components"]["schemas"])
