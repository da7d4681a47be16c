"""A traced program's first and last moments, run as real processes (issue 11, items 8 and 9):
a handler built over a broken configuration file, and a PostgreSQL-backed process that ends
without closing anything (its spans left to the `atexit` hooks).
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.processes import environment, run_python

CLEARED = ("E2I_OBS_CONFIG", "E2I_OBS_DATABASE_URL", "SUPABASE_URL", "SUPABASE_KEY", "REDIS_URL")


def run_code(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_python(["-c", textwrap.dedent(code)], environment(CLEARED, **env))


EXIT_WITHOUT_CLOSE = """
    import asyncio, os
    from src.agents.ml_foundation.observability_connector.config import load_config
    from src.mlops.opik_connector import get_opik_connector

    config = load_config(
        overrides={"opik": {"enabled": False}, "storage": {"spool_dir": os.environ["SPOOL"]}}
    )
    opik = get_opik_connector(config)

    async def main():
        for i in range(20):
            async with opik.trace_agent("orchestrator", f"step_{i}"):
                await asyncio.sleep(0)

    asyncio.run(main())
    print("done")  # and no close(): the atexit hooks flush and release
"""


@pytest.mark.postgres
def test_postgres_process__exit_through_atexit__stderr_clean_and_spans_stored(
    pg_dsn: str, tmp_path: Path
):
    """Issue 11 (9): exiting through atexit printed "Task was destroyed but it is pending!"
    three times (the pool's worker tasks, left to the daemon loop's death)."""
    done = run_code(EXIT_WITHOUT_CLOSE, E2I_OBS_DATABASE_URL=pg_dsn, SPOOL=str(tmp_path))

    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr
    assert "Task was destroyed" not in done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    with psycopg.connect(pg_dsn) as conn:
        stored = conn.execute("SELECT count(*) FROM ml_observability_spans").fetchone()[0]
    assert stored == 20  # the final flush ran before the pool closed


HANDLER_OVER_BROKEN_CONFIG = """
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from src.agents.ml_foundation.observability_connector.callback import (
        ObservabilityCallbackHandler,
    )

    handler = ObservabilityCallbackHandler("gap_analyzer")
    model = FakeListChatModel(responses=["the agent's answer"])
    print(model.invoke("question", config={"callbacks": [handler]}).content)
    print("flushed", handler.flush(timeout=1))
    print("discarded", handler._connector.discarded)
"""


def test_handler__config_file_not_utf8__agent_runs_one_warning(tmp_path: Path):
    """Issue 11 (8): a non-UTF-8 config file crashed the handler's constructor (a
    UnicodeDecodeError out of the agent's own code). The handler now logs why, once, and
    discards its spans; flush() says False since nothing was delivered."""
    config = tmp_path / "latin1.yaml"
    config.write_bytes("opik:\n  project_name: caf\xe9\n".encode("latin-1"))

    done = run_code(HANDLER_OVER_BROKEN_CONFIG, E2I_OBS_CONFIG=str(config))

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["the agent's answer", "flushed False", "discarded 1"]
    assert "Traceback" not in done.stderr
    warnings = [line for line in done.stderr.splitlines() if "observability disabled" in line]
    assert len(warnings) == 1
    assert f"{config}: not UTF-8 text (byte 0xe9 at offset 25)" in warnings[0]
