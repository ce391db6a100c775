"""The tuning database: every measured sample, one JSON object per line, append-only.

    db = Database()                                   # $MINICOMPILER_DB, else ~/.cache/minicompiler/tuning.jsonl
    db.append({"run_id": ..., "workload": workload.key, ...})
    db.records(workload=workload.key, threads=4)      # every matching record, in file order
    db.best(workload.key, Target.host().key(), 4)     # the fastest "ok" one

Records written by the tuner (``search.session``):
  run_id         one tuning run: "<workload>:<strategy>:<proposer>:t<threads>:s<seed>:<time>:<nonce>"
  sample         1-based index of the sample within its run
  workload       ``Workload.key``: a hash of the unscheduled loop nest (same program, same key)
  workload_name  for people reading the file
  target         ``Target.key()`` of the machine that measured: "<triple>|<cpu>|<vector bits>"
  threads        the thread count parallel loops ran with
  strategy       "mcts" | "evolutionary" | "random"
  seed           the run's random seed
  steps          the schedule: a list of ``Step.to_json()`` dicts (replay with ``Step.from_json``)
  status         "ok" | "wrong" | "error" | "crash" | "timeout" (see ``search.measure``)
  time_s         median seconds for "ok", else null
  compile_s      seconds spent replaying the steps and building
  error          one line saying what went wrong, "" for "ok"
  timestamp      ``time.time()`` when the sample was recorded
Nothing else belongs in a record — in particular nothing from the environment (keys, tokens).

Durability and concurrency: each record is one ``os.write`` of the full line to a file opened
with O_APPEND, then ``os.fsync``. Appends from several processes therefore never interleave
within a line, and a killed process loses at most the record it was writing. If the file does
not end in a newline (a record cut short), the next record starts on a fresh line; writers hold
an exclusive ``flock`` while they look and write, so this never mistakes another writer's line
in progress for a cut one. Reading skips a line that does not parse (cut short, or being
written right now by another process), so a damaged file never stops a run.
"""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any, Optional


def default_path() -> Path:
    """$MINICOMPILER_DB if set, else ~/.cache/minicompiler/tuning.jsonl (read when called)."""
    env = os.environ.get("MINICOMPILER_DB")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "minicompiler" / "tuning.jsonl"


DEFAULT_PATH = default_path()   # as of import; Database() reads the environment again


class Database:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_path()

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as one line, durably (flushed and fsync'ed before returning)."""
        if not isinstance(record, dict):
            raise TypeError(f"a record is a dict, got {type(record).__name__}")
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # so no other writer is mid-line while we look at the last byte
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # a line cut short by a crash: do not glue this record onto it
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes (disk full?)")
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self, **match: Any) -> list[dict[str, Any]]:
        """Every record (in file order) whose fields equal ``match``, e.g. ``records(workload=k, threads=2)``."""
        try:
            with open(self.path, "rb") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        found = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:  # a truncated or damaged line (UnicodeDecodeError is a ValueError too)
                continue
            if isinstance(record, dict) and all(k in record and record[k] == v for k, v in match.items()):
                found.append(record)
        return found

    def best(self, workload: str, target: str, threads: int) -> Optional[dict[str, Any]]:
        """The fastest "ok" record for this workload, target and thread count (the earliest of ties)."""
        timed = [r for r in self.records(workload=workload, target=target, threads=threads, status="ok")
                 if isinstance(r.get("time_s"), (int, float))]
        return min(timed, key=lambda r: r["time_s"]) if timed else None

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r})"
