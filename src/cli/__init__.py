"""The `e2i-obs` command line: demo, metrics, traces, report, database and spool upkeep."""
