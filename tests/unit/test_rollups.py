"""The rollup sketch and window split (src/repositories/rollups.py, sketch.py) on their own: the
bucket formula's error bound, packed sketches (16-bit counts, 32 or 64 bits when one does not
fit) added up in digits as wide as the sum needs, percentile estimates against
`statistics.quantiles` (PostgreSQL's percentile_cont), and how a window is cut into raw edges
and minute to 6-hour slots."""

from __future__ import annotations

import random
import statistics
import struct
from datetime import UTC, datetime, timedelta

import pytest

from src.repositories._arguments import Window
from src.repositories.rollups import (
    GAMMA,
    HOUR,
    MINUTE,
    RELATIVE_ACCURACY,
    SIX_HOURS,
    TEN_MINUTES,
    ZERO_BUCKET,
    bucket_of,
    bucket_value,
    floor_slot,
    split_window,
    window_metrics_from_rollups,
)
from src.repositories.sketch import (
    Histogram,
    SketchAggregate,
    add_packed,
    pack,
    quantiles,
    unpack,
    widened,
)


def dense(values: list[float]) -> tuple[int, int, list[int]]:
    """(zero count, low bucket, dense counts) of durations."""
    buckets = [bucket_of(v) for v in values if v > 0]
    if not buckets:
        return len(values), 0, []
    low, high = min(buckets), max(buckets)
    counts = [0] * (high - low + 1)
    for bucket in buckets:
        counts[bucket - low] += 1
    return len(values) - len(buckets), low, counts


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
    assert quantiles(3, 0, [], (0.5,)) == [0.0]


@pytest.mark.parametrize("seed", range(5))
def test_quantiles__random_samples__within_one_percent_of_percentile_cont(seed):
    rng = random.Random(seed)
    values = [rng.lognormvariate(4.5, rng.uniform(0.2, 2.5)) for _ in range(rng.randint(2, 4000))]
    values += [0.0] * rng.randint(0, 5)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    zeros, low, counts = dense(values)
    estimates = quantiles(zeros, low, counts, (0.50, 0.95, 0.99))
    for estimate, exact in zip(estimates, (cuts[49], cuts[94], cuts[98]), strict=True):
        assert estimate == pytest.approx(exact, rel=RELATIVE_ACCURACY, abs=1e-12)


def test_quantiles__empty_and_single__none_and_the_value():
    assert quantiles(0, 0, [], (0.5, 0.99)) == [None, None]
    (single,) = quantiles(*dense([42.0]), (0.99,))
    assert single == pytest.approx(42.0, rel=RELATIVE_ACCURACY)


def test_pack__narrow_and_wide_counts__round_trip():
    assert len(pack([1, 0, 7])) == 6  # 16-bit counts
    assert pack([1, 0, 7]) == bytes([0, 1, 0, 0, 0, 7])  # big-endian, as PostgreSQL packs them
    assert unpack(pack([1, 0, 7]), 3) == [1, 0, 7]
    middle = [1, 1 << 16, 3]
    assert len(pack(middle)) == 12 and unpack(pack(middle), 3) == middle
    wide = [1, 1 << 40, 3]
    assert len(pack(wide)) == 24 and unpack(pack(wide), 3) == wide


@pytest.mark.parametrize(("width", "new_width"), [(2, 4), (2, 8), (4, 8)])
def test_widened__counts__same_counts_in_wider_words(width, new_width):
    counts = [0, 1, 255, 256, 65535, 7]
    codes = {2: ">H", 4: ">I", 8: ">Q"}
    packed = b"".join(struct.pack(codes[width], c) for c in counts)
    assert widened(packed, width, new_width) == b"".join(
        struct.pack(codes[new_width], c) for c in counts
    )


def test_histogram__rows_packed_32_bit_by_earlier_versions__added_to_16_bit_ones():
    """Rows written before the 16-bit packing keep their 32-bit counts: each width is read by
    its length, whatever the digits of the sum."""
    old = b"".join(struct.pack(">I", c) for c in (4, 0, 9))  # buckets 7..9
    for total in (16, 1 << 20, 1 << 40):  # 16-, 32- and 64-bit digits
        histogram = Histogram()
        histogram.add_many(0, (7, 8, 9), (9, 8, 9), (old, pack([1]), 2))
        assert histogram.counts(total=total) == (7, [4, 1, 11])


@pytest.mark.parametrize("seed", range(4))
def test_histogram__random_fragments__same_counts_as_adding_per_bucket(seed):
    rng = random.Random(seed)
    expected: dict[int, int] = {}
    histogram, zeros = Histogram(), 0
    for _ in range(rng.randint(1, 60)):
        low = rng.randint(-50, 400)
        counts = [rng.choice((0, rng.randint(1, 9))) for _ in range(rng.randint(1, 30))]
        counts[0] = counts[-1] = 1
        if rng.random() < 0.2:  # a count that needs 32 or 64 bits
            counts[-1] = rng.choice(((1 << 16) + 3, (1 << 33) + rng.randint(0, 9)))
        for offset, count in enumerate(counts):
            expected[low + offset] = expected.get(low + offset, 0) + count
        zero = rng.randint(0, 2)
        zeros += zero
        histogram.add(zero, low, low + len(counts) - 1, pack(counts))
    total = sum(expected.values())
    low, counts = histogram.counts(total=total + zeros)
    assert {low + i: c for i, c in enumerate(counts) if c} == {
        b: c for b, c in expected.items() if c
    }
    assert histogram.zeros == zeros


def test_histogram__sum_over_2_to_32__64_bit_digits_no_carry():
    histogram = Histogram()
    for _ in range(3):
        histogram.add(0, 10, 11, pack([(1 << 32) - 1, 5]))
    assert histogram.counts(total=3 * (1 << 32)) == (10, [3 * ((1 << 32) - 1), 15])


def test_combine__two_agents__counts_of_both():
    first, second = Histogram(), Histogram()
    first.add(1, 5, 6, pack([2, 3]))
    second.add(0, 4, 5, pack([1, 1]))
    both = Histogram.combine([first, second])
    assert both.zeros == 1
    assert both.counts(total=8) == (4, [1, 3, 3])
    assert both.counts(total=1 << 40) == (4, [1, 3, 3])


def test_add_many__plain_counts_and_packed__same_counts_as_add():
    one_by_one, at_once = Histogram(), Histogram()
    fragments = [(2, 5, 6, pack([2, 3])), (0, 4, 4, 7), (1, None, None, None), (0, 9, 9, 1 << 40)]
    for zeros, low, high, data in fragments:
        one_by_one.add(zeros, low, high, pack([data]) if isinstance(data, int) else data)
    zeros, lows, highs, packed = zip(*fragments, strict=True)
    at_once.add_many(sum(zeros), lows, highs, packed)
    assert at_once.zeros == one_by_one.zeros == 3
    assert at_once.counts(total=1 << 41) == one_by_one.counts(total=1 << 41)
    assert at_once.counts(total=1 << 41) == (4, [7, 2, 3, 0, 0, 1 << 40])


def test_window_metrics__rows_in_any_order__same_totals_and_percentiles():
    """The per-agent sums (grouped, then summed per column) do not depend on row order, and a
    raw edge group's count as a plain integer (SQLite) counts as its packed form."""
    rng = random.Random(7)
    rows = []
    for i in range(120):
        agent = f"agent_{i % 3}"
        low = rng.randint(100, 300)
        counts = [rng.randint(0, 5) for _ in range(rng.randint(1, 40))]
        counts[0] = counts[-1] = 1
        n = sum(counts)
        rows.append(
            (agent, i % 4 or None, n, i % 2, n - i % 2, n, 1.5 * n, float(low), i % 5, 3, 4, 7,
             0, low, low + len(counts) - 1, pack(counts))
        )  # fmt: skip
    edge = ("agent_1", 2, 3, 0, 3, 3, 9.0, 400.0, 1, 1, 1, 2, 1, 350, 350, 2)
    as_packed = (*edge[:15], pack([2]))
    first = window_metrics_from_rollups([*rows, edge], "24h", 1440.0)
    shuffled = [*rows, as_packed]
    rng.shuffle(shuffled)
    assert window_metrics_from_rollups(shuffled, "24h", 1440.0) == first
    stats = {s.agent_name: s for s in first[0]}
    assert stats["agent_1"].max_ms == 400.0 and stats["agent_1"].agent_tier == 3
    assert sum(s.count for s in first[0]) == first[1].total_spans == sum(r[2] for r in rows) + 3


def test_add_packed__overlapping_and_missing__summed():
    assert unpack(add_packed(3, 5, pack([1, 0, 2]), 5, 7, pack([4, 0, 1])), 5) == [1, 0, 6, 0, 1]
    assert add_packed(None, None, None, 2, 2, pack([9])) == pack([9])
    assert add_packed(2, 2, pack([9]), None, None, None) == pack([9])


def test_sketch_aggregate__rows__packed_from_lowest_bucket():
    aggregate = SketchAggregate()
    for bucket, count in ((7, 2), (None, 5), (4, 1), (7, 1), (5, 0)):
        aggregate.step(bucket, count)
    assert unpack(aggregate.finalize(), 4) == [1, 0, 0, 3]
    assert SketchAggregate().finalize() is None


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def window(start: datetime, end: datetime) -> Window:
    return Window(start=start, end=end, length=end - start)


def ranges(bounds) -> list[tuple[int, datetime, datetime]]:  # type: ignore[no-untyped-def]
    b = bounds
    return [
        (MINUTE, b.minute_from, b.ten_from),
        (TEN_MINUTES, b.ten_from, b.hour_from),
        (HOUR, b.hour_from, b.six_from),
        (SIX_HOURS, b.six_from, b.six_to),
        (HOUR, b.six_to, b.hour_to),
        (TEN_MINUTES, b.hour_to, b.ten_to),
        (MINUTE, b.ten_to, b.minute_to),
    ]


def test_split_window__24h_mid_minute__raw_edges_then_largest_slots():
    end = NOW + timedelta(minutes=7, seconds=12.5)
    bounds = split_window(window(end - timedelta(hours=24), end))
    assert (bounds.start, bounds.end) == (end - timedelta(hours=24), end)
    assert bounds.minute_from == datetime(2026, 2, 28, 12, 8, tzinfo=UTC)
    assert bounds.ten_from == datetime(2026, 2, 28, 12, 10, tzinfo=UTC)
    assert bounds.hour_from == datetime(2026, 2, 28, 13, 0, tzinfo=UTC)
    assert bounds.six_from == datetime(2026, 2, 28, 18, 0, tzinfo=UTC)
    assert bounds.six_to == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert bounds.hour_to == bounds.six_to
    assert bounds.ten_to == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert bounds.minute_to == datetime(2026, 3, 1, 12, 7, tzinfo=UTC)


@pytest.mark.parametrize("seed", range(6))
def test_split_window__random_windows__slots_tile_the_whole_minutes(seed):
    rng = random.Random(seed)
    for _ in range(200):
        start = NOW + timedelta(seconds=rng.uniform(-86400 * 3, 0))
        end = start + timedelta(seconds=rng.choice((30, 900, 7200, 86400, 86400 * 7)))
        bounds = split_window(window(start, end))
        values = bounds.as_tuple()
        assert list(values) == sorted(values)
        assert bounds.minute_from - bounds.start < timedelta(minutes=1)
        assert bounds.end - bounds.minute_to < timedelta(minutes=1)
        for period, low, high in ranges(bounds):
            if low < high:
                assert floor_slot(low, period) == low and floor_slot(high, period) == high
        slots = sum(
            (high - low) // timedelta(seconds=period) for period, low, high in ranges(bounds)
        )
        assert slots <= 2 * (9 + 5 + 5) + (end - start) // timedelta(hours=6) + 1


def test_split_window__aligned__no_raw_left_edge():
    bounds = split_window(window(NOW - timedelta(hours=2), NOW))
    assert bounds.minute_from == bounds.ten_from == bounds.hour_from == NOW - timedelta(hours=2)
    assert bounds.six_from == bounds.six_to == bounds.hour_to == NOW
    assert bounds.ten_to == bounds.minute_to == NOW  # right edge: spans starting exactly at NOW


def test_split_window__under_an_hour__minutes_and_ten_minutes():
    end = NOW + timedelta(minutes=40, seconds=1)
    bounds = split_window(window(end - timedelta(minutes=15), end))
    assert (bounds.minute_from, bounds.ten_from) == (
        NOW + timedelta(minutes=26),
        NOW + timedelta(minutes=30),
    )
    assert bounds.hour_from == bounds.six_from == bounds.six_to == bounds.hour_to
    assert (bounds.ten_to, bounds.minute_to) == (
        NOW + timedelta(minutes=40),
        NOW + timedelta(minutes=40),
    )


def test_split_window__inside_one_minute__all_raw():
    end = NOW + timedelta(seconds=50)
    bounds = split_window(window(NOW + timedelta(seconds=10), end))
    assert bounds.as_tuple()[1:] == (end,) * 9


def test_pack__cost_sketch_moves_with_minus_one__64_bit_then_added_back_to_16_bit():
    """A batch's cost sketch moves hold -1 counts (a trace leaving its old bucket): packed as
    64-bit words, added to a stored 16-bit sketch by `add_packed` into a 16-bit one again."""
    moves = pack([1, -1, 0, 2])  # buckets 9..12
    assert len(moves) == 4 * 8
    assert unpack(moves, 4) == [1, -1, 0, 2]
    stored = pack([3, 1])  # buckets 10..11
    total = add_packed(10, 11, stored, 9, 12, moves)
    assert total is not None and len(total) == 4 * 2
    assert unpack(total, 4) == [1, 2, 1, 2]
