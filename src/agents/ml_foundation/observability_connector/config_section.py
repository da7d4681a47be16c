"""The base of every config section: frozen, no unknown keys, credentials in URLs masked.

A module of its own so that sections defined outside `config.py` (`config_otlp`) share it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

from .redaction import mask_credentials

__all__ = ["Section"]


class Section(BaseModel):
    """A frozen config section. Secrets are `SecretStr`; any other text that is a URL with a
    user:password (OPIK_URL_OVERRIDE, supabase_url, ...) shows masked in `repr`, `str` and
    `model_dump` (so in `redacted()` too); the attribute itself holds the real value. To
    derive a section from another, start from `dict(section)` (real values), not a dump."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, mask_credentials(value) if isinstance(value, str) else value

    @model_serializer(mode="wrap")
    def _masked(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for key, value in data.items():
                if isinstance(value, str):
                    data[key] = mask_credentials(value)
        return data
