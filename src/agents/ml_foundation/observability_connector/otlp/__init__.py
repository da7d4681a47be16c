"""OpenTelemetry: spans exported over OTLP/HTTP, and new root spans joining a running OTel trace.

`mapping` turns stored spans into OTLP protobuf (GenAI semantic conventions), `sink` sends them
through the same batching, breaker, spool and replay as the other sinks, `join` reads the
OpenTelemetry span current in the caller's context (when `opentelemetry-api` is installed).
"""
