"""W3C Trace Context Level 2 conformance over real HTTP: every request of the official suite
(tests/data/w3c_trace_context.py) sent to the test service (tests/fixtures/w3c_service.py, a
separate process built on extract() -> start_child() -> inject()), header lines repeated as
given, and the callbacks it makes checked here as the official harness checks them, and more
exactly (the precise tracestate and flags we send, and the self-monitor count)."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.data.w3c_trace_context import CASES, OFFICIAL_TESTS, PARENT_ID, TRACE_ID, W3CCase

REPO_ROOT = Path(__file__).resolve().parents[2]
# What the official harness accepts as a traceparent in a callback (version 00 is all we send).
OUTGOING_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


@dataclass(frozen=True)
class Callback:
    path: str
    headers: list[tuple[str, str]]
    body: Any


class CallbackReceiver(ThreadingHTTPServer):
    """Plays the harness's callback endpoint: records each POST's header lines and body."""

    daemon_threads = True

    def __init__(self) -> None:
        self.calls: list[Callback] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _CallbackHandler)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{path}"

    def received(self, prefix: str) -> list[Callback]:
        with self.lock:
            return sorted(
                (c for c in self.calls if c.path.startswith(prefix)), key=lambda c: c.path
            )


class _CallbackHandler(BaseHTTPRequestHandler):
    server: CallbackReceiver

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"null")
        with self.server.lock:
            self.server.calls.append(
                Callback(self.path.lstrip("/"), list(self.headers.items()), body)
            )
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "4")
        self.end_headers()
        self.wfile.write(b"null")


@pytest.fixture(scope="module")
def receiver() -> Iterator[CallbackReceiver]:
    server = CallbackReceiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def service_port() -> Iterator[int]:
    """The test service as its own process, as the official suite runs it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.w3c_service", "0", "--until-stdin-closes"],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    line = process.stdout.readline()
    match = re.fullmatch(r"listening on http://127\.0\.0\.1:(\d+)/test\n", line)
    assert match, f"the service did not start: {line!r}"
    yield int(match.group(1))
    process.stdin.close()
    assert process.wait(timeout=30) == 0


def send(port: int, headers: tuple[tuple[str, str], ...], actions: list[dict[str, Any]]) -> Any:
    """POST the actions to the service with `headers` as separate lines, repeats included."""
    body = json.dumps(actions).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("POST", "/test")
        for name, value in headers:
            connection.putheader(name, value)
        connection.putheader("content-type", "application/json")
        connection.putheader("content-length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        assert response.status == 200
        return json.loads(response.read())
    finally:
        connection.close()


def only_line(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [value for key, value in headers if key.lower() == name]


def test_cases__cover_every_official_test() -> None:
    """Every test of the official suite (41 at SPEC_LEVEL=2) has its requests here."""
    names = {case.official.rsplit("[", 1)[0] for case in CASES}
    assert len(names) == OFFICIAL_TESTS
    assert len({case.official for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.official)
def test_w3c_service__official_case__propagates_as_the_spec_says(
    case: W3CCase, service_port: int, receiver: CallbackReceiver
) -> None:
    scope = uuid.uuid4().hex
    actions = [
        {"url": receiver.url(f"{scope}.{i}"), "arguments": []} for i in range(case.callbacks)
    ]

    reply = send(service_port, case.headers, actions)

    calls = receiver.received(scope)
    assert [c.path for c in calls] == [f"{scope}.{i}" for i in range(case.callbacks)], case.rule
    seen = []
    for call in calls:
        assert call.body == []
        parents = only_line(call.headers, "traceparent")
        assert len(parents) == 1, f"one traceparent line expected, got {parents}"
        match = OUTGOING_TRACEPARENT.fullmatch(parents[0])
        assert match, f"{parents[0]!r} is not a version-00 traceparent"
        trace_id, parent_id, flags = match.group(1), match.group(2), int(match.group(3), 16)
        seen.append((trace_id, parent_id))
        if case.trace == "kept":
            assert trace_id == TRACE_ID, case.rule
            assert parent_id != PARENT_ID, case.rule
        else:
            assert trace_id != TRACE_ID, case.rule
            assert uuid.UUID(hex=trace_id).version == 7  # a trace-id we made
        assert flags == case.flags, case.rule
        states = only_line(call.headers, "tracestate")
        assert states == ([] if case.tracestate is None else [case.tracestate]), case.rule
    assert len({trace_id for trace_id, _ in seen}) == 1  # one trace for all calls of a request
    assert len({parent_id for _, parent_id in seen}) == case.callbacks  # a span per call
    assert reply["counted_invalid"] == (1 if case.counted else 0), case.rule
