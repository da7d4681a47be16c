"""Copied into an E2I checkout, the connector replaces nothing E2I uses for something else.

Facts from E2I's integration notes (§7 "Files E2I already has", read 2025; copied here as data):
E2I has its own `src/repositories/base.py` (a `BaseRepository` about 50 modules import), a real
orchestrator under `src/agents/orchestrator/`, `config/agent_config.yaml` in its own format
(tiers by name with a `priority`, agents with a `tier` name), and its own `__init__.py` files
along our paths (the connector may only add exports to them). The README's table "Dropped into
E2I" lists every file.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

E2I_PATHS = ("src/repositories/base.py", "src/agents/orchestrator")
"""Paths E2I uses for something else: the connector ships nothing there."""
E2I_MODULES = ("src.repositories.base", "src.agents.orchestrator")
"""So nothing of ours may import them either (in E2I they are E2I's code)."""
E2I_INIT_FILES = (
    "src/__init__.py",
    "src/agents/__init__.py",
    "src/agents/ml_foundation/__init__.py",
    "src/repositories/__init__.py",
    "src/mlops/__init__.py",
    "tests/__init__.py",
    "tests/unit/__init__.py",
    "tests/integration/__init__.py",
    "tests/fixtures/__init__.py",
)
"""`__init__.py` files E2I has at our paths (its checkout, 2025): only additive exports here."""
E2I_TIERS = {
    "ml_foundation": 0,
    "coordination": 1,
    "causal_analytics": 2,
    "monitoring": 3,
    "ml_predictions": 4,
    "self_improvement": 5,
}
"""E2I's tier names and priorities (§7: "causal_analytics 2, monitoring 3, ...")."""


@pytest.mark.parametrize("path", E2I_PATHS)
def test_e2i_paths__nothing_of_the_connector_there(path):
    assert not (REPO / path).exists(), f"{path} belongs to E2I; the connector must not ship it"


def python_files() -> list[Path]:
    return sorted(
        p
        for folder in ("src", "tests", "benchmarks")
        for p in (REPO / folder).rglob("*.py")
        if "__pycache__" not in p.parts
    )


def imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_sources__never_import_e2i_owned_modules():
    offenders = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in python_files()
        for name in imported_modules(ast.parse(path.read_text(encoding="utf-8")))
        if any(name == owned or name.startswith(owned + ".") for owned in E2I_MODULES)
    ]
    assert offenders == []


def _is_type_checking_block(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Name | ast.Attribute)
        and ast.unparse(node.test).endswith("TYPE_CHECKING")
        and all(isinstance(inner, ast.Import | ast.ImportFrom) for inner in node.body)
        and not node.orelse
    )


def _literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except ValueError:
        return False
    return True


def not_additive(node: ast.stmt) -> str | None:
    """Why `node` is more than a docstring, an import, `__all__` or a lazy export; else None."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return None if isinstance(node.value.value, str) else "a bare expression"
    if isinstance(node, ast.Import | ast.ImportFrom) or _is_type_checking_block(node):
        return None
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if names == ["__all__"] and len(targets) == 1:
            return None
        private = len(names) == len(targets) == 1 and names[0].startswith("_")
        if private and node.value is not None and _literal(node.value):
            return None  # e.g. the name -> module table of a lazy __getattr__
        return f"an assignment to {', '.join(ast.unparse(t) for t in targets)}"
    if isinstance(node, ast.FunctionDef) and node.name in ("__getattr__", "__dir__"):
        return None
    return f"a {type(node).__name__} statement"


@pytest.mark.parametrize("path", E2I_INIT_FILES)
def test_e2i_init_files__only_docstrings_imports_all_and_lazy_exports(path):
    file = REPO / path
    assert file.is_file(), f"{path}: the package needs its __init__.py"
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=path)
    problems = [f"{path}:{node.lineno}: {why}" for node in tree.body if (why := not_additive(node))]
    assert problems == []


@pytest.mark.parametrize(
    ("source", "allowed"),
    [
        ('"""Docstring."""\nfrom .a import B\n__all__ = ["B"]\n', True),
        ("_EXPORTS = {'A': '.a'}\n__all__ = sorted(_EXPORTS)\ndef __getattr__(n): ...\n", True),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\n", True),
        ("import os\nos.environ['X'] = '1'\n", False),
        ("CONNECTOR = object()\n", False),
        ("_default = make_connector()\n", False),
        ("class Agent: ...\n", False),
        ("def helper(): ...\n", False),
        ("print('imported')\n", False),
    ],
    ids=[
        "exports",
        "lazy",
        "type_checking",
        "side_effect",
        "global",
        "call",
        "class",
        "def",
        "call2",
    ],
)
def test_not_additive__examples__only_export_statements_pass(source, allowed):
    verdicts = [not_additive(node) for node in ast.parse(source).body]
    assert all(v is None for v in verdicts) is allowed, verdicts


README_SECTION = "## Dropped into E2I"
SHIPPED_ROOTS = ("src", "config", "database", "tests", "benchmarks", ".claude", ".ci")
PROJECT_FILES = (
    "README.md",
    "Makefile",
    "constraints.txt",
    "pyproject.toml",
    "setup.py",
    "BENCHMARKS.md",
)


def readme_table_paths() -> list[str]:
    """The backticked paths in the first column of the README's "Dropped into E2I" table."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert README_SECTION in text, f"README.md lost its section {README_SECTION!r}"
    section = text.split(README_SECTION, 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return [path for cell in rows for path in re.findall(r"`([^`]+)`", cell)]


def shipped_files() -> list[str]:
    files = [
        path.relative_to(REPO).as_posix()
        for root in SHIPPED_ROOTS
        for path in (REPO / root).rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and not any(part.endswith(".egg-info") for part in path.parts)
    ]
    return sorted(files + [name for name in PROJECT_FILES if (REPO / name).is_file()])


def test_readme_table__every_shipped_file__has_a_row_and_every_row_exists():
    rows = readme_table_paths()
    folders = [row for row in rows if row.endswith("/")]
    missing = [
        path
        for path in shipped_files()
        if path not in rows and not any(path.startswith(folder) for folder in folders)
    ]
    stale = [row for row in rows if not (REPO / row.rstrip("/")).exists()]
    assert missing == [], "add these to the README table 'Dropped into E2I'"
    assert stale == [], "README table rows naming nothing in the repository"
    assert not set(E2I_PATHS) & {row.rstrip("/") for row in rows}
