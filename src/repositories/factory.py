"""`create_span_repository`: the backend `storage.backend` names, built from configuration.

The backend comes from `storage.backend` in `config/observability.yaml` (or the environment:
`E2I_OBS_DATABASE_URL=sqlite:///path | postgresql://...`, `SUPABASE_URL` + `SUPABASE_KEY`).
Nothing is opened here: the returned repository connects on first use, after `setup()`.
"""

from __future__ import annotations

from src.agents.ml_foundation.observability_connector.config import (
    ConfigError,
    ObservabilityConfig,
    load_config,
)
from src.repositories._arguments import Clock
from src.repositories.postgres_repository import PostgresSpanRepository
from src.repositories.span_store import SpanRepository
from src.repositories.sqlite_repository import SqliteSpanRepository
from src.repositories.supabase_repository import SupabaseSpanRepository

__all__ = ["create_span_repository"]


def create_span_repository(
    config: ObservabilityConfig | None = None, *, clock: Clock | None = None
) -> SpanRepository:
    """Build the repository named by `config.storage.backend` (default: `load_config()`).

    `clock` (a callable returning an aware datetime) anchors time windows; default: UTC now.
    """
    storage = (config if config is not None else load_config()).storage
    if storage.backend == "sqlite":
        return SqliteSpanRepository(storage.sqlite_path, clock=clock)
    if storage.backend == "postgres":
        if storage.url is None:
            raise ConfigError(
                "storage.url is required for storage.backend 'postgres'; set it in "
                "config/observability.yaml or E2I_OBS_DATABASE_URL=postgresql://user@host/db"
            )
        return PostgresSpanRepository(
            storage.url.get_secret_value(),
            min_size=storage.pool_min_size,
            max_size=storage.pool_max_size,
            clock=clock,
            timeout=storage.pool_timeout_seconds,
            authenticated_read=storage.supabase_authenticated_read,
        )
    if storage.backend == "supabase":
        if not storage.supabase_url or storage.supabase_key is None:
            raise ConfigError(
                "storage.supabase_url and storage.supabase_key are required for storage.backend "
                "'supabase'; set SUPABASE_URL and SUPABASE_KEY (the project's service-role key)"
            )
        return SupabaseSpanRepository(
            storage.supabase_url,
            storage.supabase_key,
            clock=clock,
            timeout=storage.timeout_seconds,
        )
    raise ConfigError(  # unreachable while the config's Literal is validated
        f"storage.backend {storage.backend!r} is not supported; "
        "accepted: sqlite, postgres, supabase"
    )
