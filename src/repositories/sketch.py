"""Packed latency sketches: one row per (period, slot, agent) holds its whole histogram.

Why: a 24 h window over 18 agents used to merge ~60,000 (slot, agent, bucket) rows, one per
filled bucket, which alone cost more than the 10 ms budget of a cold read. A packed sketch is
the histogram's counts for the consecutive buckets `low`, `low + 1`, ... as big-endian
unsigned integers of 16 bits, or 32 or 64 when a count needs them (`packed`, see `pack`);
durations of 0 ms (no logarithm) are counted apart (`zero_count`). A window then reads a few
hundred rows, and `Histogram` adds them up in C: each packed sketch is one Python integer
whose digits are the counts (SWAR: adding two such integers adds every bucket at once),
shifted so that equal buckets line up. Percentiles come from the running sums of the merged
counts.

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

_LIMIT_16, _LIMIT_32 = 1 << 16, 1 << 32
_CODE = {2: "H", 4: "I", 8: "q"}
"""The `array` type of a packed count of 2, 4 or 8 bytes (the 64-bit one signed, see `pack`)."""
_WIDTH = {code: width for width, code in _CODE.items()}


def bucket_of(duration_ms: float) -> int:
    """The sketch bucket of a duration (the SQL of every backend computes the same)."""
    return math.ceil(math.log(duration_ms) / LOG_GAMMA) if duration_ms > 0 else ZERO_BUCKET


def bucket_value(bucket: int) -> float:
    """The value reported for a bucket: within RELATIVE_ACCURACY of each duration in it."""
    return 0.0 if bucket == ZERO_BUCKET else 2.0 * GAMMA**bucket / (GAMMA + 1.0)


def pack(counts: Sequence[int]) -> bytes:
    """Counts as big-endian unsigned 16-bit integers, 32-bit ones when a count does not fit in
    16 bits, or signed 64-bit ones when it does not fit in 32 (PostgreSQL's `ml_sketch_pack`
    writes the same bytes). Most rows are small (a minute of one agent: a few spans over ~100
    buckets), so 16 bits halve what a read fetches and adds up. Negative counts (a batch's
    moves of the cost sketch: -1 from a trace's old bucket) take 64 bits; a stored sketch
    never holds one, so what a read adds up is always unsigned."""
    low, high = min(counts, default=0), max(counts, default=0)
    code = "q" if low < 0 or high >= _LIMIT_32 else "I" if high >= _LIMIT_16 else "H"
    words = array(code, counts)
    if words.itemsize != _WIDTH[code]:  # "H" and "I" are 2 and 4 bytes on supported platforms
        raise RuntimeError(f"array item size {words.itemsize} of {code!r} is not {_WIDTH[code]}")
    if sys.byteorder == "little":
        words.byteswap()
    return words.tobytes()


def unpack(packed: bytes, lanes: int) -> list[int]:
    """The `lanes` counts of a packed sketch (the inverse of `pack`; its length says the width)."""
    words = array(_CODE[len(packed) // lanes])
    words.frombytes(packed)
    if sys.byteorder == "little":
        words.byteswap()
    return words.tolist()


def widened(packed: bytes, width: int, new_width: int) -> bytes:
    """Big-endian unsigned words of `width` bytes as wider ones of `new_width` bytes (zeros in
    front of each): a few slice copies in C whatever the number of words."""
    out = bytearray(len(packed) // width * new_width)
    for byte in range(width):
        out[new_width - width + byte :: new_width] = packed[byte::width]
    return bytes(out)


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
    digits in base 2^16 (2^32, 2^64), highest bucket last; shifted so equal buckets line up,
    the integers add every bucket at once. No digit may carry, so the digits are as wide as
    the sum needs (the caller passes `total`, the number of values added up: no bucket's sum
    exceeds it) and at least as wide as the widest fragment; narrower fragments are widened
    first. Rows packed before 16-bit counts existed (32-bit) are thus read as they were."""

    def __init__(self) -> None:
        self.zeros = 0
        self._parts: list[tuple[int, int, bytes | int]] = []  # (low, high, packed or count)
        self._sum: tuple[int, int, int, int] | None = None  # (low, high, digit bytes, total)

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
            (low, high, data)
            for low, high, data in zip(lows, highs, packed, strict=True)
            if low is not None and high is not None and data
        ]
        if parts:
            self._parts.extend(parts)
            self._sum = None

    @classmethod
    def combine(cls, histograms: Sequence[Histogram]) -> Histogram:
        """One histogram holding the counts of all of `histograms`: each one's sum, if read
        already (one fragment each), else its fragments."""
        combined = cls()
        combined.zeros = sum(h.zeros for h in histograms)
        for h in histograms:
            if h._sum is not None and h._parts:
                low, high, width, value = h._sum
                combined._parts.append((low, high, value.to_bytes((high - low + 1) * width, "big")))
            else:
                combined._parts.extend(h._parts)
        return combined

    def _merged(self, total: int) -> tuple[int, int, int, int]:
        widths = [  # 0: a single count, one digit of any width (e.g. a raw edge group)
            0 if isinstance(data, int) or first == last else len(data) // (last - first + 1)
            for first, last, data in self._parts
        ]
        width = max(2 if total < _LIMIT_16 else 4 if total < _LIMIT_32 else 8, *widths)
        if self._sum is not None and self._sum[2] == width:
            return self._sum
        bits, high = width * 8, max(h for _, h, _ in self._parts)
        value = 0
        for (_, last, data), data_width in zip(self._parts, widths, strict=True):
            if isinstance(data, int):  # one bucket's plain count
                digits = data
            elif data_width in (0, width):
                digits = int.from_bytes(data, "big")
            else:
                digits = int.from_bytes(widened(data, data_width, width), "big")
            value += digits << (bits * (high - last))
        self._sum = (min(lo for lo, _, _ in self._parts), high, width, value)
        return self._sum

    def counts(self, *, total: int) -> tuple[int, list[int]]:
        """(lowest bucket, counts from it on) of everything added, `total` values in all; (0,
        []) if nothing."""
        if not self._parts:
            return 0, []
        low, high, width, value = self._merged(total)
        words = array(_CODE[width].upper())  # unsigned: a sum of stored counts
        words.frombytes(value.to_bytes((high - low + 1) * width, "big"))
        if sys.byteorder == "little":
            words.byteswap()
        return low, words.tolist()

    def quantiles(self, fractions: Sequence[float], *, total: int) -> list[float | None]:
        """See `quantiles`."""
        low, counts = self.counts(total=total)
        return quantiles(self.zeros, low, counts, fractions)


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
