"""Tier 0 observability connector: tracing, latency percentiles, token usage and errors."""
