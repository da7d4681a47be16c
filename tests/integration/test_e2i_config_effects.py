"""E2I's observability.yaml (tests/data/config/e2i_observability.yaml, every key of its §8):
each key the connector honours takes effect where it acts, with real parts (SQLite,
PostgreSQL, Redis, the batch processor, the CLI).

That the file loads at all, and which keys warn or fail, is tests/unit/test_config_formats.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from src.agents.ml_foundation.observability_connector.batch_processor import BatchProcessor
from src.agents.ml_foundation.observability_connector.cache import create_metrics_cache
from src.agents.ml_foundation.observability_connector.config import (
    ObservabilityConfig,
    load_config,
)
from src.agents.ml_foundation.observability_connector.db_sink import DatabaseSink
from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    QualityMetrics,
    SpanStatus,
    utc_now,
)
from src.agents.ml_foundation.observability_connector.retry import RetryPolicy
from src.agents.ml_foundation.observability_connector.sinks import RetryableSinkError
from src.agents.ml_foundation.observability_connector.span_policy import REDACTED
from src.agents.ml_foundation.observability_connector.spool import Spool
from src.cli.main import app
from src.mlops.circuit_breaker import CircuitBreaker
from src.mlops.opik_default import build_opik_connector
from src.repositories.factory import create_span_repository
from src.repositories.sqlite_repository import SqliteSpanRepository

E2I_FILE = Path(__file__).resolve().parents[1] / "data" / "config" / "e2i_observability.yaml"
SECRET = "hunter2-c0ffee"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def e2i_config(tmp_path: Path, env: dict[str, str] | None = None, **sections: Any) -> Any:
    """The E2I file, storing in this test's SQLite file; Opik off unless a test turns it on."""
    overrides: dict[str, Any] = {
        "storage": {
            "backend": "sqlite",
            "sqlite_path": str(tmp_path / "spans.db"),
            "spool_dir": str(tmp_path / "spool"),
        },
        "opik": {"enabled": False},
    }
    for name, values in sections.items():
        overrides[name] = {**overrides.get(name, {}), **values}
    return load_config(E2I_FILE, env=env or {}, overrides=overrides)


def make_span(agent: str = "orchestrator", **fields: Any) -> ObservabilitySpan:
    start = utc_now() - timedelta(seconds=1)
    return ObservabilitySpan(
        span_id=f"{random.getrandbits(63) | 1:016x}",
        trace_id=fields.pop("trace_id", uuid.uuid4().hex),
        operation_name="op",
        agent_name=agent,
        start_time=start,
        end_time=start + timedelta(milliseconds=5),
        **fields,
    )


def stored(path: Path, window: str = "1h") -> list[ObservabilitySpan]:
    async def read() -> list[ObservabilitySpan]:
        repository = SqliteSpanRepository(path)
        try:
            return await repository.get_spans_by_time_window(window, limit=10_000)
        finally:
            await repository.close()

    return asyncio.run(read())


class ListSink:
    """A sink that keeps what it receives; fails the first `failures` calls."""

    def __init__(self, name: str = "list", failures: int = 0) -> None:
        self.name = name
        self.failures = failures
        self.calls = 0
        self.batches: list[list[ObservabilitySpan]] = []

    def write(self, batch: Sequence[ObservabilitySpan]) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise RetryableSinkError(f"down (call {self.calls})")
        self.batches.append(list(batch))
        return len(batch)


# --- sampling --------------------------------------------------------------------------------


def test_e2i_config__agent_overrides__one_agent_sampled_out_others_kept(tmp_path):
    """gap_analyzer: 0.0 drops its spans (errors still kept); orchestrator and causal_impact
    are in always_sample_agents; other agents keep default_rate 1.0."""
    config = e2i_config(tmp_path, sampling={"default_rate": 0.5})
    connector = build_opik_connector(config)
    trace_ids = [f"{i:032x}" for i in range(1, 41)]
    try:
        for trace_id in trace_ids:
            for agent in ("gap_analyzer", "orchestrator", "causal_impact"):
                connector.submit(make_span(agent, trace_id=trace_id))
        error = make_span("gap_analyzer", status=SpanStatus.ERROR, error_type="E")
        connector.submit(error)
        assert connector.flush(timeout=30)
    finally:
        connector.close(10)
    by_agent: dict[str, int] = {}
    for span in stored(tmp_path / "spans.db"):
        by_agent[span.agent_name] = by_agent.get(span.agent_name, 0) + 1
    assert by_agent == {"gap_analyzer": 1, "orchestrator": 40, "causal_impact": 40}


def test_e2i_config__environment_aware_false__default_rate_in_production(tmp_path):
    from src.agents.ml_foundation.observability_connector.sampling import Sampler

    aware = e2i_config(tmp_path, sampling={"environment": "production"})
    flat = e2i_config(tmp_path, sampling={"environment": "production", "environment_aware": False})
    assert (Sampler(aware.sampling).rate, Sampler(flat.sampling).rate) == (0.1, 1.0)


# --- redaction and limits, in every sink -----------------------------------------------------


def test_e2i_config__redact_patterns__password_masked_in_sqlite_spool_and_fallback_log(tmp_path):
    """Opik is on but unreachable (a closed port): the database stores the span, the Opik lane
    spools it and the fallback log records it; none of them sees the password."""
    fallback = tmp_path / "opik_fallback.jsonl"
    config = e2i_config(
        tmp_path,
        opik={"enabled": True, "local_endpoint": f"http://127.0.0.1:{_free_port()}"},
        batching={"retry_max_attempts": 1},
        circuit_breaker={"fallback_log_path": str(fallback)},
    )
    span = make_span(
        "causal_impact",
        attributes={
            "input": {"query": "revenue", "password": SECRET, "db": {"api_key": SECRET}},
            "output": {"rows": 3, "token": SECRET},
            "db_password": SECRET,
            "input_tokens": 42,
        },
    )
    connector = build_opik_connector(config)
    try:
        connector.submit(span)
        assert connector.flush(timeout=60)
    finally:
        connector.close(10)

    (row,) = stored(tmp_path / "spans.db")
    assert row.attributes == {
        "input": {"query": "revenue", "password": REDACTED, "db": {"api_key": REDACTED}},
        "output": {"rows": 3, "token": REDACTED},
        "db_password": REDACTED,
        "input_tokens": 42,
    }
    spooled = [
        s
        for batch in Spool(tmp_path / "spool" / "opik", 1 << 30).pending_batches()
        for s in batch.spans
    ]
    assert [s.span_id for s in spooled] == [span.span_id]
    assert spooled[0].attributes == row.attributes
    logged = [json.loads(line) for line in fallback.read_text().splitlines()]
    assert [s["span_id"] for s in logged] == [span.span_id]
    for text in (fallback.read_text(), *(p.read_text() for p in (tmp_path / "spool").rglob("*.*"))):
        assert SECRET not in text


def test_e2i_config__size_limits__input_output_and_metadata_bounded_in_sqlite(tmp_path):
    config = e2i_config(tmp_path)  # input 4096, output 2048, metadata 8192 bytes
    span = make_span(
        attributes={"input": "i" * 5000, "output": "o" * 3000, "notes": "n" * 9000, "k": 1}
    )
    connector = build_opik_connector(config)
    try:
        connector.submit(span)
        assert connector.flush(timeout=30)
    finally:
        connector.close(10)
    (row,) = stored(tmp_path / "spans.db")
    a = row.attributes
    assert (len(a["input"]), a["input_truncated"], a["input_original_bytes"]) == (4096, True, 5000)
    assert (len(a["output"]), a["output_original_bytes"]) == (2048, 3000)
    assert len(a["notes"]) < 8192 and a["attributes_truncated"] == ["notes"] and a["k"] == 1


# --- cache ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _metrics(window: str) -> QualityMetrics:
    end = utc_now()
    return QualityMetrics.from_agent_stats(window, end - timedelta(hours=1), end, [])


@pytest.mark.parametrize(
    ("window", "ttl"), [("1h", 60), ("24h", 300), ("7d", 600), ("15m", 120), ("30d", 120)]
)
def test_e2i_config__cache_ttl__per_window_and_default(tmp_path, window, ttl):
    clock = Clock()
    cache = create_metrics_cache(e2i_config(tmp_path).cache, clock=clock)
    assert cache.get(window, None) is None
    cache.set(window, None, _metrics(window))
    clock.now += ttl - 0.5
    assert cache.get(window, None) is not None
    clock.now += 1.0
    assert cache.get(window, None) is None


def test_e2i_config__memory_max_entries_and_cleanup_interval(tmp_path):
    clock = Clock()
    config = e2i_config(tmp_path, cache={"max_entries": 2})
    cache = create_metrics_cache(config.cache, clock=clock)
    for agent in ("a", "b", "c"):
        cache.get("1h", agent)
        cache.set("1h", agent, _metrics("1h"))
    assert cache.stats().entries == 2  # max_entries
    clock.now += 61  # 1h entries expired; the sweep runs every 30 s (cleanup_interval_seconds)
    cache.get("24h", "x")
    assert cache.stats().entries == 0


def test_e2i_config__redis__url_env_db_and_key_prefix(tmp_path, redis_server_factory):
    server = redis_server_factory()
    env = {"E2I_TEST_REDIS_URL": server.url}  # the URL says db 0; redis.db says 3
    cache = create_metrics_cache(e2i_config(tmp_path, env=env).cache)
    try:
        cache.get("1h", None)
        cache.set("1h", None, _metrics("1h"))
        assert cache.get("1h", None) is not None
        keys = server.client(db=3).keys("*")
        assert keys and all(k.startswith(b"e2i:test:obs:") for k in keys)
        assert server.client(db=0).keys("*") == []
    finally:
        cache.close()  # type: ignore[attr-defined]


def test_e2i_config__fallback_to_memory_false__no_cache_while_redis_down(tmp_path):
    env = {"E2I_TEST_REDIS_URL": f"redis://127.0.0.1:{_free_port()}/0"}
    for fallback, served in ((False, False), (True, True)):
        config = e2i_config(tmp_path, env=env, cache={"fallback_to_memory": fallback})
        cache = create_metrics_cache(config.cache)
        try:
            cache.get("1h", None)
            cache.set("1h", None, _metrics("1h"))
            assert (cache.get("1h", None) is not None) is served
            assert cache.stats().degraded
        finally:
            cache.close()  # type: ignore[attr-defined]


# --- batching, retries, breaker ----------------------------------------------------------


def test_e2i_config__retry_settings__attempts_and_constant_capped_delays(tmp_path):
    """max_retries 4 -> 5 attempts; exponential_backoff false -> every wait 0.25 s (jittered)."""
    config = e2i_config(tmp_path)
    waits: list[float] = []
    sink = ListSink(failures=4)
    processor = BatchProcessor([sink], config.batching, tmp_path / "spool", sleep=waits.append)
    try:
        processor.submit(make_span())
        assert processor.flush(timeout=30)
    finally:
        processor.close(10)
    assert sink.calls == 5 and len(sink.batches) == 1
    assert len(waits) == 4 and all(0.2 <= w <= 0.3 for w in waits)


def test_e2i_config__max_delay_seconds__caps_exponential_waits(tmp_path):
    config = e2i_config(tmp_path, batching={"retry_exponential_backoff": True})
    policy = RetryPolicy.from_settings(config.batching)
    rng = random.Random(1)
    delays = [policy.delay(n, rng) for n in range(5)]
    assert delays[0] <= 0.3 and max(delays) <= 1.5 * 1.2 and delays[4] >= 1.5 * 0.8


def test_e2i_config__batching_disabled__each_span_its_own_batch(tmp_path):
    config = e2i_config(tmp_path, batching={"enabled": False})
    sink = ListSink()
    processor = BatchProcessor([sink], config.batching, None)
    try:
        for _ in range(5):
            processor.submit(make_span())
        assert processor.flush(timeout=30)
    finally:
        processor.close(10)
    assert [len(b) for b in sink.batches] == [1] * 5


def test_e2i_config__breaker__half_open_calls_and_success_threshold(tmp_path):
    clock = Clock()
    breaker = CircuitBreaker.from_settings(e2i_config(tmp_path).circuit_breaker, clock=clock)
    for _ in range(3):  # failure_threshold 3
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 20  # reset_timeout_seconds
    assert [breaker.allow() for _ in range(3)] == [True, True, False]  # half_open_max_calls 2
    breaker.record_success()
    assert breaker.state == "half_open"  # success_threshold 2
    breaker.record_success()
    assert breaker.state == "closed"


def test_e2i_config__breaker_disabled__never_opens(tmp_path):
    config = e2i_config(tmp_path, circuit_breaker={"enabled": False})
    breaker = CircuitBreaker.from_settings(config.circuit_breaker)
    for _ in range(10):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == "closed"


def test_e2i_config__flush_on_shutdown__false_spools_at_exit_true_sends(tmp_path):
    """At interpreter exit: true sends what is queued; false leaves it in the spool."""
    script = textwrap.dedent(
        """
        import sys, time
        from datetime import timedelta
        from pathlib import Path
        from src.agents.ml_foundation.observability_connector.batch_processor import (
            BatchProcessor,
        )
        from src.agents.ml_foundation.observability_connector.config import BatchingSettings
        from src.agents.ml_foundation.observability_connector.models import (
            ObservabilitySpan, utc_now,
        )

        out = Path(sys.argv[1])

        class FileSink:
            name = "file"
            def write(self, batch):
                time.sleep(0.5)  # still writing when close() looks, if the worker got there
                with out.open("a") as f:
                    f.write("".join(s.span_id + "\\n" for s in batch))
                return len(batch)

        settings = BatchingSettings(
            max_batch_size=1000,  # nothing is sent before exit
            max_batch_wait_seconds=600,
            flush_on_shutdown=sys.argv[2] == "true",
        )
        processor = BatchProcessor([FileSink()], settings, Path(sys.argv[3]))
        start = utc_now()
        for i in range(300):
            processor.submit(ObservabilitySpan(
                span_id=f"{i + 1:016x}", trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
                operation_name="op", agent_name="a", start_time=start,
                end_time=start + timedelta(milliseconds=1)))
        """
    )
    counts = {}
    for flag in ("true", "false"):
        out, spool = tmp_path / f"sent-{flag}.txt", tmp_path / f"spool-{flag}"
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        subprocess.run(
            [sys.executable, "-c", script, str(out), flag, str(spool)],
            check=True,
            timeout=120,
            env=env,
        )
        sent = len(out.read_text().splitlines()) if out.exists() else 0
        spooled = sum(len(b.spans) for b in Spool(spool / "file", 1 << 30).pending_batches())
        counts[flag] = (sent, spooled)
    assert counts["true"] == (300, 0)
    assert counts["false"][1] == 300


# --- storage and retention ---------------------------------------------------------------


def test_e2i_config__insert_batch_size__database_inserts_in_chunks(tmp_path):
    sizes: list[int] = []

    class RecordingRepository(SqliteSpanRepository):
        def insert_spans_batch_blocking(self, spans: Sequence[ObservabilitySpan]) -> int:
            sizes.append(len(spans))
            return super().insert_spans_batch_blocking(spans)

    config = e2i_config(tmp_path)
    repository = RecordingRepository(tmp_path / "spans.db")
    sink = DatabaseSink(repository, insert_batch_size=config.storage.insert_batch_size)
    try:
        sink.setup()
        assert sink.write([make_span() for _ in range(100)]) == 100
    finally:
        sink.close()
    assert sizes == [40, 40, 20]
    assert len(stored(tmp_path / "spans.db")) == 100


def test_e2i_config__cleanup_dry_run_and_ttl__cli_counts_then_deletes(tmp_path):
    """span_ttl_days 30, cleanup.dry_run true: `db cleanup` counts; --no-dry-run deletes."""
    path = tmp_path / "spans.db"

    async def seed() -> None:
        repository = SqliteSpanRepository(path)
        await repository.setup()
        old = make_span()
        old = old.model_copy(
            update={
                "start_time": old.start_time - timedelta(days=31),
                "end_time": old.end_time - timedelta(days=31),  # type: ignore[operator]
            }
        )
        await repository.insert_spans_batch([old, make_span()])
        await repository.close()

    asyncio.run(seed())
    args = ["--config", str(E2I_FILE), "--database-url", f"sqlite:///{path}", "db", "cleanup"]
    env = {"E2I_OBS_CONFIG": None, "E2I_OBS_DATABASE_URL": None, "REDIS_URL": None}
    runner = CliRunner()
    dry = runner.invoke(app, args, env=env, catch_exceptions=False)
    assert dry.exit_code == 0, dry.output
    assert "would delete (dry run, nothing deleted) 1 spans older than 30 days" in dry.stdout
    assert len(stored(path, "60d")) == 2
    real = runner.invoke(app, [*args, "--no-dry-run", "--yes"], env=env, catch_exceptions=False)
    assert "deleted 1 spans older than 30 days" in real.stdout
    assert len(stored(path, "60d")) == 1


@pytest.mark.postgres
def test_e2i_config__database_pool__min_connections_opened(tmp_path, pg_dsn):
    """E2I's database.pool.min_connections: the pool keeps that many connections open."""
    assert e2i_config(tmp_path).storage.pool_min_size == 2  # the E2I file's pool, read
    path = tmp_path / "pool.yaml"
    path.write_text(
        "database:\n  pool: {min_connections: 5, max_connections: 6, "
        "connection_timeout_seconds: 7}\n",
        encoding="utf-8",
    )
    config = load_config(path, env={"E2I_OBS_DATABASE_URL": pg_dsn})
    assert config.storage.pool_timeout_seconds == 7.0
    repository = create_span_repository(config)
    dbname = pg_dsn.rsplit("/", 1)[1]

    async def open_and_count() -> int:
        await repository.setup()
        count = 0
        with psycopg.connect(pg_dsn) as conn:
            for _ in range(400):  # the pool fills to min_size in the background
                (count,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = 'e2i-observability' AND datname = %s",
                    [dbname],
                ).fetchone()
                if count >= 5:
                    break
                await asyncio.sleep(0.05)
        return int(count)

    try:
        assert 5 <= asyncio.run(open_and_count()) <= 6
    finally:
        asyncio.run(repository.close())


def test_e2i_config__shipped_default__equals_built_in_defaults():
    assert load_config(env={}) == ObservabilityConfig()


# --- Opik: the local endpoint, the key variable, redaction -------------------------------


async def test_e2i_config__use_local__spans_reach_the_local_opik_masked(tmp_path, opik_server):
    """use_local + local_endpoint + local_port: the connector talks to the self-hosted Opik's
    /api (here the loopback server) with the key from api_key_env; E2I's input_data and
    set_output arrive there with the password masked."""
    env = {"E2I_TEST_OPIK_KEY": "e2i-local-key", "OPIK_URL_OVERRIDE": "http://127.0.0.1:9/api"}
    config = e2i_config(
        tmp_path,
        env=env,
        opik={
            "enabled": True,
            "local_endpoint": "http://127.0.0.1",
            "local_port": opik_server.port,
        },
    )
    assert config.opik.effective_url == opik_server.base_url
    connector = build_opik_connector(config)
    try:
        async with connector.trace_agent(
            agent_name="causal_impact",
            operation="estimate",
            input_data={"question": "uplift?", "password": SECRET},
        ) as span:
            span.set_output({"ate": 0.12, "authorization": f"Bearer {SECRET}"})
        assert await asyncio.to_thread(connector.flush, 60)
    finally:
        await asyncio.to_thread(connector.close, 10)

    (received,) = opik_server.received_spans()
    assert received["input"] == {"question": "uplift?", "password": REDACTED}
    assert received["output"] == {"ate": 0.12, "authorization": REDACTED}
    requests = opik_server.accepted("POST", "/api/v1/private/spans/batch")
    assert requests[0].headers["authorization"] == "e2i-local-key"
    assert requests[0].headers["comet-workspace"] == "e2i-workspace"
    assert SECRET not in json.dumps([r.body for r in opik_server.requests])
    (row,) = await asyncio.to_thread(stored, tmp_path / "spans.db")
    assert row.attributes["input"]["password"] == REDACTED
