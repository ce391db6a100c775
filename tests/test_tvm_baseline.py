"""benchmarks/tvm_baseline.py, TVM MetaSchedule beside minicompiler: the parts that need no TVM (the command
line without it, argument checks, reading MetaSchedule's JSON database in trial order, the report's tvm
column, the tvm sample-efficiency curve) always run; with TVM installed, its TE programs are checked against
workloads.py's numpy on the small shapes, and one tiny tune runs end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "tvm_baseline.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

import common  # noqa: E402
import sample_efficiency  # noqa: E402
import suite_report  # noqa: E402
import tvm_baseline  # noqa: E402
import workloads  # noqa: E402


def _without_tvm(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import tvm`` fails, whatever is installed."""
    fake = tmp_path / "no_tvm" / "tvm"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('TVM hidden by the test')\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")]))


def test_command_line_without_tvm_says_so_in_one_line_and_writes_no_records(tmp_path: Path) -> None:
    out = tmp_path / "records.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--workloads", "matmul", "--trials", "8", "--small",
                           "--json", str(out)], capture_output=True, text=True, timeout=120, env=_without_tvm(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == tvm_baseline.missing_message()
    assert json.loads(out.read_text()) == []


@pytest.mark.parametrize("option, message", [
    (["--workloads", "nope"], "--workloads: unknown 'nope'"),
    (["--trials", "0"], "positive integers"),
    (["--trials", "eight"], "positive integers"),
    (["--threads", "1,-2"], "positive integers"),
    (["--seeds", "0"], "--seeds must be positive"),
    (["--per-iter", "0"], "--per-iter must be positive"),
])
def test_command_line_refuses_bad_options_before_anything_runs(tmp_path: Path, option: list, message: str) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), *option, "--json", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_trial_times_follow_the_json_database_order_and_failures_are_none(tmp_path: Path) -> None:
    # MetaSchedule's JSON database: one line per committed record, [workload, [trace, run_secs, target, args]];
    # a candidate that failed to build or run is stored with 1e10 s.
    lines = [[0, [[[], []], secs, {"kind": "llvm"}, []]] for secs in
             ([3e-3], [1e10], [1e-3, 3e-3], None, [4e-3])]
    (tmp_path / "database_tuning_record.json").write_text("".join(json.dumps(x) + "\n" for x in lines))
    times = tvm_baseline.trial_times(tmp_path)
    assert times == [3e-3, None, 2e-3, None, 4e-3]
    assert tvm_baseline.best_so_far([None, *times]) == [None, 3e-3, 3e-3, 2e-3, 2e-3, 2e-3]
    assert tvm_baseline.trial_times(tmp_path / "missing") == []


def test_work_dir_names_differ_wherever_the_spec_does() -> None:
    names = {tvm_baseline.work_dir_name("matmul", small, trials, threads, seed, shape)
             for small in (False, True) for trials in (8, 64) for threads in (1, 2) for seed in (0, 1)
             for shape in (None, (256, 256, 256))}
    assert len(names) == 16 + 8   # 16 specs without a shape; with one, it replaces small/full: 8 more


def _record(impl: str, threads: int, gflops: float, **extra: object) -> common.Record:
    rec = common.Record("matmul", impl, threads, median_s=2e9 / gflops / 1e9, gflops=gflops, correct=True, runs=5)
    rec.extra.update(extra)
    return rec


def _report(tmp_path: Path, records: list[common.Record]) -> str:
    w = workloads.by_name(small=True)["matmul"]
    meta = {"peak": 100.0, "host": "test", "date": "today", "command": "python suite.py", "load_before": 0.0,
            "protocol": common.Protocol(), "proposer": "heuristic", "budget": 8, "db": "db.jsonl",
            "tvm": "tvm 0.27.0.post1"}
    suite_report.write_report(tmp_path / "REPORT.md", records, [w], [1], meta, {"matmul": 1000}, None)
    return (tmp_path / "REPORT.md").read_text()


def test_report_shows_the_tvm_column_and_its_tuning_time_only_when_there_are_tvm_records(tmp_path: Path) -> None:
    base = [_record("tuned", 1, 40.0, samples=8, tuning_s=12.0), _record("numpy", 1, 20.0)]
    plain = _report(tmp_path, base)
    assert "| workload | default | tuned | numpy | numba | torch | tuned/numpy | samples | tuning |" in plain
    assert "tvm" not in plain
    report = _report(tmp_path, base + [_record("tvm", 1, 50.0, trials_measured=8, tuning_s=71.4)])
    assert ("| workload | default | tuned | numpy | numba | torch | tvm | tuned/numpy | samples | tuning "
            "| tvm trials | tvm tuning |") in report
    assert "| matmul | — | 40.0 | 20.0 | — | — | 50.0 | 2.00x | 8 | 12 s | 8 | 71 s |" in report
    assert "Geomean of tuned/tvm over 1 workload(s) at 1 thread: **0.80x**" in report
    missing = _report(tmp_path, base + [common.Record("matmul", "tvm", 1, note="tvm not installed (pip install ...)")])
    assert "| matmul | — | 40.0 | 20.0 | — | — | n/a | 2.00x | 8 | 12 s | — | — |" in missing


def test_tvm_curve_is_the_best_so_far_over_the_common_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_tune(**kwargs: object) -> dict:
        calls.append(kwargs)
        trial_s = [None, 4e-3, 8e-3, 2e-3]
        return {"trial_s": trial_s, "best_so_far_s": tvm_baseline.best_so_far(trial_s), "search_best_s": 2e-3,
                "tuning_s": 9.0, "median_s": 2.1e-3, "correct": True}

    monkeypatch.setattr(tvm_baseline, "tvm_versions", lambda: {"tvm": "fake"})
    monkeypatch.setattr(tvm_baseline, "tune_tvm", fake_tune)
    tensor = workloads.by_name(small=True)["matmul"].program()
    case = {"workload_name": "matmul", "small": True}
    records, rows = sample_efficiency.tvm_curves("matmul", tensor, case, 4, 2, 1, 8e-3, None, 30.0, None, False)
    assert [r["curve"] for r in records] == [[0.0, 2.0, 2.0, 4.0]] * 2
    assert [c["seed"] for c in calls] == [0, 1] and all(c["trials"] == 4 and c["threads"] == 1 for c in calls)
    assert rows[-1] == ["matmul", "tvm", 1, 4, 4.0, 2e-3] and records[0]["median_s"] == 2e-3


# ----------------------------------------------------------------------------- with TVM installed
@pytest.mark.parametrize("workload", workloads.suite(small=True), ids=lambda w: w.name)
def test_te_program_computes_what_workloads_numpy_does(workload: workloads.Workload) -> None:
    pytest.importorskip("tvm")
    inputs = workload.inputs()
    ref = workload.numpy(*[x.astype(np.float64) for x in inputs])
    out = tvm_baseline.untuned_kernel(workload.name, small=True)(*inputs)
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert common.max_rel_error(out, ref) <= 1e-5


def test_a_tiny_tune_runs_end_to_end_checks_and_times_its_best_kernel(tmp_path: Path) -> None:
    pytest.importorskip("tvm")
    if tvm_baseline.tvm_versions() is None:
        pytest.skip("tvm imports, but MetaSchedule does not")
    work_dir = tmp_path / "matmul"
    protocol = common.Protocol(min_runs=2, min_time=0.0)
    result = tvm_baseline.tune_tvm("matmul", True, trials=2, threads=1, seed=0, work_dir=work_dir, per_iter=2,
                                   tuning_cores=1, protocol=protocol, progress=False)
    assert result.get("correct") is True, result.get("note")
    assert result["median_s"] > 0 and result["gflops"] > 0 and result["tuning_s"] > 0
    assert len(result["trial_s"]) == 2 and result["best_so_far_s"][-1] == result["search_best_s"]
    assert not (work_dir / "logs").exists() and (work_dir / "result.json").exists()
    again = tvm_baseline.tune_tvm("matmul", True, trials=2, threads=1, seed=0, work_dir=work_dir, per_iter=2,
                                  tuning_cores=1, protocol=protocol, progress=False)
    assert again["reused"] is True and again["trial_s"] == result["trial_s"]
