"""Packaging that pyproject.toml cannot say: the default configuration and the database schema
ship inside the wheel while staying at their E2I paths, `config/` and `database/ml/`.

Two data packages are mapped onto those directories, so each file has one copy in the
repository; `src/agents/ml_foundation/observability_connector/resources.py` finds them with
`importlib.resources` when there is no checkout around the code (a checkout's files win).
Everything else (metadata, dependencies, the `e2i-obs` script) is in pyproject.toml.
"""

from setuptools import find_packages, setup

CONNECTOR = "src.agents.ml_foundation.observability_connector"
DATA_PACKAGES = {
    f"{CONNECTOR}._shipped_config": ("config", ["*.yaml"]),
    f"{CONNECTOR}._shipped_database": ("database/ml", ["*.sql"]),
}

setup(
    packages=[*find_packages(include=["src", "src.*"]), *DATA_PACKAGES],
    package_dir={name: directory for name, (directory, _) in DATA_PACKAGES.items()},
    package_data={name: names for name, (_, names) in DATA_PACKAGES.items()},
)
