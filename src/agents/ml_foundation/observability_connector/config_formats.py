"""The seed's and E2I's `observability.yaml`, read into our key names before validation.

Why: the connector is dropped into E2I, whose file grew from the seed's (§3.4 of the plan)
with other names and nested sections. Three shapes load, and may be mixed:
- ours (every key of `config.py`);
- the seed's: the same sections under a root `observability:` key;
- E2I's: no root, nested `retry:`, `fallback:`, `ttl:`, `memory:`, `redis:`, `cleanup:`,
  `database.pool:`.

Where E2I's key and ours configure the same thing, ours is the name inside the program and
E2I's is rewritten to it (`ALIASES`, plus the computed ones below); where we had no key, E2I's
name is ours too (`spans.*`, `sampling.agent_overrides`, ...). Computed:
- `batching.retry.max_retries: n` -> `retry_max_attempts: n + 1` (retries after the first call);
  `batching.retry.enabled: false` -> `retry_max_attempts: 1`, whatever `max_retries` says;
- `cache.ttl: {<window>: s, default: s}` -> `ttl_seconds` + `default_ttl_seconds`;
- `database.batch_insert: false` -> `storage.insert_batch_size: 1` (one span per INSERT).
Two keys that land on the same one must agree, or loading fails naming both.

Keys of E2I that configure something the connector does not do (`UNUSED`, and any top-level
section that is not ours, such as `causal_discovery`) load with one warning naming them. Any
other key is an error that suggests the nearest accepted name (`difflib`). The value of an
unknown key is never shown: it may be a misnamed secret.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ALIASES", "ROOT_KEY", "UNUSED", "Normalized", "nearest", "normalize"]

ROOT_KEY = "observability"
"""The seed's file wraps every section in this key."""

Path3 = tuple[str, ...]

ALIASES: dict[Path3, tuple[str, str]] = {
    # seed (§3.4) and E2I
    ("batching", "max_wait_seconds"): ("batching", "max_batch_wait_seconds"),
    ("batching", "retry", "retry_delay_seconds"): ("batching", "retry_base_delay_seconds"),
    ("batching", "retry", "exponential_backoff"): ("batching", "retry_exponential_backoff"),
    ("batching", "retry", "max_delay_seconds"): ("batching", "retry_max_delay_seconds"),
    ("opik", "flush_on_shutdown"): ("batching", "flush_on_shutdown"),
    ("circuit_breaker", "fallback", "log_to_database"): (
        "circuit_breaker",
        "fallback_log_to_database",
    ),
    ("circuit_breaker", "fallback", "log_to_file"): ("circuit_breaker", "fallback_log_to_file"),
    ("circuit_breaker", "fallback", "fallback_log_path"): (
        "circuit_breaker",
        "fallback_log_path",
    ),
    ("cache", "memory", "max_entries"): ("cache", "max_entries"),
    ("cache", "memory", "cleanup_interval_seconds"): ("cache", "cleanup_interval_seconds"),
    ("cache", "redis", "url_env"): ("cache", "redis_url_env"),
    ("cache", "redis", "db"): ("cache", "redis_db"),
    ("cache", "redis", "connection_timeout_seconds"): ("cache", "redis_connect_timeout_seconds"),
    ("cache", "redis", "socket_timeout_seconds"): ("cache", "redis_socket_timeout_seconds"),
    ("retention", "span_ttl_days"): ("retention", "days"),
    ("retention", "rollup_ttl_days"): ("retention", "rollup_days"),
    ("retention", "rollup_minute_ttl_days"): ("retention", "rollup_minute_days"),
    ("retention", "cleanup_batch_size"): ("retention", "batch_size"),
    ("retention", "cleanup", "batch_size"): ("retention", "batch_size"),
    ("retention", "cleanup", "dry_run"): ("retention", "dry_run"),
    ("database", "spans_table"): ("storage", "spans_table"),
    ("database", "latency_summary_view"): ("storage", "latency_summary_view"),
    ("database", "insert_batch_size"): ("storage", "insert_batch_size"),
    ("database", "pool", "min_connections"): ("storage", "pool_min_size"),
    ("database", "pool", "max_connections"): ("storage", "pool_max_size"),
    ("database", "pool", "connection_timeout_seconds"): ("storage", "pool_timeout_seconds"),
}
"""E2I's or the seed's key (section, [sub-section,] key) -> ours (section, key)."""

UNUSED: dict[Path3, str] = {
    ("opik", "flush_interval_seconds"): "spans reach Opik every batching.max_batch_wait_seconds",
    ("retention", "cleanup", "enabled"): "E2I's scheduler decides when cleanup runs",
    ("retention", "cleanup", "schedule"): "E2I's scheduler decides when cleanup runs",
    ("retention", "archive"): "the connector does not archive spans",
}
"""E2I's keys for things the connector does not do, and why (loaded with one warning)."""

_COMPUTED: dict[Path3, tuple[str, ...]] = {
    ("batching", "retry"): ("enabled", "max_retries"),
    ("cache", "ttl"): (),
    ("database", "batch_insert"): (),
}
_SUBSECTIONS = frozenset(p[:2] for p in (*ALIASES, *UNUSED, *_COMPUTED) if len(p) == 3) | {
    ("cache", "ttl"),
    ("batching", "retry"),
}
_KEY_ONLY_SECTIONS = ("database",)
"""Sections with no model of their own: every key is rewritten into another section."""
_TOP_LEVEL_CUTOFF = 0.7
"""A top-level key this similar to one of ours is a typo (error); anything else is another
E2I part's section (warning)."""


@dataclass
class Normalized:
    """The file in our key names, where each key came from, and what is not used."""

    data: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    """Our dotted key -> the key as written in the file (only where they differ)."""
    unused: list[str] = field(default_factory=list)
    """Dotted keys accepted but not used by the connector, in file order."""
    errors: list[str] = field(default_factory=list)
    _set_by: dict[tuple[str, str], tuple[str, Any]] = field(default_factory=dict)

    def put(self, target: tuple[str, str], value: Any, written: str) -> None:
        section, key = target
        dotted = f"{section}.{key}"
        earlier = self._set_by.get(target)
        if earlier is not None:
            if earlier[1] != value:
                self.errors.append(
                    f"{written} = {value!r} and {earlier[0]} = {earlier[1]!r} both set "
                    f"{dotted}; keep one of them"
                )
            return
        self._set_by[target] = (written, value)
        self.data.setdefault(section, {})[key] = value
        if written != dotted:
            self.origins[dotted] = written


def nearest(key: str, accepted: list[str], cutoff: float = 0.6) -> str | None:
    """The accepted name closest to a misspelt `key`, if any is close enough."""
    matches = difflib.get_close_matches(key, accepted, n=1, cutoff=cutoff)
    return matches[0] if matches else None


def _unknown(where: str, key: str, accepted: list[str]) -> str:
    guess = nearest(key, accepted)
    hint = f" (did you mean {guess!r}?)" if guess else ""
    return f"{where}: unknown key{hint}; accepted: {', '.join(accepted)}"


def _accepted(path: Path3, fields: list[str]) -> list[str]:
    """Every name a key at `path` + (name,) may have: our fields, then E2I's names."""
    names = list(fields)
    for known in (*ALIASES, *UNUSED, *_COMPUTED, *_SUBSECTIONS):
        if len(known) == len(path) + 1 and known[: len(path)] == path and known[-1] not in names:
            names.append(known[-1])
    for sub in _COMPUTED.get(path, ()):
        if sub not in names:
            names.append(sub)
    return names


def normalize(raw: Mapping[str, Any], sections: Mapping[str, list[str] | None]) -> Normalized:
    """Rewrite a loaded file into our key names.

    `sections` maps each of our top-level keys to its field names (None for a plain value such
    as `default_agent_tier`). Errors are collected, not raised, so all are reported at once.
    """
    out = Normalized()
    data = dict(raw)
    root = data.pop(ROOT_KEY, None)
    if root is not None:
        if not isinstance(root, Mapping):
            out.errors.append(f"{ROOT_KEY}: expected a mapping of sections (the seed's root key)")
        else:
            for key, value in root.items():
                if key in data:
                    out.errors.append(
                        f"{key}: given both under {ROOT_KEY}: and at the top level; keep one"
                    )
                else:
                    data[key] = value
    ours = [*sections, *_KEY_ONLY_SECTIONS]
    for key, value in data.items():
        name = str(key)
        if name in sections and sections[name] is None:
            out.data[name] = value
        elif name in ours:
            _section(out, name, value, sections.get(name) or [])
        elif nearest(name, ours, _TOP_LEVEL_CUTOFF):
            out.errors.append(_unknown(name, name, ours))
        else:
            out.unused.append(name)
    return out


def _section(out: Normalized, section: str, value: Any, fields: list[str]) -> None:
    if not isinstance(value, Mapping):
        if section in _KEY_ONLY_SECTIONS:
            out.errors.append(f"{section}: expected a mapping of keys, got {type(value).__name__}")
        else:
            out.data[section] = value  # validation says what the section should be
        return
    batch_insert_off = section == "database" and value.get("batch_insert") is False
    for key, item in value.items():
        name = str(key)
        path = (section, name)
        if batch_insert_off and name == "insert_batch_size":
            continue  # batching of inserts is off: one span per INSERT, whatever the size says
        if path in _COMPUTED:
            _computed(out, path, item)
        elif path in _SUBSECTIONS:
            _subsection(out, path, item)
        elif path in ALIASES:
            out.put(ALIASES[path], item, f"{section}.{name}")
        elif path in UNUSED:
            out.unused.append(f"{section}.{name}")
        elif name in fields:
            out.put((section, name), item, f"{section}.{name}")
        else:
            out.errors.append(_unknown(f"{section}.{name}", name, _accepted((section,), fields)))


def _subsection(out: Normalized, path: Path3, value: Any) -> None:
    where = ".".join(path)
    accepted = _accepted(path, [])
    if not isinstance(value, Mapping):
        out.errors.append(f"{where}: expected a mapping with keys {', '.join(accepted)}")
        return
    for key, item in value.items():
        name = str(key)
        full = (*path, name)
        if full in ALIASES:
            out.put(ALIASES[full], item, f"{where}.{name}")
        elif full in UNUSED:
            out.unused.append(f"{where}.{name}")
        else:
            out.errors.append(_unknown(f"{where}.{name}", name, accepted))


def _computed(out: Normalized, path: Path3, value: Any) -> None:
    where = ".".join(path)
    if path == ("database", "batch_insert"):
        if not isinstance(value, bool):
            out.errors.append(f"{where} = {value!r}: expected true or false")
        elif not value:
            out.put(("storage", "insert_batch_size"), 1, where)
        return
    if path == ("cache", "ttl") and not isinstance(value, Mapping):
        out.errors.append(f"{where}: expected a mapping of time window -> seconds and `default`")
        return
    if not isinstance(value, Mapping):
        out.errors.append(f"{where}: expected a mapping with keys {', '.join(_accepted(path, []))}")
        return
    if path == ("cache", "ttl"):
        windows: dict[str, Any] = {}
        for window, ttl in value.items():
            if str(window) == "default":
                out.put(("cache", "default_ttl_seconds"), ttl, f"{where}.default")
            else:
                windows[str(window)] = ttl
        if windows:
            out.put(("cache", "ttl_seconds"), windows, where)
        return
    _subsection(out, path, {k: v for k, v in value.items() if k not in ("enabled", "max_retries")})
    _retries(out, where, value)


def _retries(out: Normalized, where: str, retry: Mapping[str, Any]) -> None:
    """`batching.retry.enabled` / `max_retries` -> `batching.retry_max_attempts`."""
    enabled = retry.get("enabled", True)
    if not isinstance(enabled, bool):
        out.errors.append(f"{where}.enabled = {enabled!r}: expected true or false")
        return
    if not enabled:
        out.put(("batching", "retry_max_attempts"), 1, f"{where}.enabled")
        return
    if "max_retries" not in retry:
        return
    retries = retry["max_retries"]
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 19:
        out.errors.append(
            f"{where}.max_retries = {retries!r}: expected an integer from 0 to 19 "
            "(retries after the first attempt)"
        )
        return
    out.put(("batching", "retry_max_attempts"), retries + 1, f"{where}.max_retries")
