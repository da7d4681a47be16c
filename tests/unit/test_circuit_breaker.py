"""CircuitBreaker: state transitions driven by an injected clock (no sleeps)."""

from __future__ import annotations

import threading

import pytest

from src.agents.ml_foundation.observability_connector.config import CircuitBreakerSettings
from src.mlops.circuit_breaker import CircuitBreaker


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _breaker(clock: FakeClock, threshold: int = 3, reset: float = 30.0) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=threshold, reset_timeout_seconds=reset, clock=clock)


def _fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.record_failure()


def test_circuit_breaker__new__closed_and_allows() -> None:
    breaker = _breaker(FakeClock())
    assert breaker.state == "closed"
    assert breaker.allow() is True
    assert breaker.opens == 0


def test_circuit_breaker__failures_below_threshold__stays_closed() -> None:
    breaker = _breaker(FakeClock(), threshold=3)
    _fail(breaker, 2)
    assert breaker.state == "closed"
    assert breaker.consecutive_failures == 2
    assert breaker.allow() is True


def test_circuit_breaker__threshold_consecutive_failures__opens_and_rejects() -> None:
    breaker = _breaker(FakeClock(), threshold=3)
    _fail(breaker, 3)
    assert breaker.state == "open"
    assert breaker.opens == 1
    assert breaker.allow() is False
    assert breaker.stats()["rejected"] == 1


def test_circuit_breaker__success_between_failures__resets_count() -> None:
    breaker = _breaker(FakeClock(), threshold=3)
    _fail(breaker, 2)
    breaker.record_success()
    _fail(breaker, 2)
    assert breaker.state == "closed"
    assert breaker.consecutive_failures == 2


def test_circuit_breaker__before_reset_timeout__stays_open() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, threshold=1, reset=30.0)
    _fail(breaker, 1)
    clock.now += 29.999
    assert breaker.state == "open"
    assert breaker.allow() is False


def test_circuit_breaker__after_reset_timeout__half_open_allows_exactly_one_probe() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, threshold=1, reset=30.0)
    _fail(breaker, 1)
    clock.now += 30.0
    assert breaker.state == "half_open"
    assert breaker.allow() is True
    assert breaker.allow() is False
    assert breaker.allow() is False
    assert breaker.state == "half_open"


def test_circuit_breaker__probe_succeeds__closes() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, threshold=2)
    _fail(breaker, 2)
    clock.now += 30.0
    assert breaker.allow() is True
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.consecutive_failures == 0
    assert all(breaker.allow() for _ in range(5))


def test_circuit_breaker__probe_fails__reopens_for_a_full_timeout() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, threshold=2, reset=30.0)
    _fail(breaker, 2)
    clock.now += 30.0
    assert breaker.allow() is True
    clock.now += 5.0
    breaker.record_failure()
    assert breaker.state == "open"
    assert breaker.opens == 2
    clock.now += 29.0
    assert breaker.allow() is False
    clock.now += 1.0
    assert breaker.allow() is True


def test_circuit_breaker__lost_probe__new_probe_after_another_timeout() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, threshold=1, reset=10.0)
    _fail(breaker, 1)
    clock.now += 10.0
    assert breaker.allow() is True  # this probe never reports back
    clock.now += 9.0
    assert breaker.allow() is False
    clock.now += 1.0
    assert breaker.allow() is True


def test_circuit_breaker__late_failure_while_open__keeps_timer() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, threshold=1, reset=10.0)
    _fail(breaker, 1)
    clock.now += 9.0
    breaker.record_failure()  # a call allowed before the breaker opened fails late
    assert breaker.opens == 1
    clock.now += 1.0
    assert breaker.state == "half_open"


def test_circuit_breaker__concurrent_allow_in_half_open__grants_one_probe() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, threshold=1, reset=1.0)
    _fail(breaker, 1)
    clock.now += 1.0
    workers = 16
    barrier = threading.Barrier(workers)
    results: list[bool] = []
    lock = threading.Lock()

    def call() -> None:
        barrier.wait()
        granted = breaker.allow()
        with lock:
            results.append(granted)

    threads = [threading.Thread(target=call) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    assert len(results) == workers


def test_circuit_breaker__concurrent_failures__open_exactly_once() -> None:
    breaker = _breaker(FakeClock(), threshold=5)
    barrier = threading.Barrier(10)

    def fail() -> None:
        barrier.wait()
        breaker.record_failure()

    threads = [threading.Thread(target=fail) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert breaker.opens == 1
    assert breaker.stats()["failures"] == 10


def test_circuit_breaker__from_settings__uses_section_values() -> None:
    settings = CircuitBreakerSettings(failure_threshold=7, reset_timeout_seconds=12.5)
    breaker = CircuitBreaker.from_settings(settings, clock=FakeClock())
    assert breaker.failure_threshold == 7
    assert breaker.reset_timeout_seconds == 12.5


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_threshold": 2.5}, "failure_threshold"),
        ({"failure_threshold": True}, "failure_threshold"),
        ({"reset_timeout_seconds": 0}, "reset_timeout_seconds"),
        ({"reset_timeout_seconds": -1.0}, "reset_timeout_seconds"),
    ],
)
def test_circuit_breaker__invalid_arguments__value_error_names_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]
