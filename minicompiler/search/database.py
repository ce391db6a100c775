"""The tuning database: every measured sample as one typed row of an SQLite table.

    db = Database()                                   # $MINICOMPILER_DB, else ~/.cache/minicompiler/tuning.sqlite
    db.append(TuningRecord(run_id=..., workload=workload.key, ...))
    db.records(workload=workload.key, threads=4)      # matching records, in the order they were written
    db.best(workload.key, Target.host().key(), 4)     # the fastest schedule, by its median time
    db.latest_run(workload.key, "mcts", "heuristic", 4)   # the run a resumed tune continues

A record (``TuningRecord``; ``records()`` returns them as dicts of the same fields):
  run_id         one tuning run (an opaque id; a run's workload, strategy, proposer... are columns)
  sample         1-based index of the sample within its run
  workload       ``Workload.key``: a hash of the unscheduled loop nest (same program, same key)
  workload_name  for people reading the table
  target         ``Target.key()`` of the machine that measured: "<triple>|<cpu>|<vector bits>"
  threads        the thread count parallel loops ran with
  strategy       "mcts" | "evolutionary" | "random"
  proposer       "heuristic" | "llm" | the proposer's class name
  seed           the run's random seed
  steps          the schedule: a list of ``Step.to_json()`` dicts (replay with ``Step.from_json``)
  status         "ok" | "wrong" | "error" | "crash" | "timeout" (see ``search.measure``)
  time_s         median seconds for "ok", else None
  compile_s      seconds spent replaying the steps and building
  error          one line saying what went wrong, "" for "ok"
  timestamp      ``time.time()`` when the sample was recorded
Nothing else belongs in a record — in particular nothing from the environment (keys, tokens).

Durability and concurrency (why SQLite, as tinygrad keeps its kernel cache): each append is
one transaction, committed with ``synchronous=FULL`` before ``append`` returns, so a killed
tune loses at most the sample it was writing. The file is in WAL mode with a busy timeout, so
several tunes (processes) write to one database at once and readers never wait for writers.
Lookups use indexes: ``best`` reads the fastest records of one workload, target and thread count
(and the other measurements of those schedules), whatever else the file holds.

Databases of earlier versions were JSON-lines files (``tuning.jsonl``). One is imported when
it is opened: ``Database("old.jsonl")`` — or ``Database("x.sqlite")`` with an ``x.jsonl`` beside
it — copies its records into the SQLite file of that name, once (the meta table remembers),
and uses that.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

SCHEMA_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class TuningRecord:
    run_id: str
    sample: int
    workload: str
    target: str
    threads: int
    steps: list = field(default_factory=list)
    status: str = "ok"
    time_s: Optional[float] = None
    compile_s: float = 0.0
    error: str = ""
    timestamp: float = 0.0
    workload_name: str = ""
    strategy: str = ""
    proposer: str = ""
    seed: Optional[int] = None


COLUMNS = tuple(f.name for f in fields(TuningRecord))
_SQL_TYPES = {"run_id": "TEXT NOT NULL", "sample": "INTEGER NOT NULL", "workload": "TEXT NOT NULL",
              "target": "TEXT NOT NULL", "threads": "INTEGER NOT NULL", "steps": "TEXT NOT NULL",
              "status": "TEXT NOT NULL", "time_s": "REAL", "compile_s": "REAL", "error": "TEXT",
              "timestamp": "REAL", "workload_name": "TEXT", "strategy": "TEXT", "proposer": "TEXT",
              "seed": "INTEGER"}
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (id INTEGER PRIMARY KEY, {', '.join(f'{c} {_SQL_TYPES[c]}' for c in COLUMNS)});
CREATE INDEX IF NOT EXISTS samples_best ON samples (workload, target, threads, status, time_s);
CREATE INDEX IF NOT EXISTS samples_run ON samples (run_id, sample);
CREATE INDEX IF NOT EXISTS samples_runs ON samples (workload, strategy, proposer, threads, target, timestamp);
"""


def default_path() -> Path:
    """$MINICOMPILER_DB if set, else ~/.cache/minicompiler/tuning.sqlite (read when called)."""
    env = os.environ.get("MINICOMPILER_DB")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "minicompiler" / "tuning.sqlite"


def _is_json_lines(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError:
        return False
    return head != SQLITE_MAGIC and (not head or head.lstrip()[:1] in (b"{", b""))


class Database:
    def __init__(self, path: str | Path | None = None) -> None:
        path = Path(path).expanduser() if path is not None else default_path()
        legacy: Optional[Path] = None
        if path.suffix == ".jsonl" or (path.exists() and _is_json_lines(path)):
            legacy, path = path, path.with_suffix(".sqlite")
        elif path.with_suffix(".jsonl").exists():
            legacy = path.with_suffix(".jsonl")
        self.path = path
        self._ready = False
        self._legacy = legacy if legacy is not None and legacy.exists() else None

    # ---------------------------------------------------------------- connection
    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            self._create_file()
        connection = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            connection.execute("PRAGMA busy_timeout = 60000")
            connection.execute("PRAGMA synchronous = FULL")
            if not self._ready:
                self._create(connection)
            yield connection
        finally:
            connection.close()

    def _create_file(self) -> None:
        """Create the file whole, or not at all: the tables and WAL mode are set up in a private file,
        which is then hard-linked into place (which fails if another process got there first).

        Why not let ``sqlite3.connect`` create it: a new file is empty until its first commit, and a
        process opening it in that window reads an empty database in rollback mode while another
        writes the first pages into its write-ahead log; on a loaded machine one process's committed
        record was lost so (4 processes creating one file at the same instant: 1 run of 15 with two
        busy loops on the 2 cores; 0 of 15 created this way). A file that appears complete, already
        in WAL mode, leaves no such window."""
        private = self.path.with_name(f".{self.path.name}.{os.getpid()}.{random.getrandbits(32):08x}.creating")
        try:
            connection = sqlite3.connect(private, isolation_level=None)
            try:
                connection.execute("PRAGMA journal_mode = WAL")
                self._schema(connection)
            finally:
                connection.close()
            try:
                os.link(private, self.path)
            except FileExistsError:
                pass                 # another process created it first: use theirs
            except OSError:          # a file system without hard links: let connect create it as before
                pass
        finally:
            for leftover in (private, private.with_name(private.name + "-wal"), private.with_name(private.name + "-shm")):
                leftover.unlink(missing_ok=True)

    @staticmethod
    def _use_wal(connection: sqlite3.Connection, timeout_s: float = 60.0) -> None:
        """Switch the file to write-ahead logging, once. The switch needs the file to itself, and SQLite
        answers "database is locked" at once, without waiting, when another process is creating or
        switching the same new file at that moment: so retry, briefly, until the other is done."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    connection.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) and "busy" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005 + random.random() * 0.02)

    def _create(self, connection: sqlite3.Connection) -> None:
        self._use_wal(connection)
        connection.execute("BEGIN IMMEDIATE")   # one creator at a time; the others then see the tables
        try:
            self._schema(connection)
            if self._legacy is not None:
                self._import(connection, self._legacy)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        self._ready = True

    def _schema(self, connection: sqlite3.Connection) -> None:
        """The tables and indexes (if missing) and the schema version (checked)."""
        for statement in filter(str.strip, _SCHEMA.split(";")):
            connection.execute(statement)
        row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            connection.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} has schema version {row[0]}; this minicompiler reads "
                               f"version {SCHEMA_VERSION} and older: upgrade minicompiler")

    def _import(self, connection: sqlite3.Connection, legacy: Path) -> None:
        """Copy a JSON-lines database's records in, once (the meta table remembers the file)."""
        key = f"imported:{legacy.resolve()}"
        if connection.execute("SELECT 1 FROM meta WHERE key = ?", (key,)).fetchone():
            return
        count = 0
        with open(legacy, "rb") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:  # a line cut short by a crash, or damaged
                    continue
                if isinstance(record, dict) and {"run_id", "sample", "workload", "target", "threads"} <= set(record):
                    # Runs of that format named "<workload>:<strategy>:<proposer>:t<threads>:...": now columns.
                    parts = str(record["run_id"]).split(":")
                    if len(parts) > 3:
                        record.setdefault("strategy", parts[1])
                        record.setdefault("proposer", parts[2])
                    connection.execute(_INSERT, _row({k: v for k, v in record.items() if k in COLUMNS}))
                    count += 1
        connection.execute("INSERT INTO meta VALUES (?, ?)", (key, str(count)))
        print(f"minicompiler: imported {count} record(s) from {legacy} into {self.path}", file=sys.stderr)

    # ---------------------------------------------------------------- writing
    def append(self, record: TuningRecord | dict[str, Any]) -> None:
        """Store one record, durably (committed before returning)."""
        with self._connect() as connection:
            connection.execute(_INSERT, _row(record))

    def extend(self, records: Iterable[TuningRecord | dict[str, Any]]) -> int:
        """Store many records in one transaction (all or none); how many were stored."""
        rows = [_row(r) for r in records]
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(_INSERT, rows)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        return len(rows)

    # ---------------------------------------------------------------- reading
    def records(self, **match: Any) -> list[dict[str, Any]]:
        """Every record whose fields equal ``match`` (in the order written), e.g. ``records(workload=k, threads=2)``."""
        unknown = [k for k in match if k not in COLUMNS]
        if unknown:
            raise ValueError(f"no field {', '.join(map(repr, unknown))} in a tuning record; the fields: "
                             f"{', '.join(COLUMNS)}")
        where = " AND ".join(f"{k} IS ?" for k in match) or "1"
        return self._select(f"SELECT {', '.join(COLUMNS)} FROM samples WHERE {where} ORDER BY id",
                            tuple(_column_value(k, v) for k, v in match.items()))

    def best(self, workload: str, target: str, threads: int, candidates: int = 16) -> Optional[dict[str, Any]]:
        """The record of the fastest schedule for this workload, target and thread count: among the
        ``candidates`` fastest "ok" records, the schedule whose measurements have the lowest median.

        A schedule re-measured (a tune's confirmation, or several runs) is judged by the median of
        all its times, not by its luckiest one: the minimum over many noisy samples favours a lucky
        draw (the winner's curse). Where some of the candidates were re-measured, only those compete:
        a schedule measured once is not compared with the medians of confirmed ones (on a machine
        that slows down during a tune, every re-measurement is slower than the first: a one-off
        time would beat the tune's own confirmed choice). A schedule that failed any of its
        measurements (a crash, a wrong result, a timeout) is passed over. The record returned is
        the schedule's median one; the earliest schedule wins ties."""
        where = "workload = ? AND target = ? AND threads = ?"
        params = (workload, target, threads)
        fastest = self._select(f"SELECT {', '.join(COLUMNS)} FROM samples WHERE {where} AND status = 'ok' "
                               f"AND time_s IS NOT NULL ORDER BY time_s, id LIMIT ?", params + (candidates,))
        schedules: list[list[dict[str, Any]]] = []
        for steps in dict.fromkeys(_column_value("steps", r["steps"]) for r in fastest):  # in order, once
            measured = self._select(f"SELECT {', '.join(COLUMNS)} FROM samples WHERE {where} AND steps = ? "
                                    f"ORDER BY time_s, id", params + (steps,))
            if all(r["status"] == "ok" and r["time_s"] is not None for r in measured):
                schedules.append(measured)   # (one that crashed, went wrong or timed out: never used)
        remeasured = [m for m in schedules if len(m) > 1]
        medians = [m[(len(m) - 1) // 2] for m in remeasured or schedules]   # the lower median: a record
        return min(medians, key=lambda r: r["time_s"]) if medians else None   # min(): the first of ties

    def latest_run(self, workload: str, target: str, threads: int, strategy: str, proposer: str,
                   seed: Optional[int] = None) -> Optional[tuple[str, int]]:
        """(run_id, seed) of the latest run of this workload on this target, thread count, strategy
        and proposer (and seed, if given); None if there is none."""
        query = ("SELECT run_id, seed FROM samples WHERE workload = ? AND strategy = ? AND proposer = ? "
                 "AND threads = ? AND target = ?" + (" AND seed = ?" if seed is not None else "") +
                 " ORDER BY timestamp DESC, id DESC LIMIT 1")
        params = (workload, strategy, proposer, threads, target) + ((seed,) if seed is not None else ())
        with self._connect() as connection:
            row = connection.execute(query, params).fetchone()
        return (str(row[0]), int(row[1])) if row is not None and row[1] is not None else None

    def __len__(self) -> int:
        with self._connect() as connection:
            return int(connection.execute("SELECT COUNT(*) FROM samples").fetchone()[0])

    def _select(self, query: str, params: tuple) -> list[dict[str, Any]]:
        if not self.path.exists() and self._legacy is None:
            return []   # reading creates nothing
        with self._connect() as connection:
            rows = connection.execute(query, params).fetchall()
        return [{c: (json.loads(v) if c == "steps" else v) for c, v in zip(COLUMNS, row)} for row in rows]

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r})"


_INSERT = f"INSERT INTO samples ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"


def _column_value(column: str, value: Any) -> Any:
    return json.dumps(value, separators=(",", ":")) if column == "steps" else value


def _row(record: TuningRecord | dict[str, Any]) -> tuple:
    """A record as the table's row; a dict may leave out optional fields, but not add any."""
    if isinstance(record, TuningRecord):
        data = asdict(record)
    elif isinstance(record, dict):
        unknown = [k for k in record if k not in COLUMNS]
        if unknown:
            raise ValueError(f"no field {', '.join(map(repr, unknown))} in a tuning record")
        data = asdict(TuningRecord(**record))
    else:
        raise TypeError(f"a record is a TuningRecord or a dict, got {type(record).__name__}")
    return tuple(_column_value(c, data[c]) for c in COLUMNS)
