"""Where a batch write's time goes, phase by phase, next to the raw floor (issue 15).

    python -m benchmarks.ingest_profile [N] [B] [sqlite|postgres|both]   # 100000 5000 both

The pipeline (`benchmarks.ingest_only`) writes adaptive batches of up to 5,000 spans while a
backlog exists; this replays that write with the repositories' own statements, one batch after
another into a fresh database, and times each phase: row conversion, the insert (multi-row
/ `COPY`), the rollups written in the same transaction (SQLite: the upserts; PostgreSQL: the
statement trigger, measured as the same `COPY` with triggers off in a second database), and
the commit (SQLite's WAL checkpoints happen inside it). Per batch it also prints us/span at
the start and end of the run, to show whether a phase grows with the table. The floor is
`bench_ingest`'s (already converted rows, one transaction). Prints; writes nothing.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from src.repositories import _sqlite_rollups as rollup_sql
from src.repositories import _sqlite_sql
from src.repositories._rows import SPAN_COLUMNS, span_to_postgres_row, span_to_sqlite_row
from src.repositories.postgres_repository import PostgresSpanRepository
from src.repositories.span_store import TABLE_NAME
from src.repositories.sqlite_repository import WAL_AUTOCHECKPOINT_PAGES, SqliteSpanRepository

from .bench_ingest import _postgres_floor, _sqlite_floor
from .data import make_spans
from .servers import PgServer, apply_schema, fresh_database, postgres_server

Phases = dict[str, list[float]]
_COPY = f"COPY public.{TABLE_NAME} ({', '.join(SPAN_COLUMNS)}) FROM STDIN"


def _timed(phases: Phases, name: str, work: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = work()
    phases.setdefault(name, []).append(time.perf_counter() - start)
    return result


def sqlite_phases(path: Path, spans: list[Any], batch: int) -> Phases:
    """The SQLite repository's write, phase by phase (its pragmas, statements, transaction)."""
    apply_schema(SqliteSpanRepository(path))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    rollup_sql.ensure_math(conn)
    phases: Phases = {}
    try:
        for i in range(0, len(spans), batch):
            part = spans[i : i + batch]
            rows = _timed(
                phases, "convert", lambda part=part: [span_to_sqlite_row(s) for s in part]
            )
            conn.execute("BEGIN IMMEDIATE")
            (before,) = conn.execute(rollup_sql.MAX_ROWID).fetchone()
            inserted = _timed(
                phases,
                "insert",
                lambda rows=rows: _sqlite_sql.insert_spans(conn, rows),
            )
            every_row = rows if inserted == len(rows) else None  # as the repository does
            _timed(
                phases,
                "rollups",
                lambda before=before, every=every_row: rollup_sql.add_new_rows(conn, before, every),
            )
            _timed(phases, "commit", lambda: conn.execute("COMMIT"))
        (stored,) = conn.execute(f"SELECT count(*) FROM {TABLE_NAME}").fetchone()
        (rolled,) = conn.execute(
            f"SELECT sum(span_count) FROM {rollup_sql.ROLLUPS_TABLE} WHERE period_s = 60"
        ).fetchone()
    finally:
        conn.close()
    if stored != len(spans) or rolled != len(spans):
        raise RuntimeError(f"sqlite replay stored {stored}, rolled up {rolled} of {len(spans)}")
    return phases


def postgres_phases(dsn: str, spans: list[Any], batch: int, *, triggers: bool) -> Phases:
    """The PostgreSQL repository's `COPY` per batch; `triggers=False` skips the rollup trigger
    (`session_replication_role = replica`) to time it by difference."""
    apply_schema(PostgresSpanRepository(dsn))
    phases: Phases = {}
    with psycopg.connect(dsn) as conn:
        if not triggers:
            conn.execute("SET session_replication_role = replica")
            conn.commit()
        for i in range(0, len(spans), batch):
            part = spans[i : i + batch]
            rows = _timed(
                phases, "convert", lambda part=part: [span_to_postgres_row(s) for s in part]
            )

            def copy(rows: list[Any] = rows) -> None:
                with conn.cursor() as cursor, cursor.copy(_COPY) as writer:
                    for row in rows:
                        writer.write_row(row)

            _timed(phases, "copy" if triggers else "copy, triggers off", copy)
            _timed(phases, "commit", conn.commit)
    return phases


def _report(title: str, n: int, floor: float, phases: Phases) -> None:
    total = sum(sum(times) for name, times in phases.items() if not name.endswith(" off"))
    print(f"{title}: floor {n / floor:.2f} s ({1e6 / floor:.1f} us/span); phases {total:.2f} s")
    for name, times in phases.items():
        quarter = max(1, len(times) // 4)
        size = n / len(times)
        early = sum(times[:quarter]) / quarter / size * 1e6
        late = sum(times[-quarter:]) / quarter / size * 1e6
        print(
            f"  {name:20} {sum(times):6.2f} s {sum(times) / n * 1e6:6.1f} us/span "
            f"(first quarter {early:5.1f}, last quarter {late:5.1f})"
        )


def _postgres(pg: PgServer, spans: list[Any], batch: int) -> None:
    floor = _postgres_floor(fresh_database(pg, "profile_floor"), spans)
    phases = postgres_phases(fresh_database(pg, "profile_ours"), spans, batch, triggers=True)
    off = postgres_phases(fresh_database(pg, "profile_off"), spans, batch, triggers=False)
    phases["copy, triggers off"] = off["copy, triggers off"]
    _report(f"postgres, batches of {batch}", len(spans), floor, phases)


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv else 100_000
    batch = int(argv[1]) if len(argv) > 1 else 5_000
    which = argv[2] if len(argv) > 2 else "both"
    spans = make_spans(n)
    if which in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="e2i-bench-profile-") as tmp:
            floor = _sqlite_floor(Path(tmp) / "floor.db", spans)
            phases = sqlite_phases(Path(tmp) / "ours.db", spans, batch)
        _report(f"sqlite, batches of {batch}", n, floor, phases)
    if which in ("postgres", "both"):
        with postgres_server() as pg:
            _postgres(pg, spans, batch)


if __name__ == "__main__":
    main(sys.argv[1:])
