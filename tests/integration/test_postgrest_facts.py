"""The PostgREST test double was built from requests the real `supabase` client was recorded
sending (tests/data/postgrest/, see its README). Replaying the same calls with the installed
client must put the same requests on the wire, or the double answers a format nobody sends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from postgrest.exceptions import APIError
from supabase import AsyncClientOptions, acreate_client

from tests.fixtures.postgrest_double import RecordedRequest, SupabaseStack

pytestmark = pytest.mark.postgres

SAMPLE = (
    Path(__file__).resolve().parents[1] / "data" / "postgrest" / "supabase-py-2.34.1-requests.json"
)
SAMPLE_KEY = "test-anon-key"
# The sample's calls the double serves, in recorded order: three inserts, two reads, a view, an rpc.
REPLAYED = (0, 1, 2, 3, 4, 9, 10)


def _shape(method: str, path: str, query: Any, headers: dict[str, str], body: Any, key: str):
    lower = {k.lower(): v for k, v in headers.items()}
    auth = {
        "apikey": lower.get("apikey") == key,
        "bearer": lower.get("authorization") == f"Bearer {key}",
    }
    kept = {h: lower.get(h) for h in ("prefer", "accept-profile", "content-profile")}
    # `columns` lists the keys of the rows in no fixed order.
    params = [(k, ",".join(sorted(v.split(","))) if k == "columns" else v) for k, v in query]
    return method, path, params, auth, kept, body


async def _replay(client: Any) -> None:
    spans = client.table("llm_spans")
    calls = (
        lambda: spans.insert(
            {"trace_id": "t1", "span_id": "s1", "name": "llm-call", "prompt_tokens": 12}
        ),
        lambda: spans.insert(
            [
                {"trace_id": "t1", "span_id": "s2", "name": "plan"},
                {"trace_id": "t1", "span_id": "s3", "name": "tool", "model": "gpt-4o-mini"},
            ]
        ),
        lambda: spans.insert({"trace_id": "t2"}, returning="minimal"),
        lambda: (
            spans.select("*")
            .gte("start_time", "2026-01-01T00:00:00+00:00")
            .eq("trace_id", "t1")
            .order("start_time", desc=True)
            .limit(50)
        ),
        lambda: spans.select("id", count="exact").eq("trace_id", "t1"),
        lambda: client.table("llm_usage_daily").select("*").gte("day", "2026-01-01").order("day"),
        lambda: client.rpc("purge_spans_before", {"cutoff": "2025-12-01T00:00:00+00:00"}),
    )
    for call in calls:
        with pytest.raises(APIError):  # the double has no such table or function: a 404
            await call().execute()


async def test_supabase_client__recorded_calls__same_requests_as_the_sample(
    supabase_stack: SupabaseStack,
) -> None:
    recorded = json.loads(SAMPLE.read_text(encoding="utf-8"))
    async with httpx.AsyncClient(timeout=5) as http:
        options = AsyncClientOptions(httpx_client=http, postgrest_client_retry=False)
        client = await acreate_client(supabase_stack.url, supabase_stack.anon_key, options)
        await _replay(client)

    sent: list[RecordedRequest] = supabase_stack.double.requests
    key = supabase_stack.anon_key
    assert [_shape(r.method, r.path, r.query, r.headers, r.body, key) for r in sent] == [
        _shape(s["method"], s["path"], s["query"], s["headers"], s["body"], SAMPLE_KEY)
        for s in (recorded[i] for i in REPLAYED)
    ]
