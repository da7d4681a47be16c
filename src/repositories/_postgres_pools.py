"""The PostgreSQL backend's connection pool, on a private event loop; errors without secrets.

psycopg's `AsyncConnectionPool` belongs to the loop that opened it (its locks, its worker
tasks, its connections), but the span repository is awaited from several loops: the batch
processor's database sink runs its own, the agent's graph another, and scripts call
`asyncio.run()` more than once. A pool per caller loop is fragile: when such a loop ends while
a pool worker is mid-task (say, connecting in the background), the worker swallows the
cancellation and `asyncio.run()` never returns. So `PoolRunner` owns one pool on one private
loop in a daemon thread (started on first use) and runs each operation there; callers on any
loop await the result. Cancelling the caller cancels the operation.

Every psycopg failure leaves here as `RepositoryError` naming the operation and the server
(host:port/db), never the DSN's password.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from src.repositories.base import RepositoryError

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
        self, dsn: str, *, min_size: int, max_size: int, timeout: float, name: str
    ) -> None:
        self._dsn = dsn
        self._target, self._password = describe_target(dsn)
        self._min_size = min_size
        self._max_size = max_size
        self._timeout = timeout
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._pool: AsyncConnectionPool | None = None
        self._forked_leftovers: list[Any] = []
        self._closed = False
        self._last_connect_error: str | None = None

    @property
    def target(self) -> str:
        return self._target

    async def run(self, operation: str, work: Work[T]) -> T:
        """Await `work` on a pooled connection; psycopg failures become `RepositoryError`."""
        loop = self._ensure_loop(operation)
        future = asyncio.run_coroutine_threadsafe(self._on_connection(operation, work), loop)
        return await asyncio.wrap_future(future)

    async def close(self, timeout: float = 5.0) -> None:
        """Close the pool and stop the private loop. Safe to call twice."""
        with self._lock:
            self._closed = True
            loop, self._loop = self._loop, None
            thread, self._thread = self._thread, None
        if loop is None or thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._close_pool(timeout), loop)
        try:
            await asyncio.wait_for(asyncio.wrap_future(future), timeout + 1.0)
        except (TimeoutError, psycopg.Error) as exc:
            logger.warning("closing connection pool %s: %s", self._name, type(exc).__name__)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join, timeout)

    # -- on the caller's side -----------------------------------------------------------------

    def _ensure_loop(self, operation: str) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RepositoryError(f"PostgreSQL {operation}: the repository is closed")
            if self._loop is not None and self._pid != os.getpid():
                # A forked child: the parent's loop thread is gone and its sockets are the
                # parent's. Keep them referenced (finishing them would end the parent's
                # sessions) and start afresh.
                self._forked_leftovers.append((self._loop, self._pool))
                self._loop = self._thread = self._pool = None
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=_serve, args=(loop,), name=f"{self._name}-loop", daemon=True
                )
                thread.start()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    # -- on the runner's loop -----------------------------------------------------------------

    async def _on_connection(self, operation: str, work: Work[T]) -> T:
        try:
            if self._pool is None:
                self._pool = self._new_pool()
            await self._pool.open()  # a no-op once open
            async with self._pool.connection() as conn:
                return await work(conn)
        except PoolTimeout:
            cause = self._last_connect_error
            cause = f"last connection attempt: {cause}" if cause else "pool exhausted?"
            raise RepositoryError(
                f"PostgreSQL {operation}: no connection to {self._target} within "
                f"{self._timeout:g} s ({cause})"
            ) from None
        except psycopg.Error as exc:
            raise RepositoryError(
                f"PostgreSQL {operation} on {self._target} failed: {self._describe(exc)}"
            ) from None

    async def _close_pool(self, timeout: float) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
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
            kwargs={
                "connect_timeout": max(2, math.ceil(self._timeout)),
                "application_name": "e2i-observability",
            },
            # A connection broken by a server restart is replaced, not handed out.
            check=AsyncConnectionPool.check_connection,
        )

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


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
