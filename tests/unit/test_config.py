"""Configuration: defaults, the YAML file, environment overrides, errors and secrets.

Every test passes `env={...}` explicitly, so the host's environment never leaks in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from src.agents.ml_foundation.observability_connector.config import (
    ConfigError,
    ObservabilityConfig,
    _section_fields,
    load_config,
)
from src.agents.ml_foundation.observability_connector.config_formats import normalize
from src.agents.ml_foundation.observability_connector.resources import config_file

API_KEY = "opik-key-7f3a9c1e"
PG_PASSWORD = "pg-pass-b41d2e"
SUPABASE_KEY = "sb-service-role-9e8d7c"
REDIS_PASSWORD = "redis-pass-55aa33"
SECRETS = (API_KEY, PG_PASSWORD, SUPABASE_KEY, REDIS_PASSWORD)
ALL_SECRETS_ENV = {
    "OPIK_API_KEY": API_KEY,
    "E2I_OBS_DATABASE_URL": f"postgresql://e2i:{PG_PASSWORD}@127.0.0.1:5432/e2i",
    "SUPABASE_URL": "https://abcd.supabase.co",
    "SUPABASE_KEY": SUPABASE_KEY,
    "REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0",
}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "observability.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _config_error(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as excinfo:
        load_config(*args, **kwargs)
    return str(excinfo.value)


def _assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# --- defaults and the shipped file ---------------------------------------------------------


def test_observability_config__defaults__match_design():
    config = ObservabilityConfig()
    assert (config.batching.max_batch_size, config.batching.max_batch_wait_seconds) == (100, 5.0)
    assert config.storage.backend == "sqlite" and config.cache.backend == "memory"
    assert config.opik.enabled is True and config.opik.api_key is None
    assert config.sampling.always_sample_errors is True
    assert config.capture.prompts is False
    assert config.retention.days == 90
    assert config.cache.ttl_for("1h") == 60.0 and config.cache.ttl_for("7d") == 60.0


def test_load_config__shipped_file_no_env__equals_built_in_defaults():
    assert config_file().is_file()
    assert load_config(env={}) == ObservabilityConfig()


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    out = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out |= _keys(annotation, f"{prefix}{name}.")
        else:
            out.add(prefix + name)
    return out


def test_shipped_file__keys__every_setting_listed_and_no_secret_set(caplog):
    """The shipped file is E2I-style; read into our names it sets every key (none unused)."""
    data = yaml.safe_load(config_file().read_text(encoding="utf-8"))
    normalized = normalize(data, _section_fields())
    assert (normalized.errors, normalized.unused) == ([], [])
    keys = {
        f"{section}.{key}" if isinstance(values, dict) else section
        for section, values in normalized.data.items()
        for key in (values if isinstance(values, dict) else [None])
    }
    assert keys == _keys(ObservabilityConfig)
    secrets = [data["opik"]["api_key"], data["storage"]["url"], data["storage"]["supabase_key"]]
    assert [*secrets, data["cache"]["redis_url"]] == [None] * 4
    assert "observability" not in data  # E2I's file has no root key (the seed's has)


# --- file loading --------------------------------------------------------------------------


def test_load_config__file_values__applied_rest_default(tmp_path):
    path = _write(
        tmp_path,
        "batching:\n  max_batch_size: 250\nsampling:\n  environment: production\n"
        "cache:\n  ttl_seconds: {15m: 10, 7d: 900}\n",
    )
    config = load_config(path, env={})
    assert config.batching.max_batch_size == 250
    assert config.batching.max_batch_wait_seconds == 5.0
    assert config.sampling.environment == "production"
    assert config.cache.ttl_for("15m") == 10.0 and config.cache.ttl_for("1h") == 60.0


@pytest.mark.parametrize("text", ["", "# only comments\n"])
def test_load_config__empty_file__defaults(tmp_path, text):
    assert load_config(_write(tmp_path, text), env={}) == ObservabilityConfig()


def test_load_config__e2i_obs_config_env__file_used(tmp_path):
    path = _write(tmp_path, "retention:\n  days: 7\n")
    assert load_config(env={"E2I_OBS_CONFIG": str(path)}).retention.days == 7


def test_load_config__explicit_path_and_env_path__explicit_wins(tmp_path):
    explicit = _write(tmp_path, "retention:\n  days: 3\n")
    other = tmp_path / "other.yaml"
    other.write_text("retention:\n  days: 30\n", encoding="utf-8")
    assert load_config(explicit, env={"E2I_OBS_CONFIG": str(other)}).retention.days == 3


def test_load_config__missing_explicit_file__error_names_path(tmp_path):
    missing = tmp_path / "nope.yaml"
    expected = f"configuration file {missing} does not exist"
    assert expected in _config_error(missing, env={})
    assert expected in _config_error(env={"E2I_OBS_CONFIG": str(missing)})


def test_load_config__top_level_not_a_mapping__error_says_what_is_expected(tmp_path):
    message = _config_error(_write(tmp_path, "- opik\n- storage\n"), env={})
    assert "top level must be a mapping of sections, got list" in message


def test_load_config__invalid_yaml__error_names_file_and_line(tmp_path):
    path = _write(tmp_path, "opik:\n  project_name: [unclosed\nretention: {days: 1}\n")
    message = _config_error(path, env={})
    assert str(path) in message and "not valid YAML" in message and "line 2" in message


# --- environment overrides -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "section", "key", "in_file"),
    [
        ("OPIK_URL_OVERRIDE", "http://127.0.0.1:5173/api/", "opik", "url_override", "from-file"),
        ("OPIK_WORKSPACE", "e2i-team", "opik", "workspace", "from-file"),
        ("OPIK_PROJECT_NAME", "e2i-staging", "opik", "project_name", "from-file"),
        ("E2I_OBS_ENVIRONMENT", "production", "sampling", "environment", "staging"),
    ],
)
def test_load_config__plain_env_override__beats_file(
    tmp_path, variable, value, section, key, in_file
):
    path = _write(tmp_path, f"{section}:\n  {key}: {in_file}\n")
    assert getattr(getattr(load_config(path, env={}), section), key) == in_file
    assert getattr(getattr(load_config(path, env={variable: value}), section), key) == value


def test_load_config__opik_api_key_env__secret_set():
    config = load_config(env={"OPIK_API_KEY": API_KEY})
    assert config.opik.api_key.get_secret_value() == API_KEY


def test_load_config__explicit_overrides__beat_env():
    config = load_config(
        env={"OPIK_PROJECT_NAME": "from-env"}, overrides={"opik": {"project_name": "explicit"}}
    )
    assert config.opik.project_name == "explicit"


@pytest.mark.parametrize(
    ("url", "expected_path"),
    [
        ("sqlite:///relative/spans.db", Path("relative/spans.db")),
        ("sqlite:////var/lib/e2i/spans.db", Path("/var/lib/e2i/spans.db")),
    ],
)
def test_load_config__sqlite_database_url__sqlite_backend_with_path(url, expected_path):
    config = load_config(env={"E2I_OBS_DATABASE_URL": url})
    assert config.storage.backend == "sqlite"
    assert config.storage.sqlite_path == expected_path


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_load_config__postgres_database_url__postgres_backend_with_secret_url(scheme):
    url = f"{scheme}://e2i:{PG_PASSWORD}@127.0.0.1:5432/e2i"
    config = load_config(env={"E2I_OBS_DATABASE_URL": url})
    assert config.storage.backend == "postgres"
    assert config.storage.url.get_secret_value() == url


@pytest.mark.parametrize(
    ("url", "problem", "accepted"),
    [
        (f"mysql://e2i:{PG_PASSWORD}@127.0.0.1/e2i", "unsupported URL scheme", "postgresql://"),
        (f"mysql://e2i:p@{PG_PASSWORD}@127.0.0.1/e2i", "unsupported URL scheme", "sqlite:///"),
        ("sqlite:///", "has no file path", "sqlite:///relative/path.db"),
    ],
)
def test_load_config__bad_database_url__error_names_variable_and_accepted_forms(
    url, problem, accepted
):
    message = _config_error(env={"E2I_OBS_DATABASE_URL": url})
    assert "E2I_OBS_DATABASE_URL" in message and problem in message and accepted in message
    assert PG_PASSWORD not in message


def test_load_config__supabase_url_and_key__supabase_backend():
    config = load_config(
        env={"SUPABASE_URL": "https://abcd.supabase.co", "SUPABASE_KEY": SUPABASE_KEY}
    )
    assert config.storage.backend == "supabase"
    assert config.storage.supabase_url == "https://abcd.supabase.co"
    assert config.storage.supabase_key.get_secret_value() == SUPABASE_KEY


@pytest.mark.parametrize(
    ("variable", "missing"), [("SUPABASE_URL", "SUPABASE_KEY"), ("SUPABASE_KEY", "SUPABASE_URL")]
)
def test_load_config__only_one_supabase_variable__error_names_the_missing_one(variable, missing):
    """Half a Supabase configuration is a mistake, not a reason to write to SQLite silently."""
    with pytest.raises(ConfigError, match=f"{variable} is set but {missing} is not") as caught:
        load_config(env={variable: SUPABASE_KEY})
    assert SUPABASE_KEY not in str(caught.value)


def test_load_config__database_url_and_supabase__database_url_wins():
    config = load_config(env=ALL_SECRETS_ENV)
    assert config.storage.backend == "postgres"
    assert config.storage.supabase_key.get_secret_value() == SUPABASE_KEY


def test_load_config__redis_url__redis_cache_with_secret_url():
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0"
    config = load_config(env={"REDIS_URL": url})
    assert config.cache.backend == "redis"
    assert config.cache.redis_url.get_secret_value() == url


# --- invalid values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown", "accepted"),
    [
        ("batching: {max_batch_size: 0}", "batching.max_batch_size = 0", "greater than or equal"),
        ("sampling: {default_rate: 1.5}", "sampling.default_rate = 1.5", "less than or equal to 1"),
        ("storage: {backend: mysql}", "storage.backend = 'mysql'", "'postgres' or 'supabase'"),
        ("cache: {backend: memcached}", "cache.backend = 'memcached'", "'memory' or 'redis'"),
        ("opik: {timeout_seconds: fast}", "opik.timeout_seconds = 'fast'", "a valid number"),
        ("cache: {ttl_seconds: {1w: 10}}", "cache.ttl_seconds = {'1w': 10}", "15m, 1h, 24h, 7d"),
        ("default_agent_tier: 9", "default_agent_tier = 9", "less than or equal to 5"),
    ],
)
def test_load_config__invalid_value__error_names_key_value_and_accepted(
    tmp_path, text, shown, accepted
):
    """`shown` is `<key> = <value>` as the message prints it."""
    path = _write(tmp_path, text + "\n")
    message = _config_error(path, env={})
    assert str(path) in message and shown in message and accepted in message


@pytest.mark.parametrize(
    ("text", "key", "accepted"),
    [
        ("batching:\n  max_batch: 10\n", "batching.max_batch", "max_batch_size, max_batch_wait"),
        ("samplng:\n  default_rate: 1\n", "samplng", "opik, sampling, batching"),
        ("storage:\n  dsn: x\n", "storage.dsn", "backend, url, sqlite_path"),
    ],
)
def test_load_config__unknown_key__error_names_key_and_accepted_keys(tmp_path, text, key, accepted):
    message = _config_error(_write(tmp_path, text), env={})
    assert f"{key}: unknown key" in message and "; accepted: " in message and accepted in message


def test_load_config__several_errors__all_reported(tmp_path):
    path = _write(tmp_path, "batching:\n  max_batch_size: 0\nretention:\n  days: 0\n")
    message = _config_error(path, env={})
    assert "batching.max_batch_size" in message and "retention.days" in message


# --- secrets never shown -------------------------------------------------------------------


def test_config_with_all_secrets__repr_str_redacted__no_secret():
    config = load_config(env=ALL_SECRETS_ENV)
    assert config.opik.api_key.get_secret_value() == API_KEY  # the secrets are really loaded
    for text in (repr(config), str(config), json.dumps(config.redacted())):
        _assert_no_secret(text)
    redacted = config.redacted()
    masked = [redacted["opik"]["api_key"], redacted["storage"]["url"]]
    masked += [redacted["storage"]["supabase_key"], redacted["cache"]["redis_url"]]
    assert masked == ["**********"] * 4


@pytest.mark.parametrize(
    ("text", "env"),
    [
        # unterminated quote: the YAML error is on the secret's own line
        (f'opik:\n  api_key: "{API_KEY}\n', {}),
        (f"opik:\n  api_key: [{API_KEY}]\n", {}),
        (f"storage:\n  dsn: postgresql://e2i:{PG_PASSWORD}@h/db\n", {}),
        (f"storage:\n  supabase_password: {SUPABASE_KEY}\n", {}),
        (f"cache:\n  redis_url: {{password: {REDIS_PASSWORD}}}\n", {}),
        # an unrelated error while every secret comes from the environment
        ("retention:\n  days: -1\n", ALL_SECRETS_ENV),
    ],
)
def test_load_config__error_with_secrets_around__message_has_no_secret(tmp_path, text, env):
    message = _config_error(_write(tmp_path, text), env=env)
    _assert_no_secret(message)


def test_load_config__dsn_where_a_section_belongs__error_masks_the_password():
    with pytest.raises(ConfigError) as caught:
        load_config(env={}, overrides={"storage": "postgresql://app:Hunter2pw@db.example/e2i"})
    message = str(caught.value)
    assert "storage" in message and "valid dictionary" in message
    assert "Hunter2pw" not in message


def test_load_config__redis_url_without_scheme__error_at_load_naming_accepted_forms():
    with pytest.raises(ConfigError, match=r"cache\.redis_url.*redis://host:6379/0") as caught:
        load_config(env={"REDIS_URL": "secretpw@localhost:6379"})
    assert "secretpw" not in str(caught.value)


# --- issue 11: URL credentials, clear file errors, accepted-but-wrong values ---------------

URL_PASSWORD = "url-pass-c0ffee"


@pytest.mark.parametrize(
    ("env", "section", "key"),
    [
        ({"OPIK_URL_OVERRIDE": f"http://alice:{URL_PASSWORD}@opik.local:5173/api"}, "opik",
         "url_override"),
        ({"SUPABASE_URL": f"https://svc:{URL_PASSWORD}@abcd.supabase.co", "SUPABASE_KEY": "k"},
         "storage", "supabase_url"),
    ],
)  # fmt: skip
def test_config__url_setting_with_user_password__masked_in_repr_str_redacted_dump(
    env, section, key
):
    """Issue 11 (7): a user:password inside OPIK_URL_OVERRIDE showed in repr, str, redacted()
    and model_dump; the attribute keeps the real URL for the client that needs it."""
    config = load_config(env=env)
    assert URL_PASSWORD in getattr(getattr(config, section), key)
    dumped = config.model_dump()
    shown = (repr(config), str(config), str(getattr(config, section)), str(dumped))
    for text in (*shown, json.dumps(config.redacted()), config.model_dump_json()):
        assert URL_PASSWORD not in text
    assert dumped[section][key].startswith(("http://alice:***@", "https://svc:***@"))


@pytest.mark.parametrize("value", ["Production", "prod", "PROD", " production "])
def test_load_config__environment_production_any_case__production_sampling(value):
    """Issue 11 (9): `Production` or `prod` kept 100% sampling."""
    from src.agents.ml_foundation.observability_connector.sampling import Sampler

    config = load_config(env={"E2I_OBS_ENVIRONMENT": value})
    assert config.sampling.environment == "production"
    assert Sampler(config.sampling).rate == config.sampling.production_rate == 0.1


def test_load_config__unknown_environment__error_names_accepted_values():
    message = _config_error(env={"E2I_OBS_ENVIRONMENT": "prodution"})
    assert "sampling.environment" in message and "'prodution'" in message
    assert "production, prod" in message and "development" in message


def test_load_config__non_utf8_file__config_error_not_decode_traceback(tmp_path):
    """Issue 11 (8): a Latin-1 file raised UnicodeDecodeError."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes("opik:\n  project_name: caf\xe9\n".encode("latin-1"))
    message = _config_error(path, env={})
    assert str(path) in message and "not UTF-8" in message and "0xe9" in message


def test_load_config__directory_as_file__says_it_is_a_directory(tmp_path):
    """Issue 11 (8): `--config /tmp` said "does not exist"."""
    message = _config_error(tmp_path, env={})
    assert f"{tmp_path} is a directory" in message


@pytest.mark.parametrize("port", ["abc", "99999"])
def test_load_config__file_postgres_url_bad_port__error_at_load_password_masked(tmp_path, port):
    """Issue 11 (8): a bad port in the file's URL waited 10 s at the first connection."""
    url = f"postgresql://e2i:{PG_PASSWORD}@127.0.0.1:{port}/e2i"
    path = _write(tmp_path, f"storage:\n  backend: postgres\n  url: {url}\n")
    message = _config_error(path, env={})
    assert "storage.url" in message and "invalid port" in message
    _assert_no_secret(message)


def test_load_config__file_storage_url_with_default_backend__error_says_what_to_do(tmp_path):
    """Issue 11 (8): `storage.url` with the default (sqlite) backend was silently ignored."""
    path = _write(tmp_path, f"storage:\n  url: postgresql://e2i:{PG_PASSWORD}@db/e2i\n")
    message = _config_error(path, env={})
    assert "storage.url" in message and "set storage.backend: postgres" in message
    _assert_no_secret(message)


@pytest.mark.parametrize(
    "env",
    [
        {"E2I_OBS_DATABASE_URL": "sqlite:///other.db"},
        {"SUPABASE_URL": "https://abcd.supabase.co", "SUPABASE_KEY": SUPABASE_KEY},
    ],
)
def test_load_config__env_store_over_file_postgres_url__env_wins_without_error(tmp_path, env):
    path = _write(tmp_path, "storage:\n  backend: postgres\n  url: postgresql://u@db/e2i\n")
    config = load_config(path, env=env)
    assert config.storage.backend in ("sqlite", "supabase") and config.storage.url is None
