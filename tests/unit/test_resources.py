"""Where the default configuration, the agent registry and the schema are found: the checkout's
files first, else the copies shipped in the package (the installed wheel itself is exercised in
tests/integration/test_wheel_install.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from src.agents.ml_foundation.observability_connector import resources

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("find", "relative"),
    [
        (resources.config_file, "config/observability.yaml"),
        (resources.agent_config_file, "config/agent_config.yaml"),
        (resources.schema_file, "database/ml/mlops_tables.sql"),
    ],
)
def test_resources__in_a_checkout__the_checkouts_file(find, relative: str) -> None:
    assert resources.CHECKOUT_ROOT == ROOT
    assert find() == ROOT / relative


@pytest.fixture
def packaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A data package on sys.path holding `x.yaml`, and a checkout root without files."""
    name = f"shipped_probe_{uuid.uuid4().hex}"
    (tmp_path / "site" / name).mkdir(parents=True)
    (tmp_path / "site" / name / "x.yaml").write_text("packaged", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(resources, "CHECKOUT_ROOT", tmp_path / "checkout")
    return name


def test_find__no_checkout_file__the_packaged_file(packaged: str) -> None:
    assert resources._find("config", packaged, "x.yaml").read_text(encoding="utf-8") == "packaged"


def test_find__checkout_file_present__wins_over_the_packaged(packaged: str) -> None:
    local = resources.CHECKOUT_ROOT / "config" / "x.yaml"
    local.parent.mkdir(parents=True)
    local.write_text("checkout", encoding="utf-8")
    assert resources._find("config", packaged, "x.yaml") == local


@pytest.mark.parametrize("package", ["no_such_package_for_this_test", "packaged"])
def test_find__neither__the_checkout_path_so_messages_name_it(packaged: str, package: str) -> None:
    name = packaged if package == "packaged" else package
    found = resources._find("config", name, "missing.yaml")
    assert found == resources.CHECKOUT_ROOT / "config" / "missing.yaml"
    assert not found.is_file()
