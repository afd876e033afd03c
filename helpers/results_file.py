"""The JSONL results file of a batch run: one line per finished input, so a crash loses only what was in flight.

Read this with `helpers.runners.run_to_jsonl`, which appends to it. A record is one JSON object:

    {"v": 3, "index": 7, "input_sha": "3f0a9c1e2b7d", "output": "Test7", "attempts": 1, "latency": 0.412,
     "usage": {"model": "gpt-4o-mini", "tier": "default", "prompt_tokens": 14, "cached_tokens": 0,
               "completion_tokens": 6, "calls": 1, "unreported": 0}}
    {"v": 3, "index": 8, "input_sha": "9be41d07c2aa", "error": {"type": "RateLimitError", "message": "..."},
     "attempts": 4, "latency": 9.1, "usage": {...all 0...}, "failed_usage": {..., "unreported": 4}}

`index` is the input's position in the run's inputs and `input_sha` a short fingerprint of the input
itself, so a resume with reordered or different inputs is refused instead of filing answers under the
wrong inputs. An index may appear more than once (a rerun after an error): the last record wins.
`usage` is what the answer's call used, `failed_usage` (only if an attempt failed) what failed attempts
did (`helpers.usage`). Records of versions 1 (no `v`, no `input_sha`) and 2 (no usage) are still read.

What survives what:
- each record is written and flushed at once, so it survives the process being killed (`kill -9`, the
  out-of-memory killer, an exception);
- it survives the machine losing power (or the kernel crashing) only once fsynced. By default
  (`fsync_seconds=1.0`) a record is fsynced with the first record written a second or more after the
  last fsync, and everything at the end of the run: a power cut loses the records written since the
  last fsync, about the last second's while records are arriving. `fsync_every=N` syncs every N records
  (1: each one, the safest and dearest); `fsync_seconds=None` only at the end.
  `python tools/bench_fsync.py` measures what each policy costs per record.

`ResultsFile(path, resume=True)` locks the file against a second run (a lock file beside it holds the
owner's PID; the OS drops the lock when the process dies), scans what the file holds, cuts a last line
that a crash tore in half, then appends a record per finished input. `read_jsonl_results(path)`
gives the records in input order, the last one per index.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

from .usage import InputUsage, usage_fields

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the workbook's classroom machines are Linux and macOS
    fcntl = None  # type: ignore[assignment]

__all__ = ["FORMAT_VERSION", "InputMismatch", "ResultsFile", "ResultsFileBusy", "input_fingerprint",
           "read_jsonl_results"]

FORMAT_VERSION = 3  # 1: index, output|error, attempts, latency. 2: adds "v" and "input_sha". 3: adds usage.


class ResultsFileBusy(RuntimeError):
    """Another process is writing the same results file."""


class InputMismatch(ValueError):
    """A resumed run's input is not the input the file holds a record for at that index."""


def check_output_path(path: object) -> Path:
    """`path` as a Path to a writable regular file (it need not exist yet); ValueError saying why not."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a file path (str or Path), got a {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a directory; give a file name such as {str(path / 'results.jsonl')!r}")
    if path.exists() and not path.is_file():  # a FIFO or device: reading it to resume could block forever
        raise ValueError(f"path {str(path)!r} is not a regular file; give a file name such as 'results.jsonl'")
    if not path.parent.is_dir():
        raise ValueError(f"folder {str(path.parent)!r} for the output file does not exist; create it first")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"cannot write to {str(path)!r}: permission denied")
    return path


def _jsonable(value: Any) -> Any:
    """Fallback for json.dumps: pydantic objects (e.g. messages) as dicts, anything else as str."""
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else str(value)


def input_fingerprint(item: Any) -> str:
    """12 hex digits that change when the input changes (SHA-256 of its JSON, keys sorted)."""
    text = json.dumps(item, sort_keys=True, ensure_ascii=True, default=_jsonable)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:12]


def parse_record(line: bytes) -> dict[str, Any] | None:
    """The record on one line, or None if the line is not a complete, valid record (any version)."""
    try:
        record = json.loads(line)
    except ValueError:  # includes UnicodeDecodeError and json.JSONDecodeError
        return None
    if not isinstance(record, dict) or ("output" not in record and "error" not in record):
        return None
    index = record.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        return None
    version = record.get("v", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return None
    if version > FORMAT_VERSION:
        raise ValueError(f"a record has format version {version}; this code reads up to {FORMAT_VERSION}: "
                         "update the workbook's helpers")
    return record


def _warn_bad_lines(path: Path, bad: list[tuple[int, bytes]], fate: str) -> None:
    """One warning for all the lines of `path` that are not records: how many, which, and the first."""
    if not bad:
        return
    numbers = ", ".join(str(number) for number, _ in bad[:10]) + (", ..." if len(bad) > 10 else "")
    text = bad[0][1].decode("utf-8", errors="replace").strip()
    preview = text if len(text) <= 60 else text[:57] + "..."
    if len(bad) == 1:
        message = f"{path.name} line {numbers} is not a complete record ({preview!r}); {fate}"
    else:
        message = f"{path.name}: {len(bad)} lines are not complete records (lines {numbers}; the first: {preview!r}); {fate}"
    warnings.warn(message, stacklevel=4)


def _scan(path: Path) -> tuple[dict[int, tuple[bool, str | None]], int | None]:
    """({index: (last record is ok, its input_sha)}, byte offset where trailing invalid lines start)."""
    status: dict[int, tuple[bool, str | None]] = {}
    bad: list[tuple[int, int, bytes]] = []  # (line number, byte offset, line)
    last_good, offset = 0, 0
    with open(path, "rb") as file:
        for number, line in enumerate(file, start=1):
            start, offset = offset, offset + len(line)
            if not line.strip():
                continue
            record = parse_record(line)
            if record is None:
                bad.append((number, start, line))
                continue
            last_good = number
            status[record["index"]] = ("error" not in record, record.get("input_sha"))
    tail = [start for number, start, _ in bad if number > last_good]
    fate = ("cut from the file" if len(tail) == len(bad) else "ignored" if not tail
            else "ignored, and the torn end is cut from the file")
    _warn_bad_lines(path, [(number, line) for number, _, line in bad],
                    f"{fate}, and {'its input' if len(bad) == 1 else 'their inputs'} will be run again")
    return status, tail[0] if tail else None


def _repair_tail(path: Path, cut_at: int | None) -> None:
    """Cut a torn last line at `cut_at`, and end the file with a newline, so new lines start clean."""
    with open(path, "rb+") as file:
        if cut_at is not None:
            file.truncate(cut_at)
        end = file.seek(0, os.SEEK_END)
        if end:
            file.seek(end - 1)
            if file.read(1) != b"\n":  # a valid last record whose newline never made it
                file.write(b"\n")


def _lock(path: Path) -> int | None:
    """Hold an exclusive lock on `path`.lock (which records our PID) or raise ResultsFileBusy."""
    if fcntl is None:
        return None
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        owner = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip() or "unknown"
        os.close(fd)
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        raise ResultsFileBusy(f"{str(path)!r} is being written by another run (PID {owner}, lock {lock_path.name}): "
                              "two runs on one file would duplicate its work. Wait for it, stop it, or use "
                              "another file.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


class ResultsFile:
    """An open results file: which inputs it already holds, and appending a record per finished input."""

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = True, overwrite: bool = False,
                 fsync_every: int | None = None, fsync_seconds: float | None = 1.0) -> None:
        self.path = check_output_path(path)
        _check_fsync(fsync_every, fsync_seconds)
        if overwrite and resume:
            raise ValueError("overwrite=True erases the file, and resume=True (the default) keeps it: pass "
                             "resume=False too to start over, or leave overwrite out to resume")
        self._fsync_every, self._fsync_seconds = fsync_every, fsync_seconds
        self._unsynced, self._synced_at = 0, time.monotonic()
        self._status: dict[int, tuple[bool, str | None]] = {}  # index -> (last record ok, input_sha)
        self._lock = _lock(self.path)
        try:
            self._file = self._open(resume, overwrite)
        except BaseException:
            self._unlock()
            raise

    def _open(self, resume: bool, overwrite: bool) -> Any:
        if not resume and not overwrite and self.path.exists() and self.path.stat().st_size > 0:
            raise ValueError(f"{str(self.path)!r} already holds results, and resume=False would erase them: "
                             "pass overwrite=True to start it over, or resume=True to continue it")
        if resume and self.path.exists():
            try:
                self._status, cut_at = _scan(self.path)
                _repair_tail(self.path, cut_at)
            except OSError as exc:
                raise ValueError(f"cannot read {str(self.path)!r} to resume from it: {exc.strerror}; fix its "
                                 "permissions, or pass resume=False, overwrite=True to start over") from exc
        try:
            return open(self.path, "a" if resume else "w", encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot open {str(self.path)!r} for writing: {exc.strerror}") from exc

    def recorded(self, index: int, item: Any = None, *, check: bool = False) -> str | None:
        """"ok" or "error" if the file already held a last record for `index` when opened, else None.

        With check=True, raise InputMismatch if that record was for a different input than `item`.
        Each index is looked up once per run, so it is forgotten here (memory shrinks as a run resumes)."""
        found = self._status.get(index)
        if found is None:
            return None
        ok, sha = found
        if check and sha is not None and sha != input_fingerprint(item):
            raise InputMismatch(
                f"{self.path.name} holds a record for index {index} of a different input (fingerprint {sha}, this "
                f"input's is {input_fingerprint(item)}): resume needs the same inputs in the same order. Records "
                "already written stay valid for their own inputs; to start over, pass resume=False, overwrite=True.")
        del self._status[index]
        return "ok" if ok else "error"

    def append(self, index: int, output: Any, error: tuple[str, str] | None, attempts: int, latency: float,
               item: Any = None, usage: InputUsage | None = None) -> bool:
        """Write one finished input's record: its output, or `error` as (type name, readable message).

        Returns whether the record holds an output (an output that cannot be written becomes an error)."""
        head = {"v": FORMAT_VERSION, "index": index, "input_sha": input_fingerprint(item)}
        tail = {"attempts": attempts, "latency": round(latency, 4), **usage_fields(usage)}
        result = {"output": output} if error is None else {"error": {"type": error[0], "message": error[1]}}
        line = json.dumps({**head, **result, **tail}, ensure_ascii=False, default=_jsonable)
        try:
            data = line.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate in the output: not UTF-8, so not a JSON line
            where = f"character {exc.start} of the record, {exc.object[exc.start:exc.end]!r}"
            reason = (f"the output holds text that cannot be written as UTF-8 ({where}, a lone surrogate); "
                      "rerun it with retry_errors=True")
            data = json.dumps({**head, "error": {"type": "UnicodeEncodeError", "message": reason}, **tail},
                              ensure_ascii=False).encode("utf-8")
            error = ("UnicodeEncodeError", reason)
        self._write(data + b"\n")
        return error is None

    def _write(self, data: bytes) -> None:
        # One write + flush with no await in between: lines from different workers never interleave.
        try:
            self._file.buffer.write(data)
            self._file.flush()
        except OSError as exc:
            self._broken = True
            raise OSError(exc.errno, f"cannot write to {str(self.path)!r}: {exc.strerror}. Nothing already "
                          "written is lost: free some space and run the same call again to resume (a line cut "
                          "off now is repaired then)") from exc
        self._unsynced += 1
        if (self._fsync_every and self._unsynced >= self._fsync_every) or (
                self._fsync_seconds is not None and time.monotonic() - self._synced_at >= self._fsync_seconds):
            self._sync()

    def _sync(self) -> None:
        os.fsync(self._file.fileno())
        self._unsynced, self._synced_at = 0, time.monotonic()

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the flock
            self._lock = None

    def close(self) -> None:
        """fsync what is not yet on disk, close the file and release the lock."""
        try:
            if not getattr(self, "_broken", False):
                self._file.flush()
                if self._unsynced:
                    self._sync()
        finally:
            try:
                self._file.close()
            except OSError:
                pass  # a failed write already raised its clear error; the torn line is repaired on resume
            self._unlock()

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _check_fsync(every: int | None, seconds: float | None) -> None:
    if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 1):
        raise ValueError(f"fsync_every must be a whole number of records >= 1 (or None), got {every!r}")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                or not 0 <= seconds < float("inf")):
        raise ValueError(f"fsync_seconds must be a finite number of seconds >= 0 (or None), got {seconds!r}")


def read_jsonl_results(path: str | os.PathLike[str] | list[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """The records in a results file, in input order; the last record for an index wins.

    A list of paths (the shards of one job, `helpers.processes`) is read as one file."""
    latest: dict[int, dict[str, Any]] = {}
    for path in map(Path, path if isinstance(path, list) else [path]):
        bad: list[tuple[int, bytes]] = []
        with open(path, "rb") as file:
            for number, line in enumerate(file, start=1):
                if line.strip() and (record := parse_record(line)) is None:
                    bad.append((number, line))
                elif line.strip():
                    latest[record["index"]] = record
        _warn_bad_lines(path, bad, "skipped")
    return [latest[index] for index in sorted(latest)]
