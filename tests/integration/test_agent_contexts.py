"""`ObservabilityConnectorAgent` built and called the way E2I's tier-0 pipeline does it
(E2I's integration notes, §6): a factory imports the package with `importlib`, takes the class
with `getattr` and calls it with no arguments, then asks for request contexts with keywords and
hands child contexts to stages, which trace under them. The process-default connector writes to
SQLite in tmp_path (Opik off); spans are read back from that file.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from src.agents.ml_foundation.observability_connector.config import SamplingSettings
from src.agents.ml_foundation.observability_connector.observability_context import CONTEXT_KEYS
from src.agents.ml_foundation.observability_connector.sampling import Sampler
from src.mlops.opik_default import get_opik_connector, reset_opik_connector
from src.repositories.observability_span import SqliteSpanRepository

PACKAGE = "src.agents.ml_foundation.observability_connector"
HEX32, HEX16 = re.compile(r"[0-9a-f]{32}"), re.compile(r"[0-9a-f]{16}")


@pytest.fixture
def default_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The process-default connector's config: SQLite in tmp_path, Opik off."""
    config = tmp_path / "observability.yaml"
    config.write_text(
        "opik:\n  enabled: false\n"
        f"storage:\n  backend: sqlite\n  sqlite_path: {tmp_path / 'default.db'}\n"
        f"  spool_dir: {tmp_path / 'spool'}\n",
        encoding="utf-8",
    )
    for name in ("E2I_OBS_DATABASE_URL", "SUPABASE_URL", "SUPABASE_KEY", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("E2I_OBS_CONFIG", str(config))
    reset_opik_connector()
    yield tmp_path / "default.db"
    reset_opik_connector(10.0)


def make_agent(name: str = "ObservabilityConnectorAgent"):
    """What E2I's agent factories do: import the package, getattr the class, call it."""
    module = importlib.import_module(PACKAGE)
    agent_class = getattr(module, name)
    return agent_class()


def read_spans(path: Path):
    async def read():
        repository = SqliteSpanRepository(path)
        try:
            return await repository.get_spans_by_time_window("1h")
        finally:
            await repository.close()

    return asyncio.run(read())


def test_factory__no_arguments__adopts_the_process_default_connector(default_db):
    agent = make_agent()
    assert agent.connector is get_opik_connector()
    assert agent.config.storage.sqlite_path == default_db
    assert agent.close() is True  # flushes only: the default stays usable
    with get_opik_connector().trace_agent("scope_definer", "define"):
        pass
    assert get_opik_connector().flush(10.0)
    assert [s.operation_name for s in read_spans(default_db)] == ["define"]


def test_create_observability_context__keywords__e2i_context_dict(default_db):
    agent = make_agent()
    user = str(uuid.uuid4())

    ctx = agent.create_observability_context(
        request_id="pipeline-run-42", experiment_id="exp-7", user_id=user, sample_rate=1.0
    )

    assert tuple(ctx) == CONTEXT_KEYS
    assert HEX32.fullmatch(ctx["trace_id"]) and HEX16.fullmatch(ctx["span_id"])
    assert ctx["trace_id"][12] == "7"  # a UUIDv7, also a valid Opik id when dashed
    assert {k: v for k, v in ctx.items() if k not in ("trace_id", "span_id")} == {
        "parent_span_id": None,
        "request_id": "pipeline-run-42",
        "experiment_id": "exp-7",
        "user_id": user,
        "sampled": True,
        "sample_rate": 1.0,
    }
    other = agent.create_observability_context(request_id=uuid.uuid4())
    assert other["trace_id"] != ctx["trace_id"]
    assert (other["experiment_id"], other["user_id"]) == (None, None)


def test_create_child_context__chain__same_trace_new_span_parent_set(default_db):
    agent = make_agent()
    root = agent.create_observability_context(request_id="run-1", experiment_id="exp-1")

    child = agent.create_child_context(parent_context=root, operation_name="data_preparation")
    grandchild = agent.create_child_context(child)

    assert tuple(child) == CONTEXT_KEYS
    assert child["trace_id"] == grandchild["trace_id"] == root["trace_id"]
    assert child["parent_span_id"] == root["span_id"]
    assert grandchild["parent_span_id"] == child["span_id"]
    assert len({root["span_id"], child["span_id"], grandchild["span_id"]}) == 3
    for key in ("request_id", "experiment_id", "user_id", "sampled", "sample_rate"):
        assert child[key] == grandchild[key] == root[key]


def test_contexts__stages_trace_under_them__one_tree_in_the_store(default_db):
    agent = make_agent()
    opik = get_opik_connector()
    ctx = agent.create_observability_context(request_id="run-9")

    async def pipeline() -> None:
        for stage in ("scope_definer", "model_trainer"):
            stage_ctx = agent.create_child_context(ctx, operation_name="execute")
            async with opik.trace_agent(
                stage,
                "execute",
                trace_id=stage_ctx["trace_id"],
                parent_span_id=stage_ctx["parent_span_id"],
            ):
                pass

    asyncio.run(pipeline())
    assert opik.flush(10.0)

    spans = read_spans(default_db)
    assert sorted(s.agent_name for s in spans) == ["model_trainer", "scope_definer"]
    assert {(s.trace_id, s.parent_span_id) for s in spans} == {(ctx["trace_id"], ctx["span_id"])}


def test_create_child_context__parent_with_dashed_uuid_ids__mapped_like_the_connector(default_db):
    """A context made by another E2I service with `str(uuid4())` ids."""
    trace, span = uuid.uuid4(), uuid.uuid4()
    parent = {"trace_id": str(trace), "span_id": str(span), "request_id": "r", "sampled": False}

    child = make_agent().create_child_context(parent)

    assert child["trace_id"] == trace.hex
    assert child["parent_span_id"] == f"{span.int & (2**64 - 1):016x}"
    assert (child["sampled"], child["sample_rate"], child["request_id"]) == (False, 1.0, "r")


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 1.0])
def test_sampled__rate__the_batch_processors_decision_for_that_trace(default_db, rate):
    agent = make_agent()
    sampler = Sampler(SamplingSettings(default_rate=rate, always_sample_errors=False))

    contexts = [
        agent.create_observability_context(request_id=f"r{i}", sample_rate=rate) for i in range(400)
    ]

    assert all(c["sampled"] is sampler.should_keep_trace(c["trace_id"]) for c in contexts)
    kept = sum(c["sampled"] for c in contexts) / len(contexts)
    assert abs(kept - rate) <= 0.1  # > 4 standard deviations at n = 400
    for ctx in contexts[:20]:
        child = agent.create_child_context(ctx)
        assert child["sampled"] is ctx["sampled"]
        unmarked = {k: v for k, v in ctx.items() if k != "sampled"}
        assert agent.create_child_context(unmarked)["sampled"] is ctx["sampled"]


@pytest.mark.parametrize("rate", [-0.1, 1.5, math.nan, math.inf, True, "0.5", None])
def test_create_observability_context__bad_sample_rate__value_error_naming_it(default_db, rate):
    with pytest.raises(ValueError, match=r"sample_rate must be a number from 0\.0 to 1\.0") as e:
        make_agent().create_observability_context(request_id="r", sample_rate=rate)
    assert repr(rate) in str(e.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"request_id": None}, "request_id"),
        ({"request_id": ""}, "request_id"),
        ({"request_id": 42}, "request_id"),
        ({"request_id": "r", "experiment_id": ""}, "experiment_id"),
        ({"request_id": "r", "user_id": 7}, "user_id"),
    ],
)
def test_create_observability_context__bad_ids__value_error_naming_the_field(
    default_db, kwargs, field
):
    with pytest.raises(ValueError, match=field):
        make_agent().create_observability_context(**kwargs)


@pytest.mark.parametrize(
    ("parent", "operation", "message"),
    [
        ("not a context", None, "parent_context must be a dict"),
        ({"span_id": "00f067aa0ba902b7"}, None, r"parent_context\['trace_id'\] is missing"),
        ({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}, None, r"\['span_id'\] is missing"),
        (
            {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"},
            "",
            "operation_name must be a non-empty string",
        ),
        (
            {
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                "span_id": "00f067aa0ba902b7",
                "sample_rate": 2,
            },
            None,
            r"parent_context\['sample_rate'\] must be a number from 0\.0 to 1\.0, got 2",
        ),
    ],
)
def test_create_child_context__bad_parent__value_error_saying_what_is_wrong(
    default_db, parent, operation, message
):
    with pytest.raises(ValueError, match=message):
        make_agent().create_child_context(parent, operation_name=operation)
