"""The durable per-sink spool: real files in a temporary directory."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanKind,
    SpanStatus,
)
from src.agents.ml_foundation.observability_connector.spool import Spool

BIG = 10 * 1024 * 1024


def make_span(i: int, **overrides: object) -> ObservabilitySpan:
    start = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=i)
    fields: dict[str, object] = {
        "id": UUID(int=i + 1),
        "span_id": f"{i + 1:016x}",
        "trace_id": f"{i + 1:032x}",
        "operation_name": f"op-{i}",
        "agent_name": "gap_analyzer",
        "start_time": start,
        "end_time": start + timedelta(milliseconds=7 + i),
    }
    fields.update(overrides)
    return ObservabilitySpan(**fields)


def encoded_size(spans: list[ObservabilitySpan]) -> int:
    return sum(len(s.model_dump_json().encode()) + 1 for s in spans)


def committed_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if not p.name.startswith("."))


def test_spool__append_then_reopen__batches_survive_unchanged(tmp_path: Path) -> None:
    rich = make_span(
        1,
        span_kind=SpanKind.LLM,
        status=SpanStatus.ERROR,
        error_type="TimeoutError",
        error_message="model took too long",
        attributes={"k": [1, "two", {"three": 3.0}]},
        llm_model="gpt-4o-mini",
        input_tokens=12,
        output_tokens=30,
        parent_span_id="00000000000000aa",
        tracestate="vendor=1",
    )
    first, second = [make_span(0), rich], [make_span(2)]
    assert Spool(tmp_path / "db", BIG).append(first)
    assert Spool(tmp_path / "db", BIG).append(second)

    reopened = Spool(tmp_path / "db", BIG)
    batches = list(reopened.pending_batches())

    assert [b.spans for b in batches] == [first, second]
    assert reopened.count() == 2
    assert reopened.corrupt_lines == 0


def test_spool__append_beyond_cap__refused_and_nothing_written(tmp_path: Path) -> None:
    batch = [make_span(0), make_span(1)]
    spool = Spool(tmp_path, max_bytes=encoded_size(batch) + 10)

    assert spool.append(batch) is True
    assert spool.append([make_span(2)]) is False

    assert spool.count() == 1
    assert spool.size_bytes() == encoded_size(batch)
    assert [b.spans for b in spool.pending_batches()] == [batch]


def test_spool__zero_cap__refuses_everything(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_bytes=0)

    assert spool.append([make_span(0)]) is False
    assert spool.count() == 0
    assert not (tmp_path / "s").exists()


def test_spool__empty_batch__accepted_without_a_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)

    assert spool.append([]) is True
    assert spool.count() == 0


def test_spool__corrupt_tail_line__skipped_counted_and_rest_replayed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    good = [make_span(0), make_span(1)]
    spool.append(good)
    path = committed_files(tmp_path)[0]
    torn = make_span(2).model_dump_json()[:40]  # a crash mid-write leaves half a line
    path.write_bytes(path.read_bytes() + torn.encode())

    batches = list(spool.pending_batches())

    assert [b.spans for b in batches] == [good]
    assert batches[0].corrupt_lines == 1
    assert spool.corrupt_lines == 1


def test_spool__foreign_and_invalid_lines__each_skipped_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    spool.append([make_span(0)])
    path = committed_files(tmp_path)[0]
    invalid_span = make_span(1).model_dump_json().replace(f"{2:032x}", "not-a-trace-id")
    path.write_bytes(path.read_bytes() + b"\xff\xfe garbage\n\n" + invalid_span.encode() + b"\n")

    batches = list(spool.pending_batches())

    assert [b.spans for b in batches] == [[make_span(0)]]
    assert spool.corrupt_lines == 2


def test_spool__several_batches__replayed_oldest_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    batches = [[make_span(i)] for i in range(5)]
    for batch in batches:
        spool.append(batch)

    assert [b.spans for b in spool.pending_batches()] == batches


def test_spool__ack__deletes_the_file_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    spool.append([make_span(0)])
    spool.append([make_span(1)])
    first = next(iter(spool.pending_batches()))

    assert spool.ack(first.handle) is True
    assert spool.ack(first.handle) is False
    assert spool.count() == 1
    assert [b.spans for b in spool.pending_batches()] == [[make_span(1)]]
    assert spool.size_bytes() == encoded_size([make_span(1)])


def test_spool__ack_of_a_path_outside_the_spool__value_error(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "a", BIG)
    stray = tmp_path / "important.jsonl"
    stray.write_text("keep me")

    with pytest.raises(ValueError, match="not a batch file"):
        spool.ack(stray)
    assert stray.exists()


@pytest.mark.parametrize("bad", [-1, 1.5, True, "100"])
def test_spool__invalid_max_bytes__value_error_naming_it(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        Spool(tmp_path, bad)  # type: ignore[arg-type]


def test_spool__missing_directory__empty_and_created_on_first_append(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "not" / "yet", BIG)

    assert spool.count() == 0
    assert spool.size_bytes() == 0
    assert list(spool.pending_batches()) == []
    assert spool.append([make_span(0)])
    assert spool.count() == 1


def test_spool__temp_files__never_listed_and_orphans_removed(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    orphan = tmp_path / f".tmp-{1:020d}-{dead_pid:010d}-{1:08d}.jsonl"
    mine = tmp_path / f".tmp-{2:020d}-{os.getpid():010d}-{1:08d}.jsonl"
    for path in (orphan, mine):
        path.write_text(make_span(0).model_dump_json()[:30])
    spool = Spool(tmp_path, BIG)

    assert spool.count() == 0
    assert list(spool.pending_batches()) == []
    assert not orphan.exists()
    assert mine.exists()  # may still be in the middle of being written


def _append_from_child(directory: str, first: int) -> None:
    spool = Spool(Path(directory), BIG)
    for i in range(first, first + 5):
        assert spool.append([make_span(i)])


def test_spool__two_processes_share_a_directory__no_batch_lost(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=_append_from_child, args=(str(tmp_path), n)) for n in (0, 5)]
    for child in children:
        child.start()
    _append_from_child(str(tmp_path), 10)
    for child in children:
        child.join(60)
        assert child.exitcode == 0

    spool = Spool(tmp_path, BIG)
    ids = sorted(s.span_id for b in spool.pending_batches() for s in b.spans)
    assert ids == sorted(make_span(i).span_id for i in range(15))
    assert spool.count() == 15


def test_spool__attribute_json_cannot_encode__stored_as_text_not_lost(tmp_path: Path) -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque-object"

    spool = Spool(tmp_path, BIG)

    assert spool.append([make_span(0, attributes={"payload": Opaque(), "n": 1})])

    (stored,) = [s for b in spool.pending_batches() for s in b.spans]
    assert stored.attributes == {"payload": "opaque-object", "n": 1}


# -- claims: concurrent replays, settling, rejected/ ------------------------------------------


def test_spool__claimed_batch__invisible_to_another_replay_until_released(tmp_path: Path) -> None:
    spool, other = Spool(tmp_path, BIG), Spool(tmp_path, BIG)
    for i in range(3):
        spool.append([make_span(i)])
    mine = spool.claimed_batches()
    first = next(mine)

    theirs = [b.spans for b in other.claimed_batches()]  # the other replay gets the rest

    assert first.spans == [make_span(0)]
    assert theirs == [[make_span(1)], [make_span(2)]]
    assert spool.count() == 3  # claimed files still count as waiting
    spool.release(first.handle)
    assert [b.spans for b in spool.pending_batches()] == [[make_span(i)] for i in range(3)]
    assert next(b.spans for b in spool.claimed_batches()) == [make_span(0)]  # first in line


def test_spool__replace__only_the_rest_kept_first_in_line(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    spool.append([make_span(0), make_span(1), make_span(2)])
    spool.append([make_span(3)])
    claimed = next(spool.claimed_batches())

    spool.replace(claimed.handle, [make_span(2)])

    assert [b.spans for b in spool.pending_batches()] == [[make_span(2)], [make_span(3)]]


def test_spool__reject__spans_and_reasons_kept_outside_the_replay_path(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    spool.reject([(make_span(0), "22003: integer out of range\nsecond line")], "database")

    assert spool.count() == 0 and list(spool.claimed_batches()) == []
    assert spool.rejected_spans() == 1
    (reason,) = (tmp_path / "rejected").glob("*.reason")
    assert reason.read_text() == (
        f"{make_span(0).trace_id} {make_span(0).span_id} database: "
        "22003: integer out of range second line\n"
    )


def test_spool__unreadable_lines__handed_over_raw_for_rejected(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    spool.append([make_span(0)])
    path = committed_files(tmp_path)[0]
    path.write_bytes(path.read_bytes() + b"not json\n")

    (batch,) = spool.claimed_batches()
    spool.reject_lines(batch.bad_lines, batch.bad_reasons)
    spool.ack(batch.handle)

    assert batch.bad_lines == [b"not json"]
    assert (tmp_path / "rejected").is_dir() and spool.count() == 0
    kept = b"".join(p.read_bytes() for p in (tmp_path / "rejected").glob("*.jsonl"))
    assert kept == b"not json\n"


def test_spool__claim_of_a_dead_process__released_by_the_next_replay(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    spool = Spool(tmp_path, BIG)
    spool.append([make_span(0)])
    committed = committed_files(tmp_path)[0]
    committed.rename(tmp_path / f".claim-{int(dead.stdout):010d}-{committed.name}")

    assert [b.spans for b in spool.claimed_batches()] == [[make_span(0)]]


def test_spool__quarantine__whole_file_moved_with_its_reason(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    spool.append([make_span(0)])
    (claimed,) = spool.claimed_batches()

    target = spool.quarantine(claimed.handle, "undeliverable: TypeError")

    assert spool.count() == 0
    assert target.parent == tmp_path / "rejected"
    assert target.with_suffix(".reason").read_text() == "undeliverable: TypeError\n"
