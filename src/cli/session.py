"""What every command shares: configuration from the global options, the span store, and
failures turned into one-line errors with the right exit code.

Exit codes: 0 success; 1 the store (or a sink) is missing or failing, with a hint how to fix it;
2 a bad argument or configuration (`CliError(..., EXIT_USAGE)`). No traceback reaches the user
for either, and nothing printed ever contains a password (`mask_url`, `redact`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from src.agents.ml_foundation.observability_connector.config import (
    ENV_CONFIG_PATH,
    ENV_DATABASE_URL,
    ConfigError,
    ObservabilityConfig,
    load_config,
)
from src.agents.ml_foundation.observability_connector.delivery import redact
from src.agents.ml_foundation.observability_connector.redaction import mask_credentials
from src.repositories.span_store import RepositoryError, SpanRepository

__all__ = [
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "CliError",
    "CliSettings",
    "describe_store",
    "mask_url",
    "missing_sqlite_store",
    "run_with_repository",
]

EXIT_FAILURE = 1
EXIT_USAGE = 2
T = TypeVar("T")


class CliError(Exception):
    """A failure to report as `Error: <message>` on stderr, then exit with `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def mask_url(url: str) -> str:
    """The URL with its password replaced by `***` (user, host, port and path kept); a
    secret-named query parameter or libpq `password=...` is masked too."""
    return mask_credentials(url)


def describe_store(config: ObservabilityConfig) -> str:
    """Where the spans live, safe to print."""
    storage = config.storage
    if storage.backend == "sqlite":
        return f"sqlite:///{storage.sqlite_path}"
    if storage.backend == "postgres":
        return mask_url(storage.url.get_secret_value()) if storage.url else "postgres (no url)"
    return f"supabase {mask_credentials(storage.supabase_url or '(no url)')}"


@dataclass(frozen=True, slots=True)
class CliSettings:
    """The global options: `--config` and `--database-url` (each wins over its env variable)."""

    config_path: Path | None = None
    database_url: str | None = None

    def environment(self) -> dict[str, str]:
        """`os.environ` with the global options applied, for `load_config` and the demo."""
        env = dict(os.environ)
        if self.config_path is not None:
            env[ENV_CONFIG_PATH] = str(self.config_path)
        if self.database_url:
            env[ENV_DATABASE_URL] = self.database_url
        return env

    def load(self) -> ObservabilityConfig:
        """The configuration, or `CliError` (exit 2) saying which key or value is wrong."""
        try:
            return load_config(self.config_path, env=self.environment())
        except ConfigError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None

    @contextlib.contextmanager
    def exported(self) -> Iterator[None]:
        """Put the global options into `os.environ` for code that calls `load_config()` itself
        (the demo); restored afterwards."""
        wanted = {ENV_CONFIG_PATH: self.config_path, ENV_DATABASE_URL: self.database_url}
        saved = {key: os.environ.get(key) for key in wanted}
        try:
            for key, value in wanted.items():
                if value:
                    os.environ[key] = str(value)
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def missing_sqlite_store(config: ObservabilityConfig) -> CliError | None:
    """The error to raise when the configured SQLite file does not exist yet, else None."""
    if config.storage.backend != "sqlite":
        return None
    path = Path(config.storage.sqlite_path).expanduser()
    if path.is_file():
        return None
    return CliError(
        f"no span database at {path} yet: run `e2i-obs demo` or `e2i-obs db init` "
        "(or point --database-url / E2I_OBS_DATABASE_URL at an existing store)"
    )


def explain_repository_error(exc: RepositoryError, config: ObservabilityConfig) -> CliError:
    """A storage failure as a one-line hint naming the store (password masked)."""
    store = describe_store(config)
    text = redact(str(exc), limit=500)
    lowered = text.lower()
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return CliError(f"the span store {store} has no schema yet: run `e2i-obs db init`")
    if "no connection to" in lowered or "connect" in lowered:
        return CliError(f"cannot connect to {store}: {text}")
    return CliError(f"span store {store} failed: {text}")


async def _with_repository(
    config: ObservabilityConfig, work: Callable[[SpanRepository], Awaitable[T]]
) -> T:
    from src.repositories.observability_span import create_span_repository

    repository = create_span_repository(config)
    try:
        return await work(repository)
    finally:
        with contextlib.suppress(RepositoryError, OSError):
            await repository.close()


@contextlib.contextmanager
def translated_errors(config: ObservabilityConfig) -> Iterator[None]:
    """Map the errors a command may meet onto `CliError` with the right exit code."""
    try:
        yield
    except CliError:
        raise
    except RepositoryError as exc:
        raise explain_repository_error(exc, config) from None
    except ValueError as exc:  # a bad argument the store or a service refused (ConfigError too)
        raise CliError(redact(str(exc), limit=500), EXIT_USAGE) from None
    except OSError as exc:
        raise CliError(f"{describe_store(config)}: {redact(str(exc))}") from None


def run_with_repository(
    config: ObservabilityConfig,
    work: Callable[[SpanRepository], Awaitable[T]],
    *,
    must_exist: bool = True,
) -> T:
    """Open the span store of `config`, run `work(repository)`, close the store.

    `must_exist`: a SQLite file that is not there yet is an error with a hint (reading must
    not create an empty database as a side effect); `db init` passes False.
    """
    if must_exist and (missing := missing_sqlite_store(config)) is not None:
        raise missing
    with translated_errors(config):
        return asyncio.run(_with_repository(config, work))
