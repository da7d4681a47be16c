"""LoopThread: one private event loop in a daemon thread, used from threads and other loops.

Synchronisation is by futures and asyncio/threading Events; no sleeps, no timed assertions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import os
import select
import signal
import threading

import pytest

from src.agents.ml_foundation.observability_connector.loop_thread import LoopThread

WAIT = 30.0  # upper bound for joins; never reached when the code is right
REQUEST = contextvars.ContextVar("request", default="none")


@pytest.fixture
def loop_thread():
    runner = LoopThread("test-loop")
    yield runner
    runner.stop(WAIT)


def _threads_named(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_loop_thread__constructed__starts_nothing_until_first_use():
    runner = LoopThread("lazy-loop")
    try:
        assert not runner.is_running
        assert _threads_named("lazy-loop") == []
        assert runner.run(lambda: asyncio.sleep(0, "ok")) == "ok"
        assert runner.is_running
        assert len(_threads_named("lazy-loop")) == 1
    finally:
        runner.stop(WAIT)


def test_loop_thread__bad_name__value_error_naming_it():
    with pytest.raises(ValueError, match="name must be a non-empty string, got ''"):
        LoopThread("")


def test_run__coroutine__runs_on_the_private_thread_and_returns_its_result(loop_thread):
    async def where() -> str:
        return threading.current_thread().name

    assert loop_thread.run(where) == "test-loop"


def test_run__two_calls__share_one_loop_so_loop_bound_objects_keep_working(loop_thread):
    lock_holder: list[asyncio.Lock] = []

    async def make_lock() -> None:
        lock_holder.append(asyncio.Lock())
        async with lock_holder[0]:
            pass

    async def reuse_lock() -> asyncio.AbstractEventLoop:
        async with lock_holder[0]:  # a lock bound to another loop would raise here
            return asyncio.get_running_loop()

    loop_thread.run(make_lock)
    assert loop_thread.run(reuse_lock) is loop_thread.loop()


def test_run__coroutine_raises__same_exception_reaches_the_caller(loop_thread):
    async def fail() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        loop_thread.run(fail)


def test_run__called_inside_a_running_loop__works(loop_thread):
    async def caller() -> int:
        return loop_thread.run(lambda: asyncio.sleep(0, 42))  # sync call from async code

    assert asyncio.run(caller()) == 42


def test_run__callers_contextvars__travel_with_the_coroutine(loop_thread):
    async def read() -> str:
        return REQUEST.get()

    token = REQUEST.set("req-7")
    try:
        assert loop_thread.run(read) == "req-7"
    finally:
        REQUEST.reset(token)
    assert loop_thread.run(read) == "none"


def test_run__timeout_passes__coroutine_cancelled_and_timeout_error(loop_thread):
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        loop_thread.run(forever, timeout=0.01)
    assert cancelled.wait(WAIT)


def test_run__from_the_loops_own_thread__runtime_error(loop_thread):
    async def nested() -> None:
        loop_thread.run(lambda: asyncio.sleep(0))

    with pytest.raises(RuntimeError, match="from its own thread"):
        loop_thread.run(nested)


def test_arun__awaited_from_two_asyncio_run_calls__both_use_the_private_loop(loop_thread):
    async def running_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    async def caller() -> asyncio.AbstractEventLoop:
        return await loop_thread.arun(running_loop)

    first, second = asyncio.run(caller()), asyncio.run(caller())
    assert first is second is loop_thread.loop()


def test_arun__caller_cancelled__coroutine_cancelled_too(loop_thread):
    started, cancelled = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def caller() -> None:
        task = asyncio.ensure_future(loop_thread.arun(forever))
        await asyncio.to_thread(started.wait, WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(caller())
    assert cancelled.wait(WAIT)


def test_stop__running_loop__thread_ends_and_later_use_raises(loop_thread):
    loop_thread.run(lambda: asyncio.sleep(0))
    (thread,) = _threads_named("test-loop")

    assert loop_thread.stop(WAIT) is True
    assert not thread.is_alive()
    assert not loop_thread.is_running
    assert loop_thread.stop(WAIT) is True  # twice is harmless
    with pytest.raises(RuntimeError, match="'test-loop' is stopped"):
        loop_thread.run(lambda: asyncio.sleep(0))


def test_stop__never_started__true_and_no_thread():
    runner = LoopThread("never-started")
    assert runner.stop(WAIT) is True
    assert _threads_named("never-started") == []


def test_stop__coroutine_still_pending__its_caller_gets_cancelled_not_stuck(loop_thread):
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    future = loop_thread.submit_threadsafe(forever)
    assert started.wait(WAIT)
    loop_thread.stop(WAIT)
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(WAIT)


def test_loop_thread__dropped_without_stop__its_thread_ends():
    runner = LoopThread("dropped-loop")
    runner.run(lambda: asyncio.sleep(0))
    (thread,) = _threads_named("dropped-loop")

    del runner
    gc.collect()
    thread.join(WAIT)
    assert not thread.is_alive()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
def test_run__in_a_forked_child__child_gets_its_own_working_loop(loop_thread):
    async def pid_and_loop() -> tuple[int, int]:
        return os.getpid(), id(asyncio.get_running_loop())

    parent_pid, parent_loop = loop_thread.run(pid_and_loop)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its copy of the loop thread is gone, run() must still work
        try:
            pid, loop_id = loop_thread.run(pid_and_loop, timeout=WAIT)
            os.write(write_end, f"{pid} {int(loop_id != parent_loop)}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], WAIT)
        answer = os.read(read_end, 100).decode() if ready else ""
    finally:
        os.close(read_end)
        if not answer:
            os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    assert answer == f"{child} 1"
    assert loop_thread.run(pid_and_loop) == (parent_pid, parent_loop)  # the parent's is intact
