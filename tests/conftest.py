"""Shared test setup. Real servers (PostgreSQL, Redis, the Opik loopback server) are started
by the fixture plugins below, once per session, and torn down at the end."""

import os

# The opik SDK must never phone home from tests.
os.environ.setdefault("OPIK_SENTRY_ENABLE", "false")
os.environ.setdefault("OPIK_ANALYTICS_ENABLE", "false")
os.environ.setdefault("OPIK_TRACK_DISABLE", "true")

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.postgrest_double",
    "tests.fixtures.redis",
    "tests.fixtures.opik_server",
]
