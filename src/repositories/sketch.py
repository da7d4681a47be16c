"""Packed latency sketches: one row per (period, slot, agent) holds its whole histogram.

Why: a 24 h window over 18 agents used to merge ~60,000 (slot, agent, bucket) rows, one per
filled bucket, which alone cost more than the 10 ms budget of a cold read. A packed sketch is
the histogram's counts for the consecutive buckets `low`, `low + 1`, ... as big-endian 64-bit
integers (`packed`, PostgreSQL's `int8send` layout); durations of 0 ms (no logarithm) are
counted apart (`zero_count`). A window then reads a few hundred rows, and this module adds
them up in C: each packed sketch is one Python integer whose 64-bit digits are the counts
(SWAR: adding two such integers adds every bucket at once, no count ever reaches 2^63), shifted
so that equal buckets line up. Percentiles come from the running sums of the merged counts.

The SQLite backend builds and merges sketches with `SketchAggregate` and `add_packed`,
registered on its connections (`register`); PostgreSQL does the same in SQL
(`ml_sketch_counts`, `ml_sketch_add`, `ml_sketch_pack` in database/ml/mlops_tables.sql).
"""

from __future__ import annotations

import math
import sqlite3
import sys
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate

__all__ = [
    "GAMMA",
    "LOG_GAMMA",
    "RELATIVE_ACCURACY",
    "ZERO_BUCKET",
    "Histogram",
    "SketchAggregate",
    "add_packed",
    "bucket_of",
    "bucket_value",
    "pack",
    "quantiles",
    "register",
    "unpack",
]

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
LOG_GAMMA = math.log(GAMMA)
ZERO_BUCKET = -100_000
"""The bucket of a zero duration (ln 0 is undefined); its value is 0. Packed sketches count
zero durations apart (`zero_count`); raw rows and SQL use this number for them."""

_NARROW = 4
"""Bytes per count while every count of a sketch is below 2^32 (nearly always); 8 otherwise."""
_NARROW_LIMIT = 1 << 32


def bucket_of(duration_ms: float) -> int:
    """The sketch bucket of a duration (the SQL of every backend computes the same)."""
    return math.ceil(math.log(duration_ms) / LOG_GAMMA) if duration_ms > 0 else ZERO_BUCKET


def bucket_value(bucket: int) -> float:
    """The value reported for a bucket: within RELATIVE_ACCURACY of each duration in it."""
    return 0.0 if bucket == ZERO_BUCKET else 2.0 * GAMMA**bucket / (GAMMA + 1.0)


def pack(counts: Sequence[int]) -> bytes:
    """Counts as big-endian unsigned 32-bit integers, or signed 64-bit ones when a count does
    not fit in 32 bits (PostgreSQL's `ml_sketch_pack` writes the same bytes). Negative counts
    (a batch's moves of the cost sketch: -1 from a trace's old bucket) take 64 bits too; a
    stored sketch never holds one, so what a read adds up is always unsigned."""
    narrow = max(counts, default=0) < _NARROW_LIMIT and min(counts, default=0) >= 0
    words = array("I" if narrow else "q", counts)
    if words.itemsize not in (_NARROW, 8):  # "I" is 32 bits on every supported platform
        raise RuntimeError(f"array item size {words.itemsize} is neither 4 nor 8 bytes")
    if sys.byteorder == "little":
        words.byteswap()
    return words.tobytes()


def unpack(packed: bytes, lanes: int) -> list[int]:
    """The `lanes` counts of a packed sketch (the inverse of `pack`)."""
    words = array("I" if len(packed) == lanes * _NARROW else "q")
    words.frombytes(packed)
    if sys.byteorder == "little":
        words.byteswap()
    return words.tolist()


def add_packed(
    low: int | None,
    high: int | None,
    packed: bytes | None,
    other_low: int | None,
    other_high: int | None,
    other: bytes | None,
) -> bytes | None:
    """The sum of two packed sketches of buckets `low`..`high` and `other_low`..`other_high`
    (the result spans both): the upsert of a slot that already has a sketch (SQLite)."""
    if packed is None or low is None or high is None:
        return other
    if other is None or other_low is None or other_high is None:
        return packed
    start, end = min(low, other_low), max(high, other_high)
    merged = [0] * (end - start + 1)
    for first, last, data in ((low, high, packed), (other_low, other_high, other)):
        for offset, count in enumerate(unpack(data, last - first + 1), start=first - start):
            merged[offset] += count
    return pack(merged)


class SketchAggregate:
    """SQLite aggregate `ml_sketch(bucket, count)`: the packed sketch of (bucket, count) rows
    from MIN(bucket) on; rows without a bucket (no or zero duration) are skipped."""

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}

    def step(self, bucket: int | None, count: int) -> None:
        if bucket is not None and count:
            self._counts[bucket] = self._counts.get(bucket, 0) + count

    def finalize(self) -> bytes | None:
        if not self._counts:
            return None
        low, high = min(self._counts), max(self._counts)  # the row's `low` and `high`
        return pack([self._counts.get(b, 0) for b in range(low, high + 1)])


def register(conn: sqlite3.Connection) -> None:
    """The sketch functions on a SQLite connection (they run in-process, per upserted row)."""
    conn.create_aggregate("ml_sketch", 2, SketchAggregate)  # type: ignore[arg-type]
    conn.create_function("ml_sketch_add", 6, add_packed, deterministic=True)


class Histogram:
    """Sketch fragments added up: `add` each (zero count, low and high bucket, packed counts),
    then read `quantiles` (or `combine` several, e.g. every agent's, first).

    The sum runs in C: a packed sketch read as one big-endian integer has its counts as
    digits in base 2^32 (or 2^64), highest bucket last; shifted so equal buckets line up, the
    integers add every bucket at once. No digit may carry: with 32-bit digits that holds while
    the counts added up stay below 2^32 (`narrow`, the caller knows the number of durations);
    otherwise, or with any 64-bit fragment, the digits are 64 bits wide (each 32-bit fragment
    widened first: slower, never wrong)."""

    def __init__(self) -> None:
        self.zeros = 0
        self._parts: list[tuple[int, int, bytes]] = []  # (low, high, packed)
        self._sum: tuple[int, int, int, int] | None = None  # (low, high, digit bits, total)

    def add(self, zeros: int, low: int | None, high: int | None, packed: bytes | None) -> None:
        self.add_many(zeros, (low,), (high,), (packed,))

    def add_many(
        self,
        zeros: int,
        lows: Sequence[int | None],
        highs: Sequence[int | None],
        packed: Sequence[bytes | int | None],
    ) -> None:
        """`add` for many fragments at once (their zero counts already summed). A fragment's
        `packed` may also be a plain count (one bucket, `low` = `high`: a raw edge group
        as SQLite returns it)."""
        self.zeros += zeros
        parts = [
            (low, high, data if data.__class__ is not int else pack([data]))
            for low, high, data in zip(lows, highs, packed, strict=True)
            if low is not None and high is not None and data
        ]
        if parts:
            self._parts.extend(parts)
            self._sum = None

    @classmethod
    def combine(cls, histograms: Sequence[Histogram], *, narrow: bool) -> Histogram:
        """One histogram holding the counts of all of `histograms` (their sums added up)."""
        combined = cls()
        combined.zeros = sum(h.zeros for h in histograms)
        sums = [h._merged(narrow=narrow) for h in histograms if h._parts]
        if sums and all(bits == sums[0][2] for _, _, bits, _ in sums):
            bits = sums[0][2]
            high = max(top for _, top, _, _ in sums)
            total = sum(value << (bits * (high - top)) for _, top, _, value in sums)
            combined._sum = (min(low for low, _, _, _ in sums), high, bits, total)
        for h in histograms:  # kept for a wider sum if asked (never with the same `narrow`)
            combined._parts.extend(h._parts)
        return combined

    def _merged(self, *, narrow: bool) -> tuple[int, int, int, int]:
        if self._sum is not None and (self._sum[2] == 32) == narrow:
            return self._sum
        narrow = narrow and all(len(d) == (h - lo + 1) * _NARROW for lo, h, d in self._parts)
        bits = 32 if narrow else 64
        high = max(h for _, h, _ in self._parts)
        if narrow:  # the usual case: one shift and addition per fragment
            total = sum(
                int.from_bytes(data, "big") << (32 * (high - last)) for _, last, data in self._parts
            )
        else:
            total = 0
            for first, last, data in self._parts:
                if len(data) == (last - first + 1) * _NARROW:
                    data = _big_endian_words(array("q", unpack(data, last - first + 1)).tobytes())
                total += int.from_bytes(data, "big") << (64 * (high - last))
        self._sum = (min(lo for lo, _, _ in self._parts), high, bits, total)
        return self._sum

    def counts(self, *, narrow: bool) -> tuple[int, list[int]]:
        """(lowest bucket, counts from it on) of everything added; (0, []) if nothing."""
        if not self._parts:
            return 0, []
        low, high, bits, total = self._merged(narrow=narrow)
        words = array("I" if bits == 32 else "q")
        words.frombytes(total.to_bytes((high - low + 1) * bits // 8, "big"))
        if sys.byteorder == "little":
            words.byteswap()
        return low, words.tolist()

    def quantiles(self, fractions: Sequence[float], *, narrow: bool) -> list[float | None]:
        """See `quantiles`."""
        low, counts = self.counts(narrow=narrow)
        return quantiles(self.zeros, low, counts, fractions)


def _big_endian_words(data: bytes) -> bytes:
    """Native 64-bit words (array("q").tobytes()) as big-endian ones."""
    if sys.byteorder == "big":
        return data
    words = array("q")
    words.frombytes(data)
    words.byteswap()
    return words.tobytes()


def quantiles(
    zeros: int, low: int, counts: Sequence[int], fractions: Sequence[float]
) -> list[float | None]:
    """`percentile_cont(fraction)` for each of `fractions`, estimated from a histogram (`zeros`
    durations of 0 ms, then `counts` of buckets `low`, `low + 1`, ...): the same interpolation
    between ranks j and j + 1 (h = fraction * (n - 1)), each rank's value taken from its
    bucket, so each result is within RELATIVE_ACCURACY of the exact one; None if empty."""
    running = list(accumulate([zeros, *counts]))
    total = running[-1]
    if total == 0:
        return [None] * len(fractions)
    results: list[float | None] = []
    for fraction in fractions:
        position = fraction * (total - 1)
        lower = math.floor(position)
        weight = position - lower
        low_value = _value(bisect_right(running, lower), low)
        high_value = _value(bisect_right(running, min(lower + 1, total - 1)), low)
        results.append(low_value + weight * (high_value - low_value))
    return results


def _value(index: int, low: int) -> float:
    """The value of position `index` in [zeros, counts...]: 0 for the zero bucket."""
    return 0.0 if index == 0 else bucket_value(low + index - 1)
