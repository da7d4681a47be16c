"""Shared test setup. Real servers (PostgreSQL, Redis, the Opik loopback server) are started
by the fixture plugins below, once per session, and torn down at the end."""

import os

from hypothesis import HealthCheck, settings

# The opik SDK must never phone home from tests.
os.environ.setdefault("OPIK_SENTRY_ENABLE", "false")
os.environ.setdefault("OPIK_ANALYTICS_ENABLE", "false")
os.environ.setdefault("OPIK_TRACK_DISABLE", "true")

# Property tests check behaviour, not speed: on 2 shared cores a draw can stall for seconds,
# which hypothesis would otherwise report as a failure (too_slow / deadline).
settings.register_profile(
    "shared-cores", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("shared-cores")

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.postgrest_double",
    "tests.fixtures.redis",
    "tests.fixtures.opik_server",
    "tests.fixtures.outside_reads",
    "tests.fixtures.e2i_connector",
    "tests.fixtures.otlp_receiver",
    "tests.fixtures.phoenix",
]
