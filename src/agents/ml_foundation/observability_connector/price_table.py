"""`genai_prices.calc_price`, exact and cheap for the usages the connector reports.

Why: `calc_price` costs ~270 µs per call even for a known model (the library caches the model
lookup, but `ModelPrice.calc_price` re-resolves the price keys, validates them and decomposes
the usage on every call). On the batch worker that is most of an LLM span's CPU, taken from the
agent's thread through the GIL. Yet for one `ModelPrice` without tiers the price is a linear
function of the five token counts we report (input, output, cache read, cache write, reasoning):
`total = base + sum(coefficient_k * count_k)`.

So `PriceTable` resolves (model, provider) once (negative results too, bounded), asks the model
which `ModelPrice` is in force at the span's time (cheap), and for each `ModelPrice` builds its
coefficients once *from the library itself*: the price of the empty usage and of one more token
of each kind, then checks the formula against the library on probe usages (small, large, every
kind alone and together) and keeps it only when every probe agrees exactly. The formula is then
evaluated in a Decimal context that traps inexact results, and only when the library's own
arithmetic is exact too (a bound on digits, checked per span), so both give the same Decimal
value. Anything else goes to the library per span: tiered prices, request-context variants,
usages the library would refuse (cache tokens above input, reasoning above output), counts past
`MAX_FAST_COUNT`, a model whose formula did not verify, or a custom price snapshot.
"""

from __future__ import annotations

import decimal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

__all__ = ["KINDS", "Counts", "PriceTable", "usage_of"]

KINDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_reasoning_tokens",
)
"""The token kinds the connector reports, in `genai_prices.Usage` names."""

MAX_FAST_COUNT = 10**9
"""Counts above this (per kind) are priced by the library (keeps the digit bound simple)."""
MAX_CACHED = 4096
"""(model, provider) lookups and ModelPrices remembered (beyond that: computed, not kept)."""
_PREC = 28  # the default Decimal context's precision, which the library computes in
_EXACT = decimal.Context(prec=_PREC, traps=[decimal.Inexact, decimal.InvalidOperation])

Counts = tuple[int, int, int, int, int]


@dataclass(frozen=True)
class _Formula:
    """`base + sum(coefficients * counts)`; `span` bounds the digits any partial sum of the
    library's terms can take, so the library's result is exact when `span` <= precision."""

    base: Decimal
    coefficients: tuple[Decimal, ...]
    min_exponent: int
    magnitude: Decimal  # an upper bound on every price per token, for the digit bound

    def total(self, counts: Counts) -> Decimal | None:
        largest = self.magnitude * (sum(counts) + 1)
        if largest and largest.adjusted() - self.min_exponent >= _PREC - 1:
            return None
        try:
            total = self.base
            for coefficient, count in zip(self.coefficients, counts, strict=True):
                if count:
                    total = _EXACT.add(total, _EXACT.multiply(coefficient, count))
        except decimal.DecimalException:
            return None
        return total


class PriceTable:
    """Prices a usage like `genai_prices.calc_price(usage, model, provider_id=..., timestamp)`,
    with the shortcuts described in the module docstring. Thread-safe."""

    def __init__(self) -> None:
        from genai_prices import calc_price

        self._calc: Callable[..., Any] = calc_price
        self._lock = threading.Lock()
        self._snapshot: Any = None
        self._models: dict[tuple[str, str | None], Any] = {}
        self._formulas: dict[int, tuple[Any, _Formula | None]] = {}

    def price(
        self, counts: Counts, model: str, provider: str | None, when: datetime
    ) -> Decimal | None:
        """The total price in USD, or None when the database has no such model (for that
        provider). `counts` are in `KINDS` order; `provider` only when the database knows it."""
        found = self._model(model, provider)
        if found is None:
            return None
        provider_info, model_info = found
        if model_info is not _LIBRARY and _fast_usage(counts):
            model_price = model_info.get_prices(when)
            formula = self._formula(model_price, provider_info, model_info)
            if formula is not None:
                total = formula.total(counts)
                if total is not None:
                    return total
        return self._library(counts, model, provider, when)

    def _library(
        self, counts: Counts, model: str, provider: str | None, when: datetime
    ) -> Decimal | None:
        usage = usage_of(counts)
        try:
            if provider is not None:
                result = self._calc(
                    usage, model, provider_id=provider, genai_request_timestamp=when
                )
            else:
                result = self._calc(usage, model, genai_request_timestamp=when)
        except LookupError:
            return None
        total: Decimal = result.total_price
        return total

    def _model(self, model: str, provider: str | None) -> tuple[Any, Any] | None:
        """(provider, model info) from the library's lookup, cached with misses; the model
        info is `_LIBRARY` when only the library's own path may price it."""
        from genai_prices.data_snapshot import get_snapshot

        snapshot = get_snapshot()
        key = (model, provider)
        if snapshot is not self._snapshot:  # a new price snapshot: start again
            with self._lock:
                self._snapshot = snapshot
                self._models.clear()
                self._formulas.clear()
        found: tuple[Any, Any] | None = self._models.get(key, _MISSING)
        if found is not _MISSING:  # a dict read is atomic: no lock on the hot path
            return found
        try:
            found = snapshot.find_provider_model(model, None, provider, None)
        except LookupError:
            found = None
        if found is not None and not _plain(snapshot, *found):
            found = (found[0], _LIBRARY)
        with self._lock:
            if len(self._models) < MAX_CACHED:
                self._models[key] = found
        return found

    def _formula(self, model_price: Any, provider_info: Any, model_info: Any) -> _Formula | None:
        key = id(model_price)
        cached = self._formulas.get(key)
        if cached is not None and cached[0] is model_price:
            return cached[1]
        formula = _build(model_price)
        with self._lock:
            if len(self._formulas) < MAX_CACHED:
                self._formulas[key] = (model_price, formula)  # holds it: the id stays unique
        return formula


_LIBRARY = object()
_MISSING: Any = object()


def _plain(snapshot: Any, provider_info: Any, model_info: Any) -> bool:
    """Whether the library prices this model with `ModelPrice.calc_price` alone (no usage
    rewrite such as Groq's whisper minimum, no auto-updated snapshot timestamp)."""
    if getattr(snapshot, "from_auto_update", False):
        return False
    return not (provider_info.id == "groq" and model_info.id.startswith("whisper"))


def _fast_usage(counts: Counts) -> bool:
    """Counts the library accepts and the formula covers (no negative leaf, bounded)."""
    inp, out, cache_read, cache_write, reasoning = counts
    return (
        min(counts) >= 0
        and max(counts) <= MAX_FAST_COUNT
        and cache_read + cache_write <= inp
        and reasoning <= out
    )


def usage_of(counts: Counts) -> Any:
    """`counts` (in `KINDS` order) as a `genai_prices.Usage`, zero counts left out."""
    from genai_prices import Usage

    return Usage(**{kind: n for kind, n in zip(KINDS, counts, strict=True) if n})


def _probes() -> list[Counts]:
    probes: list[Counts] = [(0, 0, 0, 0, 0), (1, 1, 0, 0, 0), (1_000_003, 999_983, 0, 0, 0)]
    probes += [(7, 5, 3, 0, 0), (7, 5, 0, 3, 0), (7, 5, 0, 0, 4), (9, 8, 3, 2, 5)]
    probes += [(123_457, 65_537, 100_003, 20_011, 65_521), (MAX_FAST_COUNT,) * 2 + (0, 0, 0)]
    probes.append((MAX_FAST_COUNT, MAX_FAST_COUNT, MAX_FAST_COUNT // 2, MAX_FAST_COUNT // 3, 7))
    return probes


def _build(model_price: Any) -> _Formula | None:
    """The formula for one `ModelPrice`, derived from and checked against the library; None
    when it does not apply (tiers, other price kinds, or any probe that disagrees)."""
    from genai_prices.types import TieredPrices

    values = [v for k, v in vars(model_price).items() if not k.startswith("_")]
    if any(isinstance(v, TieredPrices) for v in values):
        return None
    try:
        base = model_price.calc_price(usage_of((0, 0, 0, 0, 0)))["total_price"]
        one_input = model_price.calc_price(usage_of((1, 0, 0, 0, 0)))["total_price"] - base
        one_output = model_price.calc_price(usage_of((0, 1, 0, 0, 0)))["total_price"] - base
        # A cache or reasoning token is part of input / output: price it against one more of those.
        both = model_price.calc_price(usage_of((1, 1, 0, 0, 0)))["total_price"]
        read = model_price.calc_price(usage_of((1, 1, 1, 0, 0)))["total_price"] - both
        write = model_price.calc_price(usage_of((1, 1, 0, 1, 0)))["total_price"] - both
        reasoning = model_price.calc_price(usage_of((1, 1, 0, 0, 1)))["total_price"] - both
        coefficients = (one_input, one_output, read, write, reasoning)
        magnitude = sum((abs(c) for c in coefficients), abs(base)) or Decimal(0)
        exponents = [d.as_tuple().exponent for d in (base, *coefficients)]
        formula = _Formula(base, coefficients, min(int(e) for e in exponents), Decimal(magnitude))
        for probe in _probes():
            got = formula.total(probe)  # None: past the digit bound, the library prices it
            if got is not None and got != model_price.calc_price(usage_of(probe))["total_price"]:
                return None
    except Exception:  # broad on purpose: whatever the library objects to, it prices per span
        return None
    return formula
