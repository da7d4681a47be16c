"""The package's short import path: every advertised name resolves, nothing loads early."""

import subprocess
import sys

import pytest

import src.agents.ml_foundation.observability_connector as package
import src.mlops as mlops


@pytest.mark.parametrize("name", package.__all__)
def test_package__advertised_name__resolves_to_the_real_object(name):
    obj = getattr(package, name)
    assert obj.__name__ == name


def test_package__unknown_name__attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        package.no_such_thing  # noqa: B018


def test_package__import__loads_no_heavy_module():
    code = (
        "import sys, src.agents.ml_foundation.observability_connector as p;"
        "print(any(m.startswith(('langgraph', 'opik', 'psycopg', 'redis')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", mlops.__all__)
def test_mlops_package__advertised_name__resolves_lazily(name):
    aliases = {"SpanContext": "LiveSpan"}  # E2I's name for the span `trace_agent` yields
    assert getattr(mlops, name).__name__ == aliases.get(name, name)


def test_mlops_package__import__loads_nothing_of_the_connector():
    """E2I's own src/mlops/__init__.py gains these names additively: importing the package must
    not import the connector (no config read, no SDK, no database driver)."""
    code = (
        "import sys, src.mlops;"
        "print(sorted(m for m in sys.modules if m.startswith(('src.', 'opik', 'psycopg'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['src.mlops']"
