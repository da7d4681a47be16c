"""One trace across two processes: an HTTP client agent and an HTTP server agent
(tests/fixtures/trace_agents.py), each with its own connector writing to the same real
PostgreSQL and to the loopback Opik server, joined only by the W3C headers of one request."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    opik_span_uuid_for,
    opik_trace_uuid,
)
from src.repositories.postgres_repository import PostgresSpanRepository

REPO_ROOT = Path(__file__).resolve().parents[2]
AGENTS = [sys.executable, "-m", "tests.fixtures.trace_agents"]

pytestmark = pytest.mark.postgres


def read_trace(dsn: str, trace_id: str) -> list[Any]:
    async def read() -> list[Any]:
        repository = PostgresSpanRepository(dsn)
        try:
            return await repository.get_spans_by_trace(trace_id)
        finally:
            await repository.close()

    return asyncio.run(read())


def test_one_request_between_two_agent_processes__one_trace_in_postgres_and_opik(
    pg_dsn: str, opik_server: Any, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "E2I_OBS_DATABASE_URL": pg_dsn,
        "OPIK_URL_OVERRIDE": opik_server.base_url,
    }
    # Both start at once (imports and connector set-up overlap); the client reads the URL.
    server, client = (
        subprocess.Popen(
            [*AGENTS, role, str(tmp_path / f"{role}-spool")],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if role == "client" else None,
            text=True,
        )
        for role in ("server", "client")
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert re.fullmatch(r"listening on http://127\.0\.0\.1:\d+/ask\n", line), line
        out, err = client.communicate(line.split()[-1] + "\n", timeout=120)
        assert client.returncode == 0, err
        result = json.loads(out)
    finally:
        for process in (client, server):
            if process.stdin is not None and not process.stdin.closed:
                process.stdin.close()
        client.wait(timeout=120)
        server_code = server.wait(timeout=120)
    assert server_code == 0

    trace_id, client_span_id = result["trace_id"], result["span_id"]
    assert result["reply"]["trace_id"] == trace_id  # the server adopted the client's trace
    spans = read_trace(pg_dsn, trace_id)
    by_id = {s.span_id: s for s in spans}
    client_span = by_id[client_span_id]
    server_span = by_id[result["reply"]["span_id"]]
    assert (client_span.agent_name, client_span.operation_name) == ("client_agent", "ask_server")
    assert (server_span.agent_name, server_span.operation_name) == ("server_agent", "handle_ask")
    assert client_span.parent_span_id is None
    assert server_span.parent_span_id == client_span_id
    graph_spans = [s for s in spans if s.span_id not in (client_span_id, server_span.span_id)]
    assert graph_spans, "the callback handler's spans of the server's graph are missing"
    assert any(s.llm_model for s in graph_spans) and sum(s.total_tokens or 0 for s in spans) == 17
    for span in graph_spans:  # every server span hangs, through its parents, off the client
        chain = [span]
        while chain[-1].parent_span_id is not None:
            chain.append(by_id[chain[-1].parent_span_id])
        assert chain[-2:] == [server_span, client_span], [s.operation_name for s in chain]
    assert [s for s in spans if s.parent_span_id is None] == [client_span]

    opik_trace = opik_trace_uuid(trace_id)
    assert {t["id"] for t in opik_server.received_traces()} == {opik_trace}
    opik_spans = {s["id"]: s for s in opik_server.received_spans()}
    assert len(opik_spans) == len(spans)
    assert {s["trace_id"] for s in opik_spans.values()} == {opik_trace}
    opik_server_span = opik_spans[opik_span_uuid_for(trace_id, server_span.span_id)]
    assert opik_server_span["parent_span_id"] == opik_span_uuid_for(trace_id, client_span_id)
    assert "parent_span_id" not in opik_spans[opik_span_uuid_for(trace_id, client_span_id)]
