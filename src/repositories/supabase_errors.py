"""What the Supabase backend raises: `RepositoryError` subclasses that never hold the key.

    RepositoryError
    └── SupabaseRequestError(status, code, message)   .retryable, .operation
        ├── SupabaseTimeoutError      no answer within the timeout          retryable
        ├── SupabaseConnectionError   refused, reset, DNS, TLS              retryable
        └── SupabaseSchemaError       table or function missing (404)       not retryable

`retryable` is True for timeouts, transport errors, 5xx, 408 and 429; other 4xx (bad key,
missing grant, rejected payload) will fail the same way again. Callers that want to stop early
(the CLI, `setup()`) read `retryable`. The emission pipeline spools every `RepositoryError`
for a later try, except those with `permanent` set: the payload itself was refused (a SQLSTATE
of class 22 or 23 in PostgREST's body, e.g. 22003 out of range, 23502 not null; or HTTP 413).
Those batches are split until the refused spans are found. A bad key or a missing table is
not permanent in that sense: it refuses every batch alike, so the spans wait in the spool.

The HTTP status is read in an httpx response hook, because postgrest's `APIError` keeps only
PostgREST's JSON body; an `APIError` (e.g. from an injected client) is mapped by its code.
"""

from __future__ import annotations

import json
from typing import Self

import httpx
from postgrest.exceptions import APIError

from src.repositories.span_store import TABLE_NAME, RepositoryError, is_data_error_sqlstate

__all__ = [
    "SupabaseConnectionError",
    "SupabaseRequestError",
    "SupabaseSchemaError",
    "SupabaseTimeoutError",
    "error_from_api_error",
    "raise_for_status",
    "scrub",
]

MAX_MESSAGE_CHARS = 500
SCHEMA_MISSING_CODES = frozenset({"PGRST202", "PGRST205", "42P01", "42883"})
"""PostgREST: function / table not in the schema cache; PostgreSQL: undefined table / function."""
SCHEMA_HELP = (
    f"the {TABLE_NAME} schema is missing in this Supabase project. PostgREST cannot create "
    "tables: apply database/ml/mlops_tables.sql with `e2i-obs db init` against the project's "
    "direct Postgres connection (E2I_OBS_DATABASE_URL=postgresql://...), or run the file in "
    "the Supabase SQL editor"
)
_TRANSPORT_WORDS = {"TIMEOUT": "timed out", "CONNECTION": "connection failed"}
_NOT_RETRYABLE_SQLSTATE_CLASSES = ("22", "23", "42", "P0", "PGRST1", "PGRST2", "PGRST3")


def scrub(text: str, secret: str) -> str:
    """`text` without `secret`, cut to a readable length."""
    if secret:
        text = text.replace(secret, "**********")
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


class SupabaseRequestError(RepositoryError):
    """A request to the Supabase REST API failed; `str()` names operation, status and code."""

    def __init__(
        self,
        status: int | None,
        code: str | None,
        message: str,
        *,
        operation: str = "request",
        retryable: bool | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.operation = operation
        self.retryable = _is_retryable(status, code) if retryable is None else retryable
        self.permanent = _is_permanent(status, code)
        if status is None and code in _TRANSPORT_WORDS:
            shown = _TRANSPORT_WORDS[code]
        else:
            shown = "error" if status is None else f"HTTP {status}"
            shown += f" ({code})" if code and code != str(status) else ""
        super().__init__(f"Supabase {operation} failed: {shown}: {message}")

    def for_operation(self, operation: str, secret: str) -> Self:
        """The same error, told for `operation`, with `secret` scrubbed from the message."""
        return type(self)(
            self.status,
            self.code,
            scrub(self.message, secret),
            operation=operation,
            retryable=self.retryable,
        )


class _NoAnswerError(SupabaseRequestError):
    """No HTTP answer at all (no status): always worth another attempt."""

    CODE = ""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(None, self.CODE, message, operation=operation, retryable=True)

    def for_operation(self, operation: str, secret: str) -> Self:
        return type(self)(operation, scrub(self.message, secret))


class SupabaseTimeoutError(_NoAnswerError):
    CODE = "TIMEOUT"


class SupabaseConnectionError(_NoAnswerError):
    CODE = "CONNECTION"


class SupabaseSchemaError(SupabaseRequestError):
    """The table or a function of database/ml/mlops_tables.sql is not there."""

    def __init__(
        self,
        status: int | None,
        code: str | None,
        message: str,
        *,
        operation: str = "request",
        retryable: bool | None = None,
    ) -> None:
        if SCHEMA_HELP not in message:
            message = f"{message}; {SCHEMA_HELP}"
        super().__init__(status, code, message, operation=operation, retryable=False)


def _is_retryable(status: int | None, code: str | None) -> bool:
    if status is not None:
        return status >= 500 or status in (408, 429)
    return not (code or "").startswith(_NOT_RETRYABLE_SQLSTATE_CLASSES)


def _is_permanent(status: int | None, code: str | None) -> bool:
    return status == 413 or is_data_error_sqlstate(code)


def _error_class(status: int | None, code: str | None) -> type[SupabaseRequestError]:
    if code in SCHEMA_MISSING_CODES and status in (None, 404):
        return SupabaseSchemaError
    return SupabaseRequestError


def _describe(body: object, fallback: str) -> tuple[str | None, str]:
    if not isinstance(body, dict):
        return None, fallback
    code = body.get("code")
    message = str(body.get("message") or body.get("msg") or fallback)
    if body.get("hint"):
        message += f" (hint: {body['hint']})"
    return (str(code) if code else None), message


async def raise_for_status(response: httpx.Response) -> None:
    """httpx response hook: turn an HTTP error into a `SupabaseRequestError` with its status."""
    if response.status_code < 400:
        return
    await response.aread()
    try:
        body: object = json.loads(response.content)
    except ValueError:
        body = None
    fallback = response.reason_phrase or f"HTTP {response.status_code}"
    code, message = _describe(body, fallback)
    status = response.status_code
    raise _error_class(status, code)(status, code or str(status), message)


def error_from_api_error(exc: APIError, operation: str, secret: str) -> SupabaseRequestError:
    """Map postgrest's `APIError` (no HTTP status) by its code."""
    code = exc.code
    status = int(code) if code and code.isdigit() and len(code) == 3 else None
    message = exc.message or "no message"
    if exc.hint:
        message += f" (hint: {exc.hint})"
    return _error_class(status, code)(status, code, scrub(message, secret), operation=operation)
