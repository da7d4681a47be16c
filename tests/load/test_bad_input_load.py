"""Bad input under load, into a real PostgreSQL (the strictest store: no NUL, UTF-8 only).

8 threads, each request carrying malformed `traceparent` headers, megabyte prompts with
non-UTF-8 text (lone surrogates from `surrogateescape`, NUL), and a provider reporting NaN,
negative and non-numeric token counts. Through both ways in: the callback handler and
`trace_agent` + `trace_llm_call_sync`. Expected: no exception reaches the agent, every bad
value is counted, texts are cut to `capture.max_chars` and stored as valid text, tokens left
empty, and every span lands in the database (nothing rejected, dropped or stuck in the spool).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from src.agents.ml_foundation.observability_connector.batch_processor import BatchProcessor
from src.agents.ml_foundation.observability_connector.callback import (
    ObservabilityCallbackHandler,
)
from src.agents.ml_foundation.observability_connector.config import (
    BatchingSettings,
    CaptureSettings,
    ObservabilityConfig,
)
from src.agents.ml_foundation.observability_connector.db_sink import DatabaseSink
from src.agents.ml_foundation.observability_connector.nodes.context_manager import (
    InvalidContextCounter,
    extract,
    use_context,
)
from src.agents.ml_foundation.observability_connector.usage import INVALID_TOKEN_COUNTS
from src.mlops.opik_connector import OpikConnector
from src.mlops.opik_mapping import PROMPT_ATTRIBUTE, PROMPT_TRUNCATED_ATTRIBUTE
from src.repositories.postgres_repository import PostgresSpanRepository
from src.repositories.span_store import TABLE_NAME
from tests.load.support import WAIT, SqlitePipeline, sqlite_span_keys

pytestmark = [pytest.mark.load, pytest.mark.postgres]

THREADS = 8
REQUESTS = 40  # per thread; each request: one handler-traced call, one trace_agent + LLM call
MAX_CHARS = 500
BAD_TEXT = "\udcff\udcfe\x00 not UTF-8 "  # what surrogateescape-decoded bytes and NUL look like
HUGE_PROMPT = BAD_TEXT + "p" * 1_000_000
BAD_TRACEPARENTS = (
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  # flags missing
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all-zero trace id
    "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # v00 with more fields
    "\udcff" * 55,
    "",
)
GARBAGE_USAGE = {"prompt_tokens": -5, "completion_tokens": float("nan"), "total_tokens": "many"}


class MisbehavingChatModel(BaseChatModel):
    """A provider that answers with non-UTF-8 text and nonsense token counts."""

    @property
    def _llm_type(self) -> str:
        return "misbehaving"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = AIMessage(
            content=BAD_TEXT + "r" * 10_000,
            response_metadata={"model_name": "bad-model", "token_usage": dict(GARBAGE_USAGE)},
        )
        return ChatResult(
            generations=[ChatGeneration(message=reply)],
            llm_output={"token_usage": dict(GARBAGE_USAGE)},
        )


def test_bad_input__under_load__counted_truncated_stored_never_raised(
    pg_dsn: str, tmp_path: Path
) -> None:
    capture = CaptureSettings(prompts=True, max_chars=MAX_CHARS)
    sink = DatabaseSink(PostgresSpanRepository(pg_dsn), timeout=60)
    sink.setup()
    processor = BatchProcessor(
        [sink], BatchingSettings(max_batch_wait_seconds=3600.0), tmp_path / "spool"
    )
    connector = OpikConnector(processor, config=ObservabilityConfig(capture=capture))
    handler = ObservabilityCallbackHandler(
        "bad_input_agent", connector, capture_prompts=capture.prompts, max_chars=capture.max_chars
    )
    model = MisbehavingChatModel()
    invalid_headers = InvalidContextCounter()
    token_problems_before = INVALID_TOKEN_COUNTS.count
    errors: list[BaseException] = []

    def requests(t: int) -> None:
        try:
            for i in range(REQUESTS):
                header = BAD_TRACEPARENTS[(t + i) % len(BAD_TRACEPARENTS)]
                ctx = extract({"traceparent": header, "tracestate": "k=v"}, invalid_headers)
                with use_context(ctx):
                    model.invoke([HumanMessage(content=HUGE_PROMPT)], {"callbacks": [handler]})
                    with connector.trace_agent("bad_input_agent", f"request-{t}-{i}"):
                        connector.trace_llm_call_sync(
                            "bad-model", HUGE_PROMPT, lambda: model.invoke(HUGE_PROMPT)
                        )
        except BaseException as exc:  # anything here reached the agent: the test fails
            errors.append(exc)

    threads = [threading.Thread(target=requests, args=(t,)) for t in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert connector.flush(WAIT)
        stats = processor.stats()
    finally:
        connector.close(60)
        sink.close()

    calls = THREADS * REQUESTS
    assert errors == []
    assert invalid_headers.value == calls
    assert handler.stats["invalid_token_counts"] >= calls  # every misbehaving reply counted
    assert INVALID_TOKEN_COUNTS.count - token_problems_before >= calls
    assert (handler.stats["internal_errors"], handler.stats["submit_failures"]) == (0, 0)
    database = stats.sinks["database"]
    assert stats.submitted == 3 * calls == database.emitted  # nothing rejected, spooled, lost
    assert (stats.rejected, stats.dropped, database.spooled) == (0, 0, 0)

    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            f"SELECT span_kind, parent_span_id, attributes, input_tokens, output_tokens, "
            f"total_tokens FROM {TABLE_NAME}"
        ).fetchall()
    assert len(rows) == 3 * calls
    llm = [attrs for kind, _, attrs, *_ in rows if kind == "llm"]
    assert len(llm) == 2 * calls
    assert all((a, b, c) == (None, None, None) for *_, a, b, c in rows)
    handler_spans = [a for a in llm if "input" in a]
    connector_spans = [a for a in llm if PROMPT_ATTRIBUTE in a]
    assert len(handler_spans) == len(connector_spans) == calls
    for attrs in handler_spans:
        assert attrs["input_truncated"] is True and len(attrs["input"]) <= MAX_CHARS
        assert "\ufffd" in attrs["input"] and "\x00" not in attrs["input"]
        assert len(attrs["output"]) <= MAX_CHARS and "\ufffd" in attrs["output"]
    for attrs in connector_spans:
        assert attrs[PROMPT_TRUNCATED_ATTRIBUTE] is True
        assert len(attrs[PROMPT_ATTRIBUTE]) <= MAX_CHARS and "\ufffd" in attrs[PROMPT_ATTRIBUTE]


def test_bad_input__non_utf8_in_metadata_and_traceback__batch_delivered_counters_add_up(
    tmp_path: Path,
) -> None:
    pipeline = SqlitePipeline.build(
        tmp_path, BatchingSettings(max_batch_wait_seconds=3600.0, retry_max_attempts=1)
    )
    connector = OpikConnector(pipeline.processor)
    try:
        with connector.trace_agent("bad_input_agent", "good"):
            pass
        with connector.trace_agent("bad_input_agent", "metadata", metadata={"file": BAD_TEXT}):
            pass
        with pytest.raises(RuntimeError), connector.trace_agent("bad_input_agent", "raises"):
            raise RuntimeError(f"provider said {BAD_TEXT}")
        assert connector.flush(WAIT)
        stats = pipeline.processor.stats()
    finally:
        pipeline.close()

    assert stats.accounted("database") == stats.submitted == 3  # no span vanishes uncounted
    stored = sqlite_span_keys(pipeline.db)
    assert len(stored) == stats.sinks["database"].emitted >= 1  # the good span is not lost
