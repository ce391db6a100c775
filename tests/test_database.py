"""The tuning database: typed records in SQLite, indexed lookups, concurrent writers, JSON-lines import."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minicompiler.search.database import COLUMNS, Database, TuningRecord


def _record(sample: int, status: str = "ok", time_s: float | None = 1.0, **fields: object) -> dict:
    record = {"run_id": "r1", "sample": sample, "workload": "w1", "workload_name": "mm", "target": "t1",
              "threads": 2, "strategy": "random", "proposer": "heuristic", "seed": 0,
              "steps": [{"op": "split", "loop": "i", "factor": sample}], "status": status, "time_s": time_s,
              "compile_s": 0.01, "error": "", "timestamp": float(sample)}
    record.update(fields)
    return record


def test_round_trip_of_dicts_and_typed_records(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite")
    assert db.records() == [] and not db.path.exists()   # reading creates nothing
    records = [_record(1), _record(2, "crash", None, error="the worker was killed by SIGSEGV")]
    for r in records:
        db.append(r)
    db.append(TuningRecord(**_record(3)))
    assert db.records() == records + [_record(3)]
    assert set(db.records()[0]) == set(COLUMNS) and len(db) == 3
    assert db.path.read_bytes().startswith(b"SQLite format 3")


def test_filtering_and_unknown_fields(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite")
    db.append(_record(1))
    db.append(_record(2, threads=4))
    db.append(_record(1, run_id="r2", workload="w2"))
    assert [r["sample"] for r in db.records(workload="w1", threads=2)] == [1]
    assert [r["run_id"] for r in db.records(threads=2)] == ["r1", "r2"]
    assert db.records(run_id="r2", workload="w1") == []
    assert db.records(time_s=None) == []
    with pytest.raises(ValueError, match="no field 'missing'"):
        db.records(missing=None)
    with pytest.raises(ValueError, match="no field 'api_key'"):
        db.append(dict(_record(4), api_key="sk-secret"))   # nothing else belongs in a record
    with pytest.raises(TypeError):
        db.append([1, 2])  # type: ignore[arg-type]


def test_best_is_the_fastest_ok_record_of_that_workload_target_and_threads(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite")
    assert db.best("w1", "t1", 2) is None
    db.append(_record(1, time_s=3.0))
    db.append(_record(2, time_s=2.0))
    db.append(_record(3, "wrong", None))
    db.append(_record(4, time_s=0.5, threads=4))
    db.append(_record(5, time_s=0.5, target="t2"))
    db.append(_record(6, time_s=0.5, workload="w2"))
    db.append(_record(7, "error", 0.1))                       # a failed sample never wins
    db.append(_record(8, time_s=2.0))                         # a tie: the earliest wins
    best = db.best("w1", "t1", 2)
    assert best is not None and best["sample"] == 2
    assert db.best("w1", "t1", 4)["sample"] == 4


def test_latest_run_is_a_query_not_a_parsed_run_id(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite")
    assert db.latest_run("w1", "t1", 2, "random", "heuristic") is None
    db.append(_record(1, run_id="first", seed=5, timestamp=1.0))
    db.append(_record(1, run_id="second", seed=7, timestamp=2.0))
    db.append(_record(1, run_id="other-target", seed=9, timestamp=3.0, target="t2"))
    db.append(_record(1, run_id="other-proposer", seed=9, timestamp=3.0, proposer="llm"))
    assert db.latest_run("w1", "t1", 2, "random", "heuristic") == ("second", 7)
    assert db.latest_run("w1", "t1", 2, "random", "heuristic", seed=5) == ("first", 5)
    assert db.latest_run("w1", "t1", 2, "mcts", "heuristic") is None


def test_a_json_lines_database_is_imported_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    old = tmp_path / "tuning.jsonl"
    lines = [json.dumps({k: v for k, v in _record(i, run_id="w1:mcts:heuristic:t2:s0:x:1").items()
                         if k not in ("strategy", "proposer")}) for i in (1, 2)]
    old.write_text("\n".join(lines) + "\n" + lines[0][:30] + "\n[1, 2]\n")   # a cut line, a non-record
    db = Database(old)
    assert db.path == tmp_path / "tuning.sqlite"
    assert [r["sample"] for r in db.records()] == [1, 2]
    assert db.records()[0]["strategy"] == "mcts" and db.records()[0]["proposer"] == "heuristic"
    assert "imported 2 record(s)" in capsys.readouterr().err
    db.append(_record(3))
    again = Database(tmp_path / "tuning.sqlite")           # the sibling .jsonl is not imported twice
    assert [r["sample"] for r in again.records()] == [1, 2, 3]


def test_parent_directories_are_created(tmp_path: Path) -> None:
    db = Database(tmp_path / "a" / "b" / "tuning.sqlite")
    db.append(_record(1))
    assert db.records() == [_record(1)]


def test_default_path_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINICOMPILER_DB", str(tmp_path / "env.sqlite"))
    assert Database().path == tmp_path / "env.sqlite"
    monkeypatch.delenv("MINICOMPILER_DB")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Database().path == tmp_path / ".cache" / "minicompiler" / "tuning.sqlite"


WRITER = """
import sys, time
from minicompiler.search.database import Database
db, who, start = Database(sys.argv[1]), sys.argv[2], float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
for i in range(150):
    db.append({"run_id": who, "sample": i, "workload": "w", "target": "t", "threads": 1, "error": who * 3000})
"""


def test_concurrent_appends_from_two_processes_are_all_stored(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    start = time.time() + 2.0  # both writers are imported and waiting by then
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), who, str(start)]) for who in "ab"]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    db = Database(path)
    for who in "ab":
        mine = db.records(run_id=who)
        assert [r["sample"] for r in mine] == list(range(150))
        assert all(r["error"] == who * 3000 for r in mine)


OPENER = """
import sys, time
from minicompiler.search.database import Database
path, start = sys.argv[1], float(sys.argv[2])
while time.time() < start:
    pass   # spin, so that every process opens the new file within microseconds of the others
Database(path).append({"run_id": sys.argv[3], "sample": 0, "workload": "w", "target": "t", "threads": 1})
"""


def test_processes_creating_one_new_database_at_the_same_instant_all_succeed(tmp_path: Path) -> None:
    """Regression: switching a new file to WAL answered "database is locked" at once (no busy wait)
    when another process was creating it at that moment, and the second tune died."""
    for attempt in range(3):
        path = tmp_path / f"new{attempt}.sqlite"
        start = time.time() + 1.5
        openers = [subprocess.Popen([sys.executable, "-c", OPENER, str(path), str(start), str(n)],
                                    stderr=subprocess.PIPE, text=True) for n in range(4)]
        results = [(o.wait(timeout=120), o.stderr.read()) for o in openers]  # type: ignore[union-attr]
        assert [code for code, _ in results] == [0] * 4, [err[-500:] for _, err in results]
        assert sorted(r["run_id"] for r in Database(path).records()) == ["0", "1", "2", "3"]


def test_two_tunes_on_one_database_at_once_store_all_their_samples(tmp_path: Path) -> None:
    db = tmp_path / "shared.sqlite"
    command = [sys.executable, "-m", "minicompiler", "tune", "ik,kj->ij", "--size", "i=48,j=48,k=48",
               "--budget", "6", "--threads", "1", "--db", str(db)]
    tunes = [subprocess.Popen(command + ["--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for seed in (1, 2)]
    outputs = [t.communicate(timeout=300) for t in tunes]
    assert [t.returncode for t in tunes] == [0, 0], [err[-2000:] for _, err in outputs]
    records = [r for r in Database(db).records() if r["strategy"] != "confirm"]  # the re-measurements apart
    runs = {r["run_id"] for r in records}
    assert len(runs) == 2 and len(records) == 12
    for run in runs:
        assert sorted(r["sample"] for r in records if r["run_id"] == run) == list(range(1, 7))
