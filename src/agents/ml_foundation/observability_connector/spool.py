"""Durable on-disk spool for batches a sink could not take (one directory per sink).

Why: when a sink is down, or the queue overflows, spans must survive a crash or a restart and be
replayed later. Each batch is one JSONL file (one span per line), written under a temporary
name, flushed and `fsync`'d, then atomically renamed into place, and the directory is `fsync`'d,
so a committed file is complete and durable. File names sort oldest first and carry the pid, a
per-process counter and the wall-clock time, so several processes may share a directory after a
restart without clobbering each other.

Replay is at-least-once: two processes replaying the same directory may both deliver a batch, and
a crash between a sink's write and `ack()` replays it again. Sinks are idempotent (the database
ignores a repeated (trace_id, span_id); Opik ids are deterministic), so that is harmless.

A line that does not parse (a torn write, a foreign file) is skipped with a warning and counted
in `corrupt_lines`; it never stops a replay.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from .models import ObservabilitySpan, storable

__all__ = ["Spool", "SpooledBatch"]

logger = logging.getLogger(__name__)

_SUFFIX = ".jsonl"
REJECTED_DIR = "rejected"
"""Sub-directory for spooled batches a sink refuses for a reason retrying cannot fix."""
_TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    """One stored batch: pass `handle` to `Spool.ack()` once a sink has taken `spans`."""

    handle: Path
    spans: list[ObservabilitySpan]
    corrupt_lines: int = 0
    """Lines of this file that could not be read back (skipped)."""


class Spool:
    """A byte-capped directory of JSONL batch files. Thread-safe within a process."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be an integer >= 0, got {max_bytes!r}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.corrupt_lines = 0
        """Lines skipped while reading batches back (torn writes, foreign data)."""
        self._lock = threading.Lock()
        self._counter = 0
        self._last_ns = 0

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r}, max_bytes={self.max_bytes})"

    def append(self, batch: Sequence[ObservabilitySpan]) -> bool:
        """Store the batch durably; False (nothing written) if it would exceed `max_bytes`.

        OSError (disk full, permissions) propagates: the caller counts the batch as dropped.
        """
        if not batch:
            return True
        data = b"".join(_encode(span) for span in batch)
        with self._lock:
            if self.size_bytes() + len(data) > self.max_bytes:
                return False
            self.directory.mkdir(parents=True, exist_ok=True)
            final, temp = self._next_names()
            try:
                with open(temp, "xb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(temp, final)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
            _fsync_directory(self.directory)
        return True

    def pending_batches(self) -> Iterator[SpooledBatch]:
        """Committed batches, oldest first. A file removed meanwhile (acked elsewhere) is skipped.

        Temporary files left by a process that died mid-write are removed first.
        """
        self._remove_orphaned_temp_files()
        for path in self._committed_files():
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue
            spans: list[ObservabilitySpan] = []
            bad = 0
            for number, line in enumerate(raw.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    spans.append(ObservabilitySpan.model_validate_json(line))
                except (ValidationError, ValueError) as exc:
                    bad += 1
                    logger.warning(
                        "spool %s: skipping unreadable line %d (%s)",
                        path,
                        number,
                        type(exc).__name__,
                    )
            if bad:
                with self._lock:
                    self.corrupt_lines += bad
            yield SpooledBatch(handle=path, spans=spans, corrupt_lines=bad)

    def ack(self, handle: Path) -> bool:
        """Delete a replayed batch; False if it was already gone (acked by another process)."""
        path = Path(handle)
        if path.parent != self.directory or not _is_committed_name(path.name):
            raise ValueError(f"handle {str(path)!r} is not a batch file of {self!r}")
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def quarantine(self, handle: Path) -> Path:
        """Move a batch that can never be delivered out of the replay path, into `rejected/`
        (kept for inspection, outside the byte cap): replay is oldest first, so leaving it
        would hold back every batch behind it."""
        path = Path(handle)
        if path.parent != self.directory or not _is_committed_name(path.name):
            raise ValueError(f"handle {str(path)!r} is not a batch file of {self!r}")
        target_dir = self.directory / REJECTED_DIR
        target_dir.mkdir(exist_ok=True)
        target = target_dir / path.name
        os.replace(path, target)
        _fsync_directory(self.directory)
        return target

    def size_bytes(self) -> int:
        """Bytes held by committed batch files (scans the directory: O(files))."""
        return sum(size for _, size in self._scan())

    def count(self) -> int:
        """Number of committed batches."""
        return len(self._scan())

    def _next_names(self) -> tuple[Path, Path]:
        # Strictly increasing within the process even if the wall clock steps back.
        self._last_ns = max(time.time_ns(), self._last_ns + 1)
        self._counter += 1
        stem = f"{self._last_ns:020d}-{os.getpid():010d}-{self._counter:08d}"
        return (
            self.directory / f"{stem}{_SUFFIX}",
            self.directory / f"{_TEMP_PREFIX}{stem}{_SUFFIX}",
        )

    def _scan(self) -> list[tuple[Path, int]]:
        try:
            entries = list(os.scandir(self.directory))
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = []
        for entry in entries:
            if not _is_committed_name(entry.name):
                continue
            try:
                found.append((Path(entry.path), entry.stat().st_size))
            except FileNotFoundError:
                continue
        return found

    def _remove_orphaned_temp_files(self) -> None:
        try:
            entries = list(os.scandir(self.directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if not entry.name.startswith(_TEMP_PREFIX):
                continue
            parts = entry.name.removeprefix(_TEMP_PREFIX).split("-")
            pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
            if pid is not None and pid != os.getpid() and not _process_alive(pid):
                Path(entry.path).unlink(missing_ok=True)

    def _committed_files(self) -> list[Path]:
        return sorted((path for path, _ in self._scan()), key=lambda p: p.name)


def _is_committed_name(name: str) -> bool:
    return name.endswith(_SUFFIX) and not name.startswith(".")


def _process_alive(pid: int) -> bool:
    """True unless the OS says no such process (an unsure answer keeps the file)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True
    return True


def _encode(span: ObservabilitySpan) -> bytes:
    # fallback=str: an attribute value pydantic cannot serialise is stored as its str() rather
    # than losing the whole span. A string UTF-8 cannot hold (a lone surrogate) is replaced
    # by U+FFFD, as storage does (`storable`), rather than failing the whole batch.
    try:
        return span.model_dump_json(fallback=str).encode("utf-8") + b"\n"
    except ValueError:  # PydanticSerializationError: UnicodeEncodeError inside
        clean = ObservabilitySpan.model_validate(storable(span.model_dump()))
        return clean.model_dump_json(fallback=str).encode("utf-8") + b"\n"


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
