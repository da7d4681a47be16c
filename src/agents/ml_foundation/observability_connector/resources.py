"""Where the connector's own files are: the default configuration and the database schema.

Run from a checkout (or copied into an E2I checkout), the files at the root above `src/` win:
`config/observability.yaml`, `config/agent_config.yaml`, `database/ml/mlops_tables.sql`, so an
edit there takes effect. Installed from a wheel there is no such root; the same files ship
inside the package (setup.py maps two data packages onto `config/` and `database/ml/`, so each
file has one copy in the repository) and are found with `importlib.resources`.

Nothing is looked up at import: each call checks the file system.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

__all__ = [
    "CHECKOUT_ROOT",
    "PACKAGED_CONFIG",
    "PACKAGED_DATABASE",
    "agent_config_file",
    "config_file",
    "schema_file",
]

CHECKOUT_ROOT = Path(__file__).resolve().parents[4]
"""The directory above `src/` when running from a source tree."""
PACKAGED_CONFIG = f"{__package__}._shipped_config"
PACKAGED_DATABASE = f"{__package__}._shipped_database"


def config_file() -> Traversable:
    """`config/observability.yaml`: the checkout's, else the one shipped in the package."""
    return _find("config", PACKAGED_CONFIG, "observability.yaml")


def agent_config_file() -> Traversable:
    """`config/agent_config.yaml`: the checkout's, else the one shipped in the package."""
    return _find("config", PACKAGED_CONFIG, "agent_config.yaml")


def schema_file() -> Traversable:
    """`database/ml/mlops_tables.sql`: the checkout's, else the one shipped in the package."""
    return _find("database/ml", PACKAGED_DATABASE, "mlops_tables.sql")


def _find(directory: str, package: str, name: str) -> Traversable:
    """The checkout's file if it exists, else the packaged one if it exists, else the
    checkout's path (so a caller's "missing file" message names where it looked first)."""
    local = CHECKOUT_ROOT / directory / name
    if local.is_file():
        return local
    try:
        packaged = files(package) / name
    except ModuleNotFoundError:  # a source tree: the data packages exist only in a wheel
        return local
    return packaged if packaged.is_file() else local
