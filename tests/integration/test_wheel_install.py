"""`pip install .` (not editable) works on its own: built into a wheel, installed into a fresh
venv and run in an empty directory, `e2i-obs demo`, `e2i-obs db init` (SQLite and PostgreSQL)
and the callback handler work, with the default configuration, the agent registry and the
schema found inside the installed package.

The wheel is built the way `pip install .` builds it (PEP 517, build isolation) from a copy of
the files a build reads, so the checkout is not written to. The fresh venv gets the project
only from the wheel; its third-party packages come from the test interpreter's site-packages
through a `.pth` line added after the install (installing them again would take minutes). A
path line does not run the `.pth` files of that directory, so an editable install of this
project there stays inert; the first test checks that `src` is imported from the wheel.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import textwrap
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from src.repositories.span_store import TABLE_NAME
from tests.fixtures.opik_server import OpikTestServer

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "src", "config", "database")
SHIPPED = {
    "config/observability.yaml": "config_file",
    "config/agent_config.yaml": "agent_config_file",
    "database/ml/mlops_tables.sql": "schema_file",
}
# What a user's shell would not have: settings of this test session that must not leak in.
_LEAKY_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "REDIS_URL")
_LEAKY_PREFIXES = ("E2I_OBS_", "SUPABASE_", "OPIK_URL", "OPIK_API", "OPIK_WORKSPACE", "OPIK_PROJ")


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in _LEAKY_ENV and not k.startswith(_LEAKY_PREFIXES)
    }


@dataclass(frozen=True)
class Venv:
    python: Path
    bin_dir: Path
    site_packages: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = _clean_env()
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return {**env, **extra}

    def run(self, args: list[str], cwd: Path, **extra_env: str) -> str:
        """Run `args` (a venv script name or `python`) in `cwd`; its output, or fail."""
        executable = self.python if args[0] == "python" else self.bin_dir / args[0]
        return _run([str(executable), *args[1:]], cwd=cwd, env=self.env(**extra_env))


def _run(args: list[str], **kwargs: object) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False, **kwargs)
    assert done.returncode == 0, (
        f"{args} exited {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )
    return done.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    base = tmp_path_factory.mktemp("wheel")
    tree = base / "tree"
    for name in BUILD_INPUTS:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            tree.mkdir(exist_ok=True)
            shutil.copy2(source, tree / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    clean = {"cwd": base, "env": _clean_env()}  # no PYTHONPATH: it may show the checkout's
    _run([*pip, "wheel", "--no-deps", "-q", "-w", str(base / "dist"), str(tree)], **clean)
    [wheel] = (base / "dist").glob("e2i_observability_connector-*.whl")

    home = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(home)], **clean)
    python = home / "bin" / "python"
    install = ["install", "--no-deps", "--no-index", "--ignore-installed", "-q", str(wheel)]
    _run([*pip, "--python", str(python), *install], **clean)
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    site_packages = Path(purelib.strip())
    third_party = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site_packages / "zz_third_party.pth").write_text("\n".join(sorted(third_party)) + "\n")
    return Venv(python, home / "bin", site_packages)


def test_wheel__installed__project_and_its_files_come_from_the_wheel(
    venv: Venv, tmp_path: Path
) -> None:
    script = textwrap.dedent(
        """
        import src
        from src.agents.ml_foundation.observability_connector import resources
        print(src.__file__)
        for name in ("config_file", "agent_config_file", "schema_file"):
            print(getattr(resources, name)())
        """
    )
    printed = venv.run(["python", "-c", script], cwd=tmp_path).splitlines()
    assert all(Path(line).is_relative_to(venv.site_packages) for line in printed), printed
    for (checkout_path, _), shipped in zip(SHIPPED.items(), printed[1:], strict=True):
        assert Path(shipped).read_bytes() == (ROOT / checkout_path).read_bytes()


def test_wheel__demo_in_an_empty_directory__fills_the_default_sqlite_store(
    venv: Venv, tmp_path: Path
) -> None:
    out = venv.run(["e2i-obs", "demo", "--requests", "4"], cwd=tmp_path)
    assert "Opik" in out
    with sqlite3.connect(tmp_path / ".e2i_obs" / "observability.db") as db:
        (spans,) = db.execute(f"SELECT count(*) FROM {TABLE_NAME}").fetchone()
        (unknown_tier,) = db.execute(
            f"SELECT count(*) FROM {TABLE_NAME} WHERE agent_tier IS NULL"
        ).fetchone()
    assert spans > 0
    assert unknown_tier < spans  # the shipped agent registry gave the agents their tiers


def test_wheel__db_init_sqlite_in_an_empty_directory__schema_created(
    venv: Venv, tmp_path: Path
) -> None:
    out = venv.run(["e2i-obs", "db", "init"], cwd=tmp_path)
    assert "schema ready" in out
    with sqlite3.connect(tmp_path / ".e2i_obs" / "observability.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert TABLE_NAME in tables


def test_wheel__db_init_postgres__the_shipped_schema_applied(
    venv: Venv, tmp_path: Path, pg_dsn: str
) -> None:
    out = venv.run(["e2i-obs", "--database-url", pg_dsn, "db", "init"], cwd=tmp_path)
    assert "schema ready" in out
    with psycopg.connect(pg_dsn) as conn:
        (table,) = conn.execute("SELECT to_regclass(%s)::text", [f"public.{TABLE_NAME}"]).fetchone()
        (functions,) = conn.execute(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public' AND p.proname LIKE 'ml\\_%'"
        ).fetchone()
    assert table == TABLE_NAME
    assert functions > 0


CALLBACK_SCRIPT = """
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from src.agents.ml_foundation.observability_connector.callback import ObservabilityCallbackHandler
from src.mlops.opik_default import reset_opik_connector

usage = {"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}
model = GenericFakeChatModel(messages=iter([AIMessage(content="hello", usage_metadata=usage)]))
handler = ObservabilityCallbackHandler(agent_name="gap_analyzer")
model.invoke("hi", config={"callbacks": [handler]})
assert handler.flush(timeout=60), "not flushed"
reset_opik_connector(60)
"""


def test_wheel__callback_handler_with_the_default_connector__span_in_sqlite_and_opik(
    venv: Venv, tmp_path: Path, opik_server: OpikTestServer
) -> None:
    venv.run(
        ["python", "-c", CALLBACK_SCRIPT], cwd=tmp_path, OPIK_URL_OVERRIDE=opik_server.base_url
    )
    with sqlite3.connect(tmp_path / ".e2i_obs" / "observability.db") as db:
        rows = db.execute(
            f"SELECT agent_name, agent_tier, span_kind, input_tokens, output_tokens "
            f"FROM {TABLE_NAME}"
        ).fetchall()
    [(agent, tier, kind, tokens_in, tokens_out)] = rows
    assert (agent, kind, tokens_in, tokens_out) == ("gap_analyzer", "llm", 12, 5)
    assert tier is not None  # from the agent registry shipped in the wheel
    [sent] = opik_server.received_spans()
    assert sent["type"] == "llm" and sent["usage"]["prompt_tokens"] == 12
