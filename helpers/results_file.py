"""The JSONL results file of a batch run: one line per finished input, so a crash loses only what was in flight.

Read this with `helpers.runners.run_to_jsonl`, which appends to it. A record is one JSON object:

    {"index": 7, "output": "Test7", "attempts": 1, "latency": 0.412}
    {"index": 8, "error": {"type": "RateLimitError", "message": "..."}, "attempts": 4, "latency": 9.1}

`index` is the input's position in the run's inputs. An index may appear more than once (a rerun
after an error): the last record for an index wins.

- `ResultsFile(path, resume=True)`: scans what the file already holds, repairs a last line that a
  crash cut in half, then appends a record per finished input (`append`),
  flushing each at once. Once flushed, a line survives the process being killed. It is not fsynced,
  so a machine that loses power can lose the last lines the OS had not yet written to disk.
- `read_jsonl_results(path)`: the records in input order, the last one per index.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

__all__ = ["ResultsFile", "read_jsonl_results"]


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


def parse_record(line: bytes) -> dict[str, Any] | None:
    """The record on one line, or None if the line is not a complete, valid record."""
    try:
        record = json.loads(line)
    except ValueError:  # includes UnicodeDecodeError and json.JSONDecodeError
        return None
    if not isinstance(record, dict) or ("output" not in record and "error" not in record):
        return None
    index = record.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        return None
    return record


def _warn_bad_line(path: Path, number: int, line: bytes, fate: str) -> None:
    text = line.decode("utf-8", errors="replace").strip()
    preview = text if len(text) <= 60 else text[:57] + "..."
    warnings.warn(f"{path.name} line {number} is not a complete record ({preview!r}); {fate}", stacklevel=4)


def _latest_status(path: Path) -> tuple[dict[int, bool], int | None]:
    """({index: last record is ok}, byte offset where trailing invalid lines start, or None)."""
    status: dict[int, bool] = {}
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
            status[record["index"]] = "error" not in record
    for number, _, line in bad:
        fate = "cut from the file" if number > last_good else "ignored"
        _warn_bad_line(path, number, line, f"{fate}, and its input will be run again")
    tail = [start for number, start, _ in bad if number > last_good]
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


def _jsonable(value: Any) -> Any:
    """Fallback for json.dumps: pydantic objects (e.g. messages) as dicts, anything else as str."""
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else str(value)


class ResultsFile:
    """An open results file: which inputs it already holds, and appending a record per finished input."""

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = True) -> None:
        self.path = check_output_path(path)
        self._status: dict[int, bool] = {}  # index -> its last record is ok (only when resuming)
        if resume and self.path.exists():
            try:
                self._status, cut_at = _latest_status(self.path)
                _repair_tail(self.path, cut_at)
            except OSError as exc:
                raise ValueError(f"cannot read {str(self.path)!r} to resume from it: {exc.strerror}; fix its "
                                 "permissions, or pass resume=False to start over") from exc
        try:
            self._file = open(self.path, "a" if resume else "w", encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot open {str(self.path)!r} for writing: {exc.strerror}") from exc

    def recorded(self, index: int) -> str | None:
        """"ok" or "error" if the file already held a last record for `index` when opened, else None.

        Each index is looked up once per run, so it is forgotten here (memory shrinks as a run resumes)."""
        ok = self._status.pop(index, None)
        return None if ok is None else "ok" if ok else "error"

    def append(self, index: int, output: Any, error: tuple[str, str] | None, attempts: int, latency: float) -> None:
        """Write one finished input's record: its output, or `error` as (type name, readable message)."""
        result = {"output": output} if error is None else {"error": {"type": error[0], "message": error[1]}}
        self._write({"index": index, **result, "attempts": attempts, "latency": round(latency, 4)})

    def _write(self, record: dict[str, Any]) -> None:
        # One write + flush with no await in between: lines from different workers never interleave.
        self._file.write(json.dumps(record, ensure_ascii=False, default=_jsonable) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def read_jsonl_results(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records in a results file, in input order; the last record for an index wins."""
    path = Path(path)
    latest: dict[int, dict[str, Any]] = {}
    with open(path, "rb") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            record = parse_record(line)
            if record is None:
                _warn_bad_line(path, number, line, "skipped")
                continue
            latest[record["index"]] = record
    return [latest[index] for index in sorted(latest)]
