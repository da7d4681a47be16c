"""`LoopThread`: an asyncio event loop in a private daemon thread, usable from any thread.

Why: async resources (a psycopg pool, asyncio locks, httpx clients) belong to the loop they
were first used on. Code that must reach them from synchronous threads (the batch processor's
worker) or from several caller loops (scripts calling `asyncio.run()` twice, a sync `invoke`
inside async code) gets one loop that outlives every caller and runs each coroutine there.

The loop and its thread start on first use. After `fork()` the child starts a fresh loop (the
parent's thread did not survive the fork); the parent's loop object stays referenced and
untouched, so nothing the child does closes the parent's sockets. A `LoopThread` that is
garbage-collected without `stop()` stops its loop. The caller's contextvars travel with each
coroutine (`asyncio.run_coroutine_threadsafe` copies them), and cancelling the caller's future
cancels the coroutine.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")
_CANCEL_GRACE_SECONDS = 1.0
CoroutineFactory = Callable[[], Awaitable[T]]


class LoopThread:
    """One private event loop in a daemon thread; run coroutines on it from any thread."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.name = name
        """The thread's name (shows in thread dumps)."""
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._parent_loops: list[asyncio.AbstractEventLoop] = []  # inherited through fork()
        self._finalizer: weakref.finalize | None = None
        self._stopped = False

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running" if self.is_running else "not started"
        return f"LoopThread({self.name!r}, {state})"

    @property
    def is_running(self) -> bool:
        """True once the loop has started in this process and until `stop()`."""
        with self._lock:
            return self._loop is not None and self._pid == os.getpid()

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, started on first use (and afresh in a forked child).

        RuntimeError after `stop()`.
        """
        with self._lock:
            if self._stopped:
                raise RuntimeError(f"loop thread {self.name!r} is stopped")
            if self._loop is not None and self._pid != os.getpid():
                self._parent_loops.append(self._loop)
                self._loop = self._thread = None
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=_serve_forever, args=(loop,), name=self.name, daemon=True
                )
                thread.start()
                self._finalizer = weakref.finalize(self, _stop_loop, loop, os.getpid())
                self._finalizer.atexit = False  # daemon threads end with the process anyway
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    def submit_threadsafe(self, coro_factory: CoroutineFactory[T]) -> Future[T]:
        """Schedule `coro_factory()` on the loop; its outcome arrives in the returned future."""
        loop = self.loop()  # first: a stopped LoopThread raises before a coroutine exists
        return asyncio.run_coroutine_threadsafe(_awaited(coro_factory), loop)

    def run(self, coro_factory: CoroutineFactory[T], timeout: float | None = None) -> T:
        """Block the calling thread until `coro_factory()` has run on the loop; return its result.

        `timeout` (seconds) bounds the coroutine: past it, the coroutine is cancelled and
        `TimeoutError` raised once it has unwound. Not for the loop's own thread (it would wait
        on itself): that is a RuntimeError.
        """
        if self._thread is threading.current_thread():
            raise RuntimeError(f"loop thread {self.name!r}: run() called from its own thread")
        if timeout is None:
            return self.submit_threadsafe(coro_factory).result()
        return self.submit_threadsafe(lambda: asyncio.wait_for(coro_factory(), timeout)).result()

    async def arun(self, coro_factory: CoroutineFactory[T]) -> T:
        """Await `coro_factory()` run on the loop, from any other loop; cancelling the caller
        cancels it."""
        return await asyncio.wrap_future(self.submit_threadsafe(coro_factory))

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the loop and wait up to `timeout` s for its thread; later use raises
        RuntimeError. Safe to call twice. True when the thread has ended (or never ran here)."""
        with self._lock:
            self._stopped = True
            loop, thread, finalizer = self._loop, self._thread, self._finalizer
            self._loop = self._thread = self._finalizer = None
            if loop is not None and self._pid != os.getpid():
                self._parent_loops.append(loop)  # the parent's, in a forked child: not ours
                return True
        if loop is None or thread is None:
            return True
        if finalizer is not None:
            finalizer.detach()
        _stop_loop(loop, os.getpid())
        if thread is not threading.current_thread():
            thread.join(timeout)
        return not thread.is_alive()


async def _awaited(coro_factory: CoroutineFactory[T]) -> T:
    return await coro_factory()


def _stop_loop(loop: asyncio.AbstractEventLoop, pid: int) -> None:
    """Ask the loop to stop (also the finalizer of a dropped `LoopThread`); only in the process
    that started it, where its thread runs."""
    if os.getpid() != pid:
        return
    try:
        loop.call_soon_threadsafe(loop.stop)
    except RuntimeError:  # already closed: its thread has ended
        return


def _serve_forever(loop: asyncio.AbstractEventLoop) -> None:
    """Run the loop until stopped; then cancel what is still running, so no caller waits on a
    loop that is gone (a task that ignores cancellation gets `_CANCEL_GRACE_SECONDS`)."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=_CANCEL_GRACE_SECONDS))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
