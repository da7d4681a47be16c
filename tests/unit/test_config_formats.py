"""The seed's §3.4 file and E2I's richer file load, into our key names (`config_formats`).

That the honoured keys take effect (sampling, redaction, cache TTL, the local Opik, retries...)
is checked where each one acts: tests/integration/test_e2i_config_effects.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from src.agents.ml_foundation.observability_connector.config import (
    ConfigError,
    ObservabilityConfig,
    load_config,
)

CONFIG_DATA = Path(__file__).resolve().parents[1] / "data" / "config"
SEED_FILE = CONFIG_DATA / "seed_observability.yaml"
E2I_FILE = CONFIG_DATA / "e2i_observability.yaml"
CONFIG_LOGGER = "src.agents.ml_foundation.observability_connector.config"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "observability.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _config_error(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, env=env or {})
    return str(excinfo.value)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == CONFIG_LOGGER]


# --- the seed's file -----------------------------------------------------------------------


def test_load_config__seed_file_with_observability_root__loads_as_written(caplog):
    caplog.set_level(logging.WARNING)
    config = load_config(SEED_FILE, env={"OPIK_API_KEY": "seed-key"})
    assert (config.opik.enabled, config.opik.project_name) == (True, "e2i-causal-analytics")
    assert config.opik.workspace == "default"
    assert config.opik.api_key.get_secret_value() == "seed-key"
    assert (config.sampling.default_rate, config.sampling.production_rate) == (1.0, 0.1)
    assert config.batching.enabled is True
    assert (config.batching.max_batch_size, config.batching.max_batch_wait_seconds) == (100, 5.0)
    assert config.circuit_breaker.failure_threshold == 5
    assert config.circuit_breaker.reset_timeout_seconds == 30.0
    assert (config.retention.days, config.retention.batch_size) == (90, 1000)
    assert _warnings(caplog) == []


def test_load_config__section_under_root_and_at_top_level__error_names_it(tmp_path):
    path = _write(tmp_path, "observability:\n  sampling: {default_rate: 1}\nsampling: {}\n")
    assert "sampling: given both under observability: and at the top level" in _config_error(path)


# --- E2I's file ----------------------------------------------------------------------------


def test_load_config__e2i_file__every_key_lands_on_ours(caplog):
    caplog.set_level(logging.WARNING)
    env = {
        "E2I_TEST_OPIK_KEY": "e2i-opik-key",
        "OPIK_API_KEY": "not-this-one",
        "E2I_TEST_REDIS_URL": "redis://127.0.0.1:6390/0",
    }
    c = load_config(E2I_FILE, env=env)
    assert c.opik.api_key.get_secret_value() == "e2i-opik-key"
    assert c.opik.api_key_env == "E2I_TEST_OPIK_KEY"
    assert c.opik.endpoint_env == "E2I_TEST_OPIK_ENDPOINT"
    assert (c.opik.use_local, c.opik.effective_url) == (True, "http://127.0.0.1:5173/api")
    assert (c.opik.workspace, c.batching.flush_on_shutdown) == ("e2i-workspace", True)
    s = c.sampling
    assert s.environment_aware is True
    assert s.always_sample_agents == ["orchestrator", "causal_impact"]
    assert s.agent_overrides == {"observability_connector": 0.01, "gap_analyzer": 0.0}
    b = c.batching
    assert (b.enabled, b.max_batch_size, b.max_batch_wait_seconds) == (True, 50, 2.0)
    assert (b.retry_max_attempts, b.retry_base_delay_seconds) == (5, 0.25)
    assert (b.retry_exponential_backoff, b.retry_max_delay_seconds) == (False, 1.5)
    cb = c.circuit_breaker
    assert (cb.enabled, cb.failure_threshold, cb.reset_timeout_seconds) == (True, 3, 20.0)
    assert (cb.half_open_max_calls, cb.success_threshold) == (2, 2)
    assert (cb.fallback_log_to_file, cb.fallback_log_path) == (
        True,
        Path("logs/opik_fallback.jsonl"),
    )
    cache = c.cache
    assert cache.backend == "redis"  # $E2I_TEST_REDIS_URL (redis.url_env) is set
    assert cache.redis_url.get_secret_value() == "redis://127.0.0.1:6390/0"
    assert (cache.fallback_to_memory, cache.key_prefix) == (False, "e2i:test:obs")
    assert cache.ttl_seconds == {"1h": 60, "24h": 300, "7d": 600}
    assert [cache.ttl_for(w) for w in ("1h", "24h", "7d", "15m")] == [60, 300, 600, 120]
    assert (cache.max_entries, cache.cleanup_interval_seconds) == (500, 30.0)
    assert (cache.redis_db, cache.redis_url_env) == (3, "E2I_TEST_REDIS_URL")
    assert (cache.redis_connect_timeout_seconds, cache.redis_socket_timeout_seconds) == (0.5, 0.75)
    r = c.retention
    assert (r.days, r.batch_size, r.dry_run) == (30, 250, True)
    st = c.storage
    assert (st.pool_min_size, st.pool_max_size, st.pool_timeout_seconds) == (2, 8, 12.0)
    assert st.insert_batch_size == 40
    sp = c.spans
    assert (sp.include_input, sp.include_output, sp.truncate_on_overflow) == (True, True, True)
    sizes = (sp.max_input_size_bytes, sp.max_output_size_bytes, sp.max_metadata_size_bytes)
    assert sizes == (4096, 2048, 8192)
    assert sp.redact_patterns == ["password", "api_key", "secret", "token", "authorization"]


def test_load_config__e2i_file__one_warning_names_the_keys_not_used(caplog):
    caplog.set_level(logging.WARNING)
    load_config(E2I_FILE, env={})
    warnings = _warnings(caplog)
    assert len(warnings) == 1
    named = warnings[0].split("(other parts of E2I): ")[1].split(", ")
    assert named == [
        "opik.flush_interval_seconds",
        "retention.cleanup.enabled",
        "retention.cleanup.schedule",
        "retention.archive",
        "causal_discovery",
    ]


def test_load_config__endpoint_env__names_the_url_variable():
    url = "http://127.0.0.1:5999/api"
    config = load_config(
        E2I_FILE, env={"E2I_TEST_OPIK_ENDPOINT": url, "OPIK_URL_OVERRIDE": "http://x/api"}
    )
    assert config.opik.url_override == url
    assert config.opik.effective_url == "http://127.0.0.1:5173/api"  # use_local wins


def test_load_config__renamed_key_variable__default_variable_not_read(tmp_path):
    path = _write(tmp_path, "opik:\n  api_key_env: MY_KEY\n")
    assert load_config(path, env={"OPIK_API_KEY": "other"}).opik.api_key is None


@pytest.mark.parametrize(
    ("endpoint", "port", "url"),
    [
        ("http://localhost:5173", None, "http://localhost:5173/api"),
        ("http://localhost", 8080, "http://localhost:8080/api"),
        ("http://opik.internal:5173/", 9999, "http://opik.internal:5173/api"),
        ("https://opik.internal/custom/api/", None, "https://opik.internal/custom/api"),
    ],
)
def test_opik_settings__use_local__api_url_from_endpoint_and_port(tmp_path, endpoint, port, url):
    text = f"opik:\n  use_local: true\n  local_endpoint: {endpoint}\n"
    text += f"  local_port: {port or 'null'}\n"
    assert load_config(_write(tmp_path, text), env={}).opik.effective_url == url


# --- computed keys and conflicts -----------------------------------------------------------


def test_load_config__retry_disabled__one_attempt_whatever_max_retries(tmp_path):
    path = _write(tmp_path, "batching:\n  retry: {enabled: false, max_retries: 5}\n")
    assert load_config(path, env={}).batching.retry_max_attempts == 1


def test_load_config__batch_insert_false__one_span_per_insert(tmp_path):
    path = _write(tmp_path, "database:\n  batch_insert: false\n  insert_batch_size: 500\n")
    assert load_config(path, env={}).storage.insert_batch_size == 1


def test_load_config__seed_and_e2i_names_disagree__error_names_both(tmp_path):
    path = _write(tmp_path, "batching:\n  max_batch_wait_seconds: 5\n  max_wait_seconds: 2\n")
    message = _config_error(path)
    assert "batching.max_wait_seconds = 2" in message
    assert "batching.max_batch_wait_seconds = 5" in message and "keep one" in message


def test_load_config__seed_and_e2i_names_agree__accepted(tmp_path):
    path = _write(tmp_path, "retention:\n  days: 7\n  span_ttl_days: 7\n")
    assert load_config(path, env={}).retention.days == 7


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "guess"),
    [
        ("batching:\n  max_batch_sise: 10\n", "batching.max_batch_sise", "max_batch_size"),
        ("batching:\n  retry: {max_retrys: 2}\n", "batching.retry.max_retrys", "max_retries"),
        ("sampling:\n  agent_overides: {}\n", "sampling.agent_overides", "agent_overrides"),
        ("cache:\n  redis: {url_evn: X}\n", "cache.redis.url_evn", "url_env"),
        ("database:\n  pool: {max_connection: 3}\n", "database.pool.max_connection", None),
        ("retention:\n  cleanup: {batchsize: 3}\n", "retention.cleanup.batchsize", "batch_size"),
        ("spans:\n  redact_pattern: [x]\n", "spans.redact_pattern", "redact_patterns"),
        ("samplng:\n  default_rate: 1\n", "samplng", "sampling"),
        ("circuit_breakr:\n  enabled: true\n", "circuit_breakr", "circuit_breaker"),
    ],
)
def test_load_config__misspelt_key__error_suggests_the_nearest_name(tmp_path, text, key, guess):
    message = _config_error(_write(tmp_path, text))
    assert f"{key}: unknown key" in message
    if guess is not None:
        assert f"(did you mean {guess!r}?)" in message
    else:
        assert "max_connections" in message  # listed among the accepted names


@pytest.mark.parametrize(
    ("text", "shown", "accepted"),
    [
        ("database:\n  pool: {max_connections: 0}\n", "pool.max_connections = 0", "equal to 1"),
        ("batching:\n  max_wait_seconds: -1\n", "batching.max_wait_seconds = -1", "greater than 0"),
        ("batching:\n  retry: {max_retries: -1}\n", "max_retries = -1", "from 0 to 19"),
        ("cache:\n  ttl: {1w: 5}\n", "cache.ttl = {'1w': 5}", "15m, 1h, 24h, 7d"),
        ("cache:\n  ttl: [60]\n", "cache.ttl: expected a mapping", "default"),
        ("database:\n  spans_table: spans\n", "database.spans_table = 'spans'", "ml_observability"),
        (
            "circuit_breaker:\n  fallback: {log_to_database: false}\n",
            "circuit_breaker.fallback.log_to_database = False",
            "True",
        ),
        ("sampling:\n  agent_overrides: {a: 2}\n", "sampling.agent_overrides", "0.0-1.0"),
        ("spans:\n  redact_patterns: ['(']\n", "spans.redact_patterns", "not a valid regex"),
        ("opik:\n  local_endpoint: localhost\n", "opik.local_endpoint = 'localhost'", "http://"),
    ],
)
def test_load_config__bad_e2i_value__error_names_key_as_written(tmp_path, text, shown, accepted):
    message = _config_error(_write(tmp_path, text))
    assert shown in message and accepted in message


def test_load_config__unknown_values_never_shown(tmp_path):
    secret = "pw-13b7c2"
    path = _write(tmp_path, f"cache:\n  redis:\n    password: {secret}\n")
    message = _config_error(path)
    assert "cache.redis.password: unknown key" in message and secret not in message


def test_observability_config__defaults_unchanged_by_new_keys():
    """New keys default to what the connector did before they existed."""
    c = ObservabilityConfig()
    assert (c.batching.enabled, c.batching.retry_exponential_backoff) == (True, True)
    assert (c.circuit_breaker.half_open_max_calls, c.circuit_breaker.success_threshold) == (1, 1)
    assert (c.cache.fallback_to_memory, c.cache.key_prefix) == (True, "e2i:obs:metrics")
    assert (c.sampling.agent_overrides, c.retention.dry_run) == ({}, False)
    assert c.opik.effective_url is None
