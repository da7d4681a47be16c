"""`LLMSpanContext`: the span of one LLM call, as E2I's modules fill it in.

    async with opik.trace_llm_call(model="claude-sonnet-4-20250514", provider="anthropic",
                                   parent_span_id=span.span_id, input_data={...}) as llm:
        response = await client.messages.create(...)
        llm.log_tokens(input_tokens=response.usage.input_tokens,
                       output_tokens=response.usage.output_tokens)
        llm.set_cost(0.0042)

It is a `LiveSpan` (everything an agent span has) whose model, provider, prompt template,
tokens and cost land on the stored span: `llm_model`, the token columns, and the attributes
`llm.provider`, `llm.prompt_template`, `llm.cost_usd` (Opik: `model`, `provider`, `usage`,
`total_estimated_cost`). The seed's awaited form (`llm_call=`) records into the same object.
"""

from __future__ import annotations

import math
from typing import Any

from .live_span import LiveSpan
from .opik_mapping import COST_ATTRIBUTE

__all__ = ["PROMPT_TEMPLATE_ATTRIBUTE", "PROVIDER_ATTRIBUTE", "LLMSpanContext"]

PROVIDER_ATTRIBUTE = "llm.provider"
PROMPT_TEMPLATE_ATTRIBUTE = "llm.prompt_template"


class LLMSpanContext(LiveSpan):
    """A `LiveSpan` with E2I's LLM accessors (see the module docstring)."""

    @property
    def model(self) -> str | None:
        return self.llm_model

    @property
    def provider(self) -> str | None:
        value = self.attributes.get(PROVIDER_ATTRIBUTE)
        return value if isinstance(value, str) else None

    @property
    def prompt_template(self) -> str | None:
        value = self.attributes.get(PROMPT_TEMPLATE_ATTRIBUTE)
        return value if isinstance(value, str) else None

    @property
    def total_cost(self) -> float | None:
        """USD cost set with `set_cost`, else None."""
        value = self.attributes.get(COST_ATTRIBUTE)
        return float(value) if isinstance(value, int | float) else None

    def log_tokens(
        self,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        total_tokens: int | None = None,
    ) -> None:
        """The call's token usage; `total_tokens` defaults to input + output.

        A count that is not a non-negative whole number is a ValueError naming it."""
        self.set_tokens(input_tokens, output_tokens, total_tokens)
        counted = self.input_tokens is not None or self.output_tokens is not None
        if total_tokens is None and counted:
            self.total_tokens = (self.input_tokens or 0) + (self.output_tokens or 0)

    def set_cost(self, cost_usd: float) -> None:
        """The call's cost in USD, as the caller computed it (it wins over any price table)."""
        if (
            isinstance(cost_usd, bool)
            or not isinstance(cost_usd, int | float)
            or not math.isfinite(cost_usd)
            or cost_usd < 0
        ):
            raise ValueError(f"cost_usd must be a finite number >= 0, got {cost_usd!r}")
        self.attributes[COST_ATTRIBUTE] = float(cost_usd)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.update(
            model_name=self.model,
            provider=self.provider,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            total_tokens=self.total_tokens,
            total_cost=self.total_cost,
        )
        return data
