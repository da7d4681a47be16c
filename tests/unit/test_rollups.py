"""The rollup sketch and window split (src/repositories/rollups.py) on their own: the bucket
formula's error bound, percentile estimates against `statistics.quantiles` (PostgreSQL's
percentile_cont), and how a window is cut into raw edges, minutes and hours."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from src.repositories._arguments import Window
from src.repositories.rollups import (
    GAMMA,
    RELATIVE_ACCURACY,
    ZERO_BUCKET,
    bucket_of,
    bucket_value,
    quantile,
    split_window,
)


def histogram(values: list[float]) -> list[tuple[int, int]]:
    counts: dict[int, int] = {}
    for value in values:
        counts[bucket_of(value)] = counts.get(bucket_of(value), 0) + 1
    return sorted(counts.items())


def test_bucket_value__any_duration__within_relative_accuracy():
    rng = random.Random(3)
    for value in [
        1e-6,
        0.001,
        1.0,
        GAMMA,
        GAMMA**7,
        250.0,
        3.6e6,
        *(rng.lognormvariate(4, 3) for _ in range(5000)),
    ]:
        estimate = bucket_value(bucket_of(value))
        assert abs(estimate - value) <= RELATIVE_ACCURACY * value * (1 + 1e-12), value


def test_bucket_of__zero__its_own_bucket_worth_zero():
    assert bucket_of(0.0) == ZERO_BUCKET
    assert bucket_value(ZERO_BUCKET) == 0.0
    assert quantile([(ZERO_BUCKET, 3)], 0.5) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_quantile__random_samples__within_one_percent_of_percentile_cont(seed):
    rng = random.Random(seed)
    values = [rng.lognormvariate(4.5, rng.uniform(0.2, 2.5)) for _ in range(rng.randint(2, 4000))]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    sketch = histogram(values)
    for fraction, exact in ((0.50, cuts[49]), (0.95, cuts[94]), (0.99, cuts[98])):
        assert quantile(sketch, fraction) == pytest.approx(exact, rel=RELATIVE_ACCURACY)


def test_quantile__empty_and_single__none_and_the_value():
    assert quantile([], 0.5) is None
    assert quantile(histogram([42.0]), 0.99) == pytest.approx(42.0, rel=RELATIVE_ACCURACY)


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def window(start: datetime, end: datetime) -> Window:
    return Window(start=start, end=end, length=end - start)


def test_split_window__24h_mid_minute__raw_edges_minutes_and_hours():
    end = NOW + timedelta(minutes=7, seconds=12.5)
    bounds = split_window(window(end - timedelta(hours=24), end))
    assert bounds.minute_from == datetime(2026, 2, 28, 12, 8, tzinfo=UTC)
    assert bounds.hour_from == datetime(2026, 2, 28, 13, 0, tzinfo=UTC)
    assert bounds.hour_to == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert bounds.minute_to == datetime(2026, 3, 1, 12, 7, tzinfo=UTC)
    assert (bounds.start, bounds.end) == (end - timedelta(hours=24), end)


def test_split_window__aligned__no_raw_left_edge():
    bounds = split_window(window(NOW - timedelta(hours=2), NOW))
    assert bounds.minute_from == bounds.hour_from == NOW - timedelta(hours=2)
    assert bounds.hour_to == bounds.minute_to == NOW  # right edge: spans starting exactly at NOW


def test_split_window__under_an_hour__minutes_only():
    end = NOW + timedelta(minutes=40, seconds=1)
    bounds = split_window(window(end - timedelta(minutes=15), end))
    assert bounds.hour_from == bounds.hour_to == bounds.minute_to
    assert (bounds.minute_from, bounds.minute_to) == (
        NOW + timedelta(minutes=26),
        NOW + timedelta(minutes=40),
    )


def test_split_window__inside_one_minute__all_raw():
    end = NOW + timedelta(seconds=50)
    bounds = split_window(window(NOW + timedelta(seconds=10), end))
    assert bounds.minute_from == bounds.hour_from == bounds.hour_to == bounds.minute_to == end
