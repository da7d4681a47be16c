"""Durable on-disk spool for batches a sink could not take (one directory per sink).

Why: when a sink is down, or the queue overflows, spans must survive a crash or a restart and be
replayed later. Each batch is one JSONL file (one span per line), written under a temporary
name, flushed and `fsync`'d, then atomically renamed into place, and the directory is `fsync`'d,
so a committed file is complete and durable. File names sort oldest first and carry the pid, a
per-process counter and the wall-clock time, so several processes may share a directory after a
restart without clobbering each other.

Replay claims a batch before sending it: `claimed_batches()` renames each file to
`.claim-<pid>-<name>` (atomic: of two processes replaying the same directory, one wins and the
other skips the file), so concurrent replays never deliver or count a batch twice. A claim is
settled by `ack()` (delivered: delete), `release()` (try again later: the original name, same
place in line), `replace()` (part delivered: the rest under the original name) or `reject()` /
`quarantine()`. A claim whose process died is released by the next replay. A crash between a
sink's write and the settlement replays that batch again: sinks are idempotent (the database
ignores a repeated (trace_id, span_id); Opik ids are deterministic), so that is harmless.

`rejected/` holds spans a sink refused for good, out of the replay path and outside the byte
cap: `<name>.jsonl` (the spans, readable like any batch file) and `<name>.reason` (one line per
span: trace id, span id and the sink's reason). A line that does not parse (a torn write, a
foreign file) is skipped with a warning, counted in `corrupt_lines` and handed to the caller in
`bad_lines`, who keeps it in `rejected/` too.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from .models import ObservabilitySpan, storable

__all__ = ["REJECTED_DIR", "Spool", "SpooledBatch"]

logger = logging.getLogger(__name__)

_SUFFIX = ".jsonl"
REASON_SUFFIX = ".reason"
REJECTED_DIR = "rejected"
"""Sub-directory for spans a sink refuses for a reason retrying cannot fix."""
_TEMP_PREFIX = ".tmp-"
_CLAIM_PREFIX = ".claim-"
_CLAIMS: set[Path] = set()
"""Claims this process holds and has not settled yet, whichever `Spool` object made them (a
second `Spool` on the same directory must not mistake them for a crashed replay's)."""
_CLAIMS_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    """One stored batch. From `claimed_batches()`, settle `handle` with `ack`, `release`,
    `replace`, `reject` or `quarantine`; from `pending_batches()` it is only a look."""

    handle: Path
    spans: list[ObservabilitySpan]
    corrupt_lines: int = 0
    """Lines of this file that could not be read back (skipped)."""
    bad_lines: list[bytes] = field(default_factory=list)
    """Those lines, raw, for `reject_lines()`."""
    bad_reasons: list[str] = field(default_factory=list)
    """Why each of them could not be read (the validation error, on one line)."""


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

    @property
    def rejected_directory(self) -> Path:
        return self.directory / REJECTED_DIR

    # -- writing ------------------------------------------------------------------------------

    def append(self, batch: Sequence[ObservabilitySpan]) -> bool:
        """Store the batch durably; False (nothing written) if it would exceed `max_bytes`.

        OSError (disk full, permissions) propagates: the caller counts the batch as dropped.
        """
        if not batch:
            return True
        data = encode_spans(batch)
        with self._lock:
            if self.size_bytes() + len(data) > self.max_bytes:
                return False
            self._write_committed(self.directory, self._next_stem(), data)
        return True

    def reject(self, refused: Sequence[tuple[ObservabilitySpan, str]], sink: str) -> Path | None:
        """Keep spans `sink` refused for good in `rejected/`, each with its reason (outside the
        byte cap). Returns the batch file, or None for nothing. OSError propagates."""
        if not refused:
            return None
        data = encode_spans([span for span, _ in refused])
        reasons = "".join(
            f"{span.trace_id} {span.span_id} {sink}: {_one_line(reason)}\n"
            for span, reason in refused
        )
        return self._write_rejected(data, reasons)

    def reject_lines(self, lines: Sequence[bytes], reasons: Sequence[str]) -> Path | None:
        """Keep unreadable spool lines in `rejected/`, as they were, each with its reason."""
        if not lines:
            return None
        data = b"".join(line.rstrip(b"\n") + b"\n" for line in lines)
        text = "".join(f"unreadable line: {_one_line(reason)}\n" for reason in reasons)
        return self._write_rejected(data, text)

    # -- replay -------------------------------------------------------------------------------

    def claimed_batches(self) -> Iterator[SpooledBatch]:
        """Committed batches, oldest first, each claimed for this process as it is yielded
        (a file another process claimed or acked meanwhile is skipped). Settle every one.

        Temporary files and claims left by processes that died are cleaned up first."""
        self._recover_orphans()
        for path in self._committed_files():
            claim = path.with_name(f"{_CLAIM_PREFIX}{os.getpid():010d}-{path.name}")
            with _CLAIMS_LOCK:
                _CLAIMS.add(claim)  # first, so no look at the directory takes it for an orphan
            try:
                with self._lock:  # not while append() measures the directory
                    os.rename(path, claim)
            except FileNotFoundError:
                self._settled(claim)
                continue  # another replay took it
            except BaseException:
                self._settled(claim)
                raise
            try:
                batch = self._read(claim)
            except BaseException:
                self.release(claim)
                raise
            yield batch

    def pending_batches(self) -> Iterator[SpooledBatch]:
        """Every stored batch (claimed ones too), oldest first, without claiming: a look."""
        self._recover_orphans()
        paths = [path for path, _ in self._scan(include_claims=True)]
        for path in sorted(paths, key=lambda p: _committed_name(p.name)):
            try:
                yield self._read(path)
            except FileNotFoundError:
                continue

    def ack(self, handle: Path) -> bool:
        """Delete a delivered batch; False if it was already gone."""
        path = self._own(handle)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        finally:
            self._settled(path)
        return True

    def release(self, handle: Path) -> None:
        """Give a claimed batch back, under its original name (first in line again); a claim
        already settled is left alone."""
        path = self._own(handle)
        try:
            with self._lock:  # not while append() measures the directory
                os.rename(path, path.with_name(_committed_name(path.name)))
        except FileNotFoundError:
            pass
        finally:
            self._settled(path)

    def replace(self, handle: Path, spans: Sequence[ObservabilitySpan]) -> None:
        """Part of a claimed batch went through: keep only `spans`, first in line."""
        path = self._own(handle)
        if not spans:
            self.ack(path)
            return
        name = _committed_name(path.name)
        self._write_committed(self.directory, name.removesuffix(_SUFFIX), encode_spans(spans))
        self.ack(path)

    def quarantine(self, handle: Path, reason: str = "undeliverable") -> Path:
        """Move a whole batch file into `rejected/`, with `reason` beside it."""
        path = self._own(handle)
        target_dir = self.rejected_directory
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / _committed_name(path.name)
        try:
            _write_durably(target.with_suffix(REASON_SUFFIX), f"{_one_line(reason)}\n".encode())
            os.replace(path, target)
        finally:
            self._settled(path)
        _fsync_directory(target_dir)
        _fsync_directory(self.directory)
        return target

    # -- sizes --------------------------------------------------------------------------------

    def size_bytes(self) -> int:
        """Bytes held by batches waiting for replay (scans the directory: O(files)). Exact
        within this process; another process's rename during the scan may hide one file."""
        return sum(size for _, size in self._scan(include_claims=True))

    def count(self) -> int:
        """Number of batches waiting for replay (claimed ones included)."""
        return len(self._scan(include_claims=True))

    def rejected_spans(self) -> int:
        """Lines held in `rejected/` (spans refused for good, unreadable lines)."""
        try:
            files = [p for p in self.rejected_directory.iterdir() if p.name.endswith(_SUFFIX)]
        except (FileNotFoundError, NotADirectoryError):
            return 0
        return sum(len(p.read_bytes().splitlines()) for p in files)

    # -- internals ----------------------------------------------------------------------------

    def _read(self, path: Path) -> SpooledBatch:
        raw = path.read_bytes()
        spans: list[ObservabilitySpan] = []
        bad: list[bytes] = []
        reasons: list[str] = []
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                spans.append(ObservabilitySpan.model_validate_json(line))
            except (ValidationError, ValueError) as exc:
                bad.append(line)
                reasons.append(_why_unreadable(exc))
                logger.warning(
                    "spool %s: skipping unreadable line %d (%s)", path, number, type(exc).__name__
                )
        if bad:
            with self._lock:
                self.corrupt_lines += len(bad)
        return SpooledBatch(
            handle=path, spans=spans, corrupt_lines=len(bad), bad_lines=bad, bad_reasons=reasons
        )

    def _write_rejected(self, data: bytes, reasons: str) -> Path:
        directory = self.rejected_directory
        with self._lock:
            stem = self._next_stem()
        _write_durably(directory / f"{stem}{REASON_SUFFIX}", reasons.encode("utf-8"))
        return self._write_committed(directory, stem, data)

    def _write_committed(self, directory: Path, stem: str, data: bytes) -> Path:
        final = directory / f"{stem}{_SUFFIX}"
        _write_durably(final, data)
        return final

    def _own(self, handle: Path) -> Path:
        path = Path(handle)
        if path.parent != self.directory or not _is_batch_name(path.name, include_claims=True):
            raise ValueError(f"handle {str(path)!r} is not a batch file of {self!r}")
        return path

    def _settled(self, path: Path) -> None:
        with _CLAIMS_LOCK:
            _CLAIMS.discard(path)

    def _next_stem(self) -> str:
        # Strictly increasing within the process even if the wall clock steps back.
        self._last_ns = max(time.time_ns(), self._last_ns + 1)
        self._counter += 1
        return f"{self._last_ns:020d}-{os.getpid():010d}-{self._counter:08d}"

    def _scan(self, *, include_claims: bool = False) -> list[tuple[Path, int]]:
        try:
            entries = list(os.scandir(self.directory))
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = []
        for entry in entries:
            if not _is_batch_name(entry.name, include_claims=include_claims):
                continue
            try:
                found.append((Path(entry.path), entry.stat().st_size))
            except FileNotFoundError:
                continue
        return found

    def _recover_orphans(self) -> None:
        """Remove temporary files and release claims of processes that are gone (and claims
        of this process that nobody settled, e.g. a replay cut short by an exception)."""
        try:
            entries = list(os.scandir(self.directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        me = os.getpid()
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith(_TEMP_PREFIX):
                parts = entry.name.removeprefix(_TEMP_PREFIX).split("-", 2)
                pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
                if pid is not None and pid != me and not _process_alive(pid):
                    path.unlink(missing_ok=True)
            elif entry.name.startswith(_CLAIM_PREFIX):
                pid_text = entry.name.removeprefix(_CLAIM_PREFIX).split("-", 1)[0]
                pid = int(pid_text) if pid_text.isdigit() else None
                with _CLAIMS_LOCK:
                    ours = path in _CLAIMS
                stale = pid == me and not ours
                if pid is not None and (stale or (pid != me and not _process_alive(pid))):
                    try:
                        os.rename(path, path.with_name(_committed_name(entry.name)))
                    except FileNotFoundError:
                        continue

    def _committed_files(self) -> list[Path]:
        return sorted((path for path, _ in self._scan()), key=lambda p: p.name)


def encode_spans(spans: Sequence[ObservabilitySpan]) -> bytes:
    """The JSONL bytes of a batch file."""
    return b"".join(_encode(span) for span in spans)


def _is_batch_name(name: str, *, include_claims: bool = False) -> bool:
    if not name.endswith(_SUFFIX):
        return False
    if include_claims and name.startswith(_CLAIM_PREFIX):
        return True
    return not name.startswith(".")


def _committed_name(name: str) -> str:
    """`.claim-<pid>-<name>` -> `<name>`; a committed name is returned as it is."""
    if name.startswith(_CLAIM_PREFIX):
        return name.removeprefix(_CLAIM_PREFIX).split("-", 1)[1]
    return name


def _why_unreadable(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False)
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in errors)
    return f"{type(exc).__name__}: {exc}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


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


def _write_durably(final: Path, data: bytes) -> None:
    """Write `final` atomically and durably: temporary file, fsync, rename, fsync directory."""
    directory = final.parent
    directory.mkdir(parents=True, exist_ok=True)
    # <time>-<pid>-<name>: the pid tells a crashed writer's leftover from a live one's
    temp = directory / f"{_TEMP_PREFIX}{time.time_ns():020d}-{os.getpid():010d}-{final.name}"
    try:
        with open(temp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_directory(directory)


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
