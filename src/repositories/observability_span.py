"""Span storage: the protocol, its backends, `create_span_repository` choosing one, and
`ObservabilitySpanRepository`, the API E2I's modules call (an adapter over the chosen backend).

The backend comes from `storage.backend` in `config/observability.yaml` (or the environment:
`E2I_OBS_DATABASE_URL=sqlite:///path | postgresql://...`, `SUPABASE_URL` + `SUPABASE_KEY`).
Nothing is opened here: a repository connects on first use, after `setup()`.
"""

from __future__ import annotations

from src.repositories.e2i_span_repository import ObservabilitySpanRepository
from src.repositories.factory import create_span_repository
from src.repositories.postgres_repository import PostgresSpanRepository
from src.repositories.span_store import TABLE_NAME, RepositoryError, SpanRepository
from src.repositories.sqlite_repository import SqliteSpanRepository
from src.repositories.supabase_repository import SupabaseSpanRepository

__all__ = [
    "TABLE_NAME",
    "ObservabilitySpanRepository",
    "PostgresSpanRepository",
    "RepositoryError",
    "SpanRepository",
    "SqliteSpanRepository",
    "SupabaseSpanRepository",
    "create_span_repository",
]
