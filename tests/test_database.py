"""The tuning database: append-only JSON lines that survive truncation and concurrent writers."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.database import Database


def _record(sample: int, status: str = "ok", time_s: float | None = 1.0, **fields: object) -> dict:
    record = {"run_id": "r1", "sample": sample, "workload": "w1", "workload_name": "mm", "target": "t1",
              "threads": 2, "strategy": "random", "seed": 0, "steps": [{"op": "split", "loop": "i", "factor": 4}],
              "status": status, "time_s": time_s, "compile_s": 0.01, "error": "", "timestamp": 1.0}
    record.update(fields)
    return record


def test_round_trip_one_line_per_record(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.jsonl")
    assert db.records() == []  # no file yet
    records = [_record(1), _record(2, "crash", None, error="the worker was killed by SIGSEGV")]
    for r in records:
        db.append(r)
    assert db.records() == records
    assert len(db.path.read_text().splitlines()) == 2


def test_filtering(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.jsonl")
    db.append(_record(1))
    db.append(_record(2, threads=4))
    db.append(_record(1, run_id="r2", workload="w2"))
    assert [r["sample"] for r in db.records(workload="w1", threads=2)] == [1]
    assert [r["run_id"] for r in db.records(threads=2)] == ["r1", "r2"]
    assert db.records(run_id="r2", workload="w1") == []
    assert db.records(missing=None) == []  # an absent field is not equal to None


def test_best_is_the_fastest_ok_record_of_that_workload_target_and_threads(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.jsonl")
    assert db.best("w1", "t1", 2) is None
    db.append(_record(1, time_s=3.0))
    db.append(_record(2, time_s=2.0))
    db.append(_record(3, "wrong", None))
    db.append(_record(4, time_s=0.5, threads=4))
    db.append(_record(5, time_s=0.5, target="t2"))
    db.append(_record(6, time_s=0.5, workload="w2"))
    best = db.best("w1", "t1", 2)
    assert best is not None and best["sample"] == 2
    assert db.best("w1", "t1", 4)["sample"] == 4


def test_truncated_last_line_is_skipped_and_the_next_append_is_whole(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.jsonl")
    db.append(_record(1))
    with open(db.path, "ab") as f:
        f.write(json.dumps(_record(2)).encode()[:40])  # a process killed mid-write
    assert [r["sample"] for r in db.records()] == [1]
    db.append(_record(3))
    assert [r["sample"] for r in db.records()] == [1, 3]
    with open(db.path, "ab") as f:
        f.write(b"\xff\xfe garbage\n[1, 2]\n")  # undecodable and non-record lines too
    assert [r["sample"] for r in db.records()] == [1, 3]


def test_parent_directories_are_created(tmp_path: Path) -> None:
    db = Database(tmp_path / "a" / "b" / "tuning.jsonl")
    db.append(_record(1))
    assert db.records() == [_record(1)]


def test_default_path_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINICOMPILER_DB", str(tmp_path / "env.jsonl"))
    assert Database().path == tmp_path / "env.jsonl"
    monkeypatch.delenv("MINICOMPILER_DB")
    assert Database().path == Path.home() / ".cache" / "minicompiler" / "tuning.jsonl"


WRITER = """
import sys, time
from search.database import Database
db, who, start = Database(sys.argv[1]), sys.argv[2], float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
for i in range(150):
    db.append({"who": who, "i": i, "payload": who * 30000})
"""


def test_concurrent_appends_from_two_processes_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "db.jsonl"
    start = time.time() + 2.0  # both writers are imported and waiting by then
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), who, str(start)]) for who in "ab"]
    assert [w.wait(timeout=60) for w in writers] == [0, 0]
    lines = path.read_bytes().splitlines()
    assert len(lines) == 300
    records = [json.loads(line) for line in lines]  # every line is one whole record
    for who in "ab":
        mine = [r for r in records if r["who"] == who]
        assert [r["i"] for r in mine] == list(range(150))
        assert all(r["payload"] == who * 30000 for r in mine)
