"""A throwaway PostgreSQL server for the storage benchmarks.

Reuses the test suite's server starter (`tests/fixtures/postgres.py`: initdb into a temp dir,
127.0.0.1, trust auth, fsync off), so benchmarks and tests run on the same kind of server. With
fsync off both our pipeline and the raw COPY floor skip the disk flush alike: the ratio compares
CPU and round trips, which is what the pipeline adds.
"""

from __future__ import annotations

import asyncio
import uuid

import psycopg

from src.repositories.span_store import SpanRepository
from tests.fixtures.postgres import PgServer
from tests.fixtures.postgres import running_pg_server as postgres_server

__all__ = ["PgServer", "apply_schema", "fresh_database", "postgres_server", "server_version"]


def fresh_database(server: PgServer, prefix: str) -> str:
    """Create an empty database and return its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    server.execute(f'CREATE DATABASE "{name}" TEMPLATE template1')
    return server.dsn(name)


def server_version(server: PgServer) -> str:
    with psycopg.connect(server.admin_dsn) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def apply_schema(repository: SpanRepository) -> None:
    """Run the repository's own `setup()` (the real schema and indexes), then close it."""

    async def setup_and_close() -> None:
        await repository.setup()
        await repository.close()

    asyncio.run(setup_and_close())
