"""`create_span_repository`: the configured backend, built without touching disk or network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from src.agents.ml_foundation.observability_connector.config import (
    ConfigError,
    ObservabilityConfig,
    load_config,
)
from src.agents.ml_foundation.observability_connector.models import ObservabilitySpan
from src.repositories.observability_span import (
    PostgresSpanRepository,
    SpanRepository,
    SqliteSpanRepository,
    SupabaseSpanRepository,
    create_span_repository,
)

SECRET = "pa55-w0rd"


def config(**storage) -> ObservabilityConfig:
    return ObservabilityConfig.model_validate({"storage": storage})


def test_create_span_repository__sqlite__repository_on_that_path_and_no_file_yet(tmp_path):
    path = tmp_path / "obs" / "spans.db"
    repo = create_span_repository(config(backend="sqlite", sqlite_path=str(path)))
    assert isinstance(repo, SqliteSpanRepository) and isinstance(repo, SpanRepository)
    assert repo.path == path
    assert not path.parent.exists()


def test_create_span_repository__postgres_url__postgres_repository_without_password_in_repr():
    url = f"postgresql://app:{SECRET}@db.internal:6543/e2i"
    repo = create_span_repository(config(backend="postgres", url=url, pool_max_size=3))
    assert isinstance(repo, PostgresSpanRepository)
    assert "db.internal:6543/e2i" in repr(repo) and SECRET not in repr(repo)


def test_create_span_repository__environment_url__backend_follows_the_url(tmp_path):
    env = {"E2I_OBS_DATABASE_URL": "postgresql://app@localhost/e2i"}
    empty = tmp_path / "observability.yaml"
    empty.write_text("")
    repo = create_span_repository(load_config(empty, env=env), clock=None)
    assert isinstance(repo, PostgresSpanRepository)


def test_create_span_repository__postgres_without_url__config_error_naming_storage_url():
    with pytest.raises(ConfigError, match=r"storage\.url"):
        create_span_repository(config(backend="postgres"))


def test_create_span_repository__supabase__supabase_repository_without_key_in_repr():
    cfg = config(backend="supabase", supabase_url="https://x.supabase.co", supabase_key=SECRET)
    repo = create_span_repository(cfg)
    assert isinstance(repo, SupabaseSpanRepository) and isinstance(repo, SpanRepository)
    assert SECRET not in repr(repo)


def test_create_span_repository__supabase_without_key__config_error_naming_it():
    with pytest.raises(ConfigError, match="supabase_key"):
        create_span_repository(config(backend="supabase", supabase_url="https://x.supabase.co"))


async def test_create_span_repository__clock__anchors_windows(tmp_path):
    now = datetime(2030, 1, 1, tzinfo=UTC)
    repo = create_span_repository(
        config(backend="sqlite", sqlite_path=str(tmp_path / "s.db")), clock=lambda: now
    )
    span = ObservabilitySpan(
        span_id="00f067aa0ba902b7",
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        operation_name="plan",
        agent_name="orchestrator",
        start_time=now - timedelta(minutes=30),
        end_time=now - timedelta(minutes=29),
    )
    await repo.setup()
    await repo.insert_span(span)
    assert await repo.get_spans_by_time_window("1h") == [span]  # 2030 is "now" for it
    await repo.close()
