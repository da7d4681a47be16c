"""`e2i-obs health` and `ObservabilityConnectorAgent.health()` against real stores that are up,
stopped or refuse us (issue 11, items 4 and 8): the real PostgreSQL of the fixtures stopped,
a private real Redis stopped, a role whose password is wrong.

Exit codes of `health`: 0 healthy, 1 unhealthy, 3 degraded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from src.agents.ml_foundation.observability_connector.agent import ObservabilityConnectorAgent
from src.agents.ml_foundation.observability_connector.config import load_config
from src.cli.main import app
from tests.fixtures.postgres import PgServer
from tests.fixtures.processes import environment, run_python
from tests.fixtures.redis import RedisServer
from tests.integration.test_cli import OVERRIDES

PASSWORD = "s3cret-pw-7a1f"
ROLE = "e2i_pw_check"


def invoke(*args: str, env: dict[str, str] | None = None):
    environment = dict.fromkeys(OVERRIDES) | (env or {})
    return CliRunner().invoke(app, list(args), env=environment, catch_exceptions=False)


def config_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "obs.yaml"
    path.write_text(
        "opik:\n  enabled: false\n"
        f"storage:\n  sqlite_path: {tmp_path / 'spans.db'}\n  spool_dir: {tmp_path / 'spool'}\n"
        "  timeout_seconds: 5\n  pool_timeout_seconds: 5\n"
        "batching:\n  shutdown_timeout_seconds: 5\n" + extra,
        encoding="utf-8",
    )
    return path


def with_password(dsn: str, password: str = PASSWORD) -> str:
    """The fixture's DSN with a password in it (trust authentication ignores it): a message
    that quoted the DSN would show it."""
    return dsn.replace("postgresql://postgres@", f"postgresql://postgres:{password}@")


@pytest.mark.postgres
def test_health__postgres_up__healthy_exit_0(pg_dsn: str, tmp_path: Path):
    result = invoke(
        "--config", str(config_file(tmp_path)), "--database-url", with_password(pg_dsn), "health"
    )

    assert result.exit_code == 0, result.stdout + result.stderr
    assert "status" in result.stdout and "healthy" in result.stdout
    assert "span store │ reachable" in result.stdout.replace("  ", "")


@pytest.mark.postgres
def test_health__postgres_stopped__unhealthy_exit_1_reason_without_password(
    pg_server: PgServer, pg_dsn: str, tmp_path: Path
):
    """Issue 11 (4): `e2i-obs health` said healthy (exit 0) with PostgreSQL unreachable."""
    config = str(config_file(tmp_path))
    dsn = with_password(pg_dsn)
    pg_server.stop()

    table = invoke("--config", config, "--database-url", dsn, "health")
    as_json = invoke("--config", config, "--database-url", dsn, "health", "--json")

    assert (table.exit_code, as_json.exit_code) == (1, 1)
    summary = table.stdout.strip().splitlines()[-1]
    assert summary.startswith("unhealthy: database unreachable: RepositoryError: PostgreSQL")
    assert f"no connection to 127.0.0.1:{pg_server.port}/" in summary  # the pool's own reason
    snapshot = json.loads(as_json.stdout)
    assert snapshot["status"] == "unhealthy" and snapshot["store"] == "unreachable"
    assert snapshot["reasons"][0] == f"database unreachable: {snapshot['store_error']}"
    for output in (table.stdout, table.stderr, as_json.stdout, as_json.stderr):
        assert PASSWORD not in output


@pytest.mark.postgres
def test_agent_health__postgres_stopped__unhealthy(pg_server: PgServer, pg_dsn: str, tmp_path):
    """The same answer from the API agents call: `obs.health()`."""
    config = load_config(config_file(tmp_path), env={"E2I_OBS_DATABASE_URL": pg_dsn})
    agent = ObservabilityConnectorAgent(config)
    try:
        assert agent.health().status == "healthy"
        pg_server.stop()
        snapshot = agent.health()
    finally:
        agent.close(5)
    assert snapshot.status == "unhealthy"
    assert snapshot.reasons[0].startswith("database unreachable: ")
    assert snapshot.store == "unreachable"


def test_health__redis_stopped__degraded_exit_3(redis_server_factory, tmp_path: Path):
    """Issue 11 (4): health said healthy with Redis down; it is `degraded` (the cache serves
    from memory, nothing is lost)."""
    server: RedisServer = redis_server_factory()
    url = server.url
    config = str(config_file(tmp_path, f"cache:\n  backend: redis\n  redis_url: {url}\n"))
    assert invoke("--config", config, "db", "init").exit_code == 0
    up = invoke("--config", config, "health", "--json")
    server.stop()

    down = invoke("--config", config, "health")

    assert up.exit_code == 0, up.stdout
    assert json.loads(up.stdout)["cache_degraded"] is False
    assert down.exit_code == 3, down.stdout + down.stderr
    assert down.stdout.strip().splitlines()[-1] == (
        "degraded: Redis unreachable: metrics cache serving from memory"
    )


@pytest.fixture
def password_role(pg_server: PgServer, pg_dsn: str) -> Iterator[str]:
    """A login role that must give its password (scram) on a server that otherwise trusts:
    one pg_hba.conf line ahead of the fixture's, reloaded, and removed afterwards."""
    hba = pg_server.data_dir / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n{original}")
    pg_server.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD 'the-right-one'")
    pg_server.execute("SELECT pg_reload_conf()")
    wrong = pg_dsn.replace("postgresql://postgres@", f"postgresql://{ROLE}:{PASSWORD}@")
    for _ in range(200):  # until the reload is in effect (a readiness poll)
        try:
            psycopg.connect(wrong, connect_timeout=2).close()
        except psycopg.OperationalError:
            break
    try:
        yield wrong
    finally:
        hba.write_text(original)
        pg_server.execute("SELECT pg_reload_conf()")
        pg_server.execute(f"DROP ROLE IF EXISTS {ROLE}")


@pytest.mark.postgres
def test_cli__wrong_database_password__one_clear_line(password_role: str, tmp_path: Path):
    """Issue 11 (8): a wrong password printed 8 driver lines before the one-line error."""
    config = tmp_path / "obs.yaml"
    config.write_text("storage:\n  timeout_seconds: 1\n", encoding="utf-8")

    args = ["--config", str(config), "--database-url", password_role, "metrics"]

    # a real process: the driver's lines went through logging's last-resort stderr handler,
    # which pytest's log capture would hide from an in-process run
    done = run_python(["-m", "src.cli.main", *args], environment(OVERRIDES))

    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"Error: cannot connect to postgresql://{ROLE}:***@127.0.0.1:")
    assert f'password authentication failed for user "{ROLE}"' in lines[0]
    assert PASSWORD not in done.stdout + done.stderr


def test_cli__empty_database_url__error_exit_2():
    """Issue 11 (8): `--database-url ''` silently used the default file."""
    result = invoke("--database-url", "", "metrics")

    assert result.exit_code == 2
    assert result.stderr.startswith("Error: Invalid value for '--database-url': is empty")
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli__non_utf8_config__one_line_exit_2(tmp_path: Path):
    """Issue 11 (8): a Latin-1 config file was a UnicodeDecodeError traceback (exit 1)."""
    config = tmp_path / "latin1.yaml"
    config.write_bytes("opik:\n  project_name: caf\xe9\n".encode("latin-1"))

    result = invoke("--config", str(config), "metrics")

    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: {config}: not UTF-8 text (byte 0xe9 at offset 25); save the file as UTF-8"
    )


def test_cli__config_is_a_directory__says_so(tmp_path: Path):
    result = invoke("--config", str(tmp_path), "metrics")

    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: configuration file {tmp_path} is a directory; give a YAML file"
    )
