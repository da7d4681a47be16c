"""The measurements behind BENCHMARKS.md's "Scale on paper" (PostgreSQL only).

    python -m benchmarks.scale_on_paper [N_INGEST] [N_SEED]   # defaults: 100000 1000000

1. Ingest per core: `N_INGEST` spans through `submit()` -> `flush()` into PostgreSQL, with the
   CPU of this process *and* of the PostgreSQL server counted (so "per core" includes the
   database's share, not only ours).
2. Disk per span: table + indexes + TOAST of those spans after `VACUUM`, divided by the count.
3. Retention by partition: `N_SEED` spans over 7 days copied into a table partitioned by day;
   removing the oldest day by `DROP TABLE <partition>` against `DELETE ... WHERE start_time <`
   on the plain table (same rows), timed with the WAL each one writes.
4. Rollup rows a day: what the seeded spans' last full day wrote to the rollup tables (the
   span table's trigger fills them during the seed's COPY), and the bytes a rollup row takes.

Prints the figures and the arithmetic for 100M spans/day; writes nothing else.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import psycopg

from src.agents.ml_foundation.observability_connector.batch_processor import BatchProcessor
from src.agents.ml_foundation.observability_connector.config import BatchingSettings
from src.agents.ml_foundation.observability_connector.db_sink import DatabaseSink
from src.repositories.postgres_repository import PostgresSpanRepository
from src.repositories.span_store import TABLE_NAME

from .bench_query import _seed_postgres
from .data import make_spans
from .servers import PgServer, fresh_database, postgres_server

SPANS_PER_DAY = 100_000_000
PEAK_OVER_MEAN = 3.0  # a day's busiest minutes against its average rate
_TICKS = os.sysconf("SC_CLK_TCK")
_ROLLUPS = "public.ml_observability_rollups"
_SKETCHES = "public.ml_observability_rollup_sketches"


def _server_cpu_seconds(server: PgServer) -> float:
    """CPU of the postmaster, its live children, and its reaped children (cutime/cstime)."""
    pid = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    total = _proc_ticks(pid, include_reaped=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _parent(entry) == pid:
            total += _proc_ticks(int(entry.name), include_reaped=False)
    return total / _TICKS


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def _parent(entry: Path) -> int | None:
    try:
        return int(_stat_fields(int(entry.name))[1])
    except (OSError, ValueError, IndexError):
        return None


def _proc_ticks(pid: int, *, include_reaped: bool) -> int:
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return utime + stime + (cutime + cstime if include_reaped else 0)


def ingest_per_core(server: PgServer, n: int) -> tuple[float, float, float, str]:
    """(spans/s wall, spans per CPU-second of ours + server, our share of the CPU, dsn)."""
    dsn = fresh_database(server, "scale_ingest")
    spans = make_spans(n)
    sink = DatabaseSink(PostgresSpanRepository(dsn), timeout=120)
    sink.setup()
    settings = BatchingSettings(max_queue_size=n + 1)
    with tempfile.TemporaryDirectory(prefix="e2i-scale-spool-") as spool:
        processor = BatchProcessor([sink], settings, Path(spool))
        try:
            cpu_ours, cpu_pg = time.process_time(), _server_cpu_seconds(server)
            wall = time.perf_counter()
            for span in spans:
                processor.submit(span)
            if not processor.flush(900):
                raise RuntimeError("the batch processor did not flush in time")
            wall = time.perf_counter() - wall
            cpu_ours = time.process_time() - cpu_ours
            cpu_pg = _server_cpu_seconds(server) - cpu_pg
        finally:
            processor.close(60)
            sink.close()
    return n / wall, n / (cpu_ours + cpu_pg), cpu_ours / (cpu_ours + cpu_pg), dsn


def bytes_per_span(dsn: str) -> tuple[float, float]:
    """(heap + TOAST bytes per span, index bytes per span) after VACUUM."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE public.{TABLE_NAME}")
        count, table, indexes = conn.execute(
            f"SELECT count(*), pg_table_size('public.{TABLE_NAME}'),"
            f" pg_indexes_size('public.{TABLE_NAME}') FROM public.{TABLE_NAME}"
        ).fetchone()
    return table / count, indexes / count


_PARTITIONED = f"""
CREATE TABLE scale_by_day (LIKE public.{TABLE_NAME} INCLUDING DEFAULTS)
    PARTITION BY RANGE (start_time);
ALTER TABLE scale_by_day ADD PRIMARY KEY (id, start_time);
ALTER TABLE scale_by_day ADD UNIQUE (trace_id, span_id, start_time);
CREATE INDEX ON scale_by_day (start_time) INCLUDE (agent_name, duration_ms, status);
"""


def drop_versus_delete(dsn: str) -> dict[str, float]:
    """Remove the oldest seeded day both ways; seconds and WAL bytes of each."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        first, last = conn.execute(
            f"SELECT date_trunc('day', min(start_time)), max(start_time) FROM {TABLE_NAME}"
        ).fetchone()
        conn.execute(_PARTITIONED)
        day = first
        names = []
        while day <= last:
            name = f"scale_by_day_{day:%Y%m%d}"
            conn.execute(
                f"CREATE TABLE {name} PARTITION OF scale_by_day "
                f"FOR VALUES FROM ('{day.isoformat()}') TO ('{day.isoformat()}'::timestamptz"
                " + interval '1 day')"
            )
            names.append(name)
            day = conn.execute("SELECT %s::timestamptz + interval '1 day'", (day,)).fetchone()[0]
        conn.execute(f"INSERT INTO scale_by_day SELECT * FROM {TABLE_NAME}")
        conn.execute("VACUUM ANALYZE scale_by_day")
        conn.execute("CHECKPOINT")
        boundary = conn.execute("SELECT %s::timestamptz + interval '1 day'", (first,)).fetchone()[0]
        (rows,) = conn.execute(
            f"SELECT count(*) FROM {TABLE_NAME} WHERE start_time < %s", (boundary,)
        ).fetchone()
        result = {"rows": float(rows), "partitions": float(len(names))}
        for label, statement, params in (
            ("delete", f"DELETE FROM {TABLE_NAME} WHERE start_time < %s", (boundary,)),
            ("drop", f"DROP TABLE {names[0]}", None),
        ):
            (lsn_before,) = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
            started = time.perf_counter()
            conn.execute(statement, params)
            result[f"{label}_s"] = time.perf_counter() - started
            (wal,) = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (lsn_before,)
            ).fetchone()
            result[f"{label}_wal_bytes"] = float(wal)
    return result


def rollups_per_day(dsn: str) -> dict[str, float]:
    """Rollup rows the seeded spans' last full day produced (minute and hour slots, figures and
    latency sketches), the bytes a row takes, and the widest histogram of an agent-hour."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {_ROLLUPS}, {_SKETCHES}")
        (day_end,) = conn.execute(
            f"SELECT date_trunc('day', max(start_time)) FROM {TABLE_NAME}"
        ).fetchone()
        window = (day_end - timedelta(days=1), day_end)
        (spans,) = conn.execute(
            f"SELECT count(*) FROM {TABLE_NAME} WHERE start_time >= %s AND start_time < %s",
            window,
        ).fetchone()
        result = {"spans": float(spans)}
        for name, table in (("figures", _ROLLUPS), ("sketches", _SKETCHES)):
            for period in (60, 3600):
                (rows,) = conn.execute(
                    f"SELECT count(*) FROM {table} WHERE period_s = %s AND slot >= %s"
                    " AND slot < %s",
                    (period, *window),
                ).fetchone()
                result[f"{name}_{period}"] = float(rows)
            total, size = conn.execute(
                f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}"
            ).fetchone()
            result[f"{name}_bytes_per_row"] = size / max(total, 1)
        (widest,) = conn.execute(
            f"SELECT max(high - low + 1) FROM {_SKETCHES} WHERE period_s = 3600"
        ).fetchone()
        result["widest_agent_hour"] = float(widest or 0)
    return result


def main(argv: list[str]) -> None:
    n_ingest = int(argv[0]) if argv else 100_000
    n_seed = int(argv[1]) if len(argv) > 1 else 1_000_000
    with postgres_server() as server:
        wall_rate, per_core, our_share, ingest_dsn = ingest_per_core(server, n_ingest)
        heap, index = bytes_per_span(ingest_dsn)
        seed_dsn = fresh_database(server, "scale_seed")
        _seed_postgres(seed_dsn, n_seed)
        rollups = rollups_per_day(seed_dsn)
        removal = drop_versus_delete(seed_dsn)
    print(f"ingest: {n_ingest:,} spans, {wall_rate:,.0f} spans/s wall, {per_core:,.0f} spans per")
    print(f"  CPU-second (this process + PostgreSQL; ours {our_share:.0%} of the CPU)")
    print(f"disk: {heap:,.0f} B/span table+TOAST, {index:,.0f} B/span indexes")
    print(
        f"retention, oldest of {removal['partitions']:.0f} days ({removal['rows']:,.0f} rows):"
        f" DELETE {removal['delete_s']:.3f} s / {removal['delete_wal_bytes'] / 1e6:,.1f} MB WAL;"
        f" DROP partition {removal['drop_s']:.3f} s / {removal['drop_wal_bytes'] / 1e3:,.1f} kB WAL"
    )
    print(
        f"rollups for a day of {rollups['spans']:,.0f} spans: figures {rollups['figures_60']:,.0f}"
        f" minute + {rollups['figures_3600']:,.0f} hour rows"
        f" ({rollups['figures_bytes_per_row']:,.0f} B/row), latency sketches"
        f" {rollups['sketches_60']:,.0f} minute + {rollups['sketches_3600']:,.0f} hour rows"
        f" ({rollups['sketches_bytes_per_row']:,.0f} B/row); widest agent-hour histogram:"
        f" {rollups['widest_agent_hour']:,.0f} buckets"
    )
    mean = SPANS_PER_DAY / 86_400
    peak = mean * PEAK_OVER_MEAN
    print(f"100M spans/day: mean {mean:,.0f}/s, peak x{PEAK_OVER_MEAN:g} {peak:,.0f}/s")
    print(
        f"  cores at peak: {peak / per_core:.1f}; disk/day:"
        f" {SPANS_PER_DAY * (heap + index) / 1e9:,.0f} GB"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
