"""The PostgreSQL backend's connection pool, on a private event loop; errors without secrets.

psycopg's `AsyncConnectionPool` belongs to the loop that opened it (its locks, its worker
tasks, its connections), but the span repository is awaited from several loops: the batch
processor's database sink runs its own, the agent's graph another, and scripts call
`asyncio.run()` more than once. A pool per caller loop is fragile: when such a loop ends while
a pool worker is mid-task (say, connecting in the background), the worker swallows the
cancellation and `asyncio.run()` never returns. So `PoolRunner` owns one pool on one private
loop in a daemon thread (a `LoopThread`, started on first use) and runs each operation there;
callers on any loop await the result. Cancelling the caller cancels the operation. A pool
belongs to the loop that opened it: a forked child (which gets a fresh loop) opens its own and
leaves the parent's untouched, since finishing it would end the parent's sessions.

Connections are in autocommit mode: a read is one statement (its own snapshot and transaction),
so it costs one round trip; a write opens its transaction with `conn.transaction()`.
Connections are not checked at checkout (that cost a round trip per batch); an operation whose
connection turns out broken (the server restarted, a proxy dropped an idle session) runs again
on another connection, which is what the check did, paid only when it happens.

A new connection can be warmed (`warm`, run by the pool before it hands the connection out):
PostgreSQL compiles a PL/pgSQL function and fills its catalog caches on a session's first call,
~20-25 ms for the window read, which a dashboard's first metrics call paid once per pool
connection. Warming must only read; a failure (the schema not applied yet, no privilege) is
logged at debug level and the connection used unwarmed, unless the connection itself broke.

Every psycopg failure leaves here as `RepositoryError` naming the operation and the server
(host:port/db), never the DSN's password; a data or integrity error (SQLSTATE class 22 or 23,
e.g. 22003 for a number out of range) as `RepositoryDataError`, which the pipeline never
retries.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import math
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from src.agents.ml_foundation.observability_connector.loop_thread import LoopThread
from src.repositories.span_store import (
    RepositoryDataError,
    RepositoryError,
    is_data_error_sqlstate,
)

__all__ = ["PoolRunner", "describe_target"]

logger = logging.getLogger(__name__)
T = TypeVar("T")
Work = Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]


def describe_target(dsn: str) -> tuple[str, str | None]:
    """`host:port/dbname` of a DSN (for messages) and its password (to scrub from them).

    A malformed DSN is a ValueError that does not repeat the DSN (libpq's message would).
    """
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise ValueError(
            "dsn is not a valid PostgreSQL connection string; accepted: "
            "postgresql://user[:password]@host[:port]/dbname or 'host=... dbname=...'"
        ) from None
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    port = str(params.get("port") or 5432)
    dbname = str(params.get("dbname") or params.get("user") or "")
    password = params.get("password")
    return f"{host}:{port}/{dbname}", (str(password) if password else None)


class PoolRunner:
    """Runs `work(connection)` on a pooled connection, on the runner's own event loop."""

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int,
        max_size: int,
        timeout: float,
        name: str,
        warm: Work[None] | None = None,
    ) -> None:
        self._dsn = dsn
        self._target, self._password = describe_target(dsn)
        self._min_size = min_size
        self._max_size = max_size
        self._timeout = timeout
        self._name = name
        self._warm = warm
        self._lock = threading.Lock()
        self._loop_thread = LoopThread(f"{name}-loop")
        self._pool: AsyncConnectionPool | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._parent_pools: list[AsyncConnectionPool] = []  # inherited through fork()
        self._closed = False
        self._last_connect_error: str | None = None
        # Registered now, so it runs after the hooks of anything built on this repository later
        # (the batch processor's final flush): atexit runs hooks last-registered first.
        atexit.register(self._close_at_exit)

    @property
    def target(self) -> str:
        return self._target

    async def run(self, operation: str, work: Work[T]) -> T:
        """Await `work` on a pooled connection; psycopg failures become `RepositoryError`."""
        with self._lock:
            if self._closed:
                raise RepositoryError(f"PostgreSQL {operation}: the repository is closed")
            future = self._loop_thread.submit_threadsafe(
                lambda: self._on_connection(operation, work)
            )
        return await asyncio.wrap_future(future)

    async def close(self, timeout: float = 5.0) -> None:
        """Close the pool and stop the private loop. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self._close_at_exit)
        try:
            if self._loop_thread.is_running:
                await asyncio.wait_for(
                    self._loop_thread.arun(lambda: self._close_pool(timeout)), timeout + 1.0
                )
        except (TimeoutError, psycopg.Error) as exc:
            logger.warning("closing connection pool %s: %s", self._name, type(exc).__name__)
        finally:
            await asyncio.to_thread(self._loop_thread.stop, timeout)

    def _close_at_exit(self, timeout: float = 1.0) -> None:
        """A pool nobody closed, at interpreter exit: close it on its loop, then stop the loop.
        Left to the daemon thread's death, each of its worker tasks was printed as "Task was
        destroyed but it is pending!"."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self._loop_thread.is_running:
                self._loop_thread.run(lambda: self._close_pool(timeout), timeout + 1.0)
        except (TimeoutError, RuntimeError, psycopg.Error) as exc:
            logger.debug("closing connection pool %s at exit: %s", self._name, type(exc).__name__)
        finally:
            self._loop_thread.stop(timeout)

    # -- on the runner's loop -----------------------------------------------------------------

    async def _on_connection(self, operation: str, work: Work[T]) -> T:
        try:
            pool = self._current_pool()
            await pool.open()  # a no-op once open
            # A pooled connection that had died (a server restart, an idle timeout) fails at
            # once and the pool drops it; the work runs again on the next, at most once per
            # pooled connection. Every operation is safe to repeat: inserts are idempotent,
            # reads read, a retention call deletes the next batch.
            for _ in range(self._max_size):
                async with pool.connection() as conn:
                    try:
                        return await work(conn)
                    except psycopg.OperationalError:
                        if not conn.broken:
                            raise
            async with pool.connection() as conn:
                return await work(conn)
        except PoolTimeout:
            cause = self._last_connect_error
            cause = f"last connection attempt: {cause}" if cause else "pool exhausted?"
            raise RepositoryError(
                f"PostgreSQL {operation}: no connection to {self._target} within "
                f"{self._timeout:g} s ({cause})"
            ) from None
        except psycopg.Error as exc:
            error = RepositoryDataError if _is_data_error(exc) else RepositoryError
            raise error(
                f"PostgreSQL {operation} on {self._target} failed: {self._describe(exc)}"
            ) from None

    def _current_pool(self) -> AsyncConnectionPool:
        """This loop's pool, made on first use; a pool of another loop (the parent's, after
        `fork()`) stays referenced and untouched."""
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._pool_loop is not loop:
            self._parent_pools.append(self._pool)
            self._pool = None
        if self._pool is None:
            self._pool, self._pool_loop = self._new_pool(), loop
        return self._pool

    async def _close_pool(self, timeout: float) -> None:
        if self._pool is not None and self._pool_loop is asyncio.get_running_loop():
            pool, self._pool = self._pool, None
            await pool.close(timeout=timeout)

    def _new_pool(self) -> AsyncConnectionPool:
        return AsyncConnectionPool(
            self._dsn,
            connection_class=self._connection_class(),
            min_size=self._min_size,
            max_size=self._max_size,
            open=False,
            timeout=self._timeout,
            name=self._name,
            configure=self._warm_connection if self._warm is not None else None,
            kwargs={
                "connect_timeout": max(2, math.ceil(self._timeout)),
                "application_name": "e2i-observability",
                # A read is one statement, its own transaction: without autocommit psycopg
                # sent BEGIN before it and the pool's exit a COMMIT after it, two more round
                # trips per read. Writes open theirs with `conn.transaction()` as before.
                "autocommit": True,
            },
            # No check per checkout (a round trip per batch): `_on_connection` retries once
            # on another connection when the one handed out turns out broken.
        )

    async def _warm_connection(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """The pool's `configure`: run `warm` once on a new connection (autocommit, so a failed
        statement leaves it idle); a broken connection fails, so the pool makes another."""
        assert self._warm is not None
        try:
            await self._warm(conn)
        except psycopg.Error as exc:
            if conn.broken:
                raise
            logger.debug("warming a %s connection: %s", self._name, self._describe(exc))

    def _connection_class(self) -> type[psycopg.AsyncConnection[Any]]:
        """psycopg's connection class, remembering why the last connection attempt failed:
        the pool itself only reports a timeout, but the cause is what the operator needs."""
        runner = self

        class RecordingConnection(psycopg.AsyncConnection[Any]):
            @classmethod
            async def connect(cls, *args: Any, **kwargs: Any) -> Any:
                try:
                    conn = await super().connect(*args, **kwargs)
                except psycopg.Error as exc:
                    runner._last_connect_error = runner._describe(exc)
                    raise
                runner._last_connect_error = None
                return conn

        return RecordingConnection

    def _describe(self, exc: psycopg.Error) -> str:
        lines = str(exc).strip().splitlines()
        text = lines[0] if lines else ""
        if self._password:
            text = text.replace(self._password, "**********")
        state = f" [SQLSTATE {exc.sqlstate}]" if exc.sqlstate else ""
        return f"{type(exc).__name__}{state}: {text}"


def _is_data_error(exc: psycopg.Error) -> bool:
    """Refused for its values: psycopg's DataError / IntegrityError, or SQLSTATE class 22 / 23."""
    data = isinstance(exc, psycopg.DataError | psycopg.IntegrityError)
    return data or is_data_error_sqlstate(exc.sqlstate)
