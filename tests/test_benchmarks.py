"""The benchmark suite's machinery on the small shapes: every workload's numpy function, numba kernel and
unscheduled minicompiler program against float64 references written independently (einsum), and
benchmarks/suite.py end to end (tiny budget, one thread, one workload) producing its report."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minicompiler as mc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import numba_kernels  # noqa: E402
import workloads  # noqa: E402


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    s = np.einsum("hid,hjd->hij", q, k) / math.sqrt(q.shape[-1])
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return np.einsum("hij,hjd->hid", e / e.sum(axis=-1, keepdims=True), v)


def _mlp(x: np.ndarray, wg: np.ndarray, wu: np.ndarray, wd: np.ndarray) -> np.ndarray:
    g = np.einsum("tk,kf->tf", x, wg)
    return np.einsum("tf,fo->to", g / (1 + np.exp(-g)) * np.einsum("tk,kf->tf", x, wu), wd)


def _conv(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    _, _, height, width = x.shape
    xp = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
    return sum(np.einsum("fc,cyx->fyx", w[:, :, ky, kx], xp[:, ky:ky + height, kx:kx + width])
               for ky in range(3) for kx in range(3))[None]


REFERENCE = {"llama3_attention": _attention, "flux_attention": _attention, "llama4_mlp": _mlp,
             "flux_conv": _conv, "deepseek_moe": lambda a, b: np.einsum("ik,kj->ij", a, b),
             "matmul": lambda a, b: np.einsum("ik,kj->ij", a, b)}


def _rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    assert out.shape == ref.shape and out.dtype == np.float32
    return float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))


@pytest.mark.parametrize("workload", workloads.suite(small=True), ids=lambda w: w.name)
def test_numpy_numba_and_unscheduled_program_match_an_independent_float64_reference(workload) -> None:
    inputs = workload.inputs()
    assert all(x.dtype == np.float32 for x in inputs)
    ref = REFERENCE[workload.name](*[x.astype(np.float64) for x in inputs])
    assert _rel_err(workload.numpy(*inputs), ref) < 1e-5
    assert _rel_err(numba_kernels.KERNELS[workload.name](*inputs), ref) < 1e-5
    assert _rel_err(mc.build(workload.program())(*inputs), ref) < 1e-5


def test_suite_runs_end_to_end_on_small_shapes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "suite.py"), "--small", "--budget", "2", "--seeds", "1",
           "--threads", "1", "--workloads", "matmul", "--impls", "default,tuned,numpy,numba",
           "--min-runs", "1", "--min-time", "0", "--out", str(out), "--db", str(tmp_path / "db.jsonl"),
           "--json", str(tmp_path / "records.json"), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                          env=dict(os.environ, MPLBACKEND="Agg"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("REPORT.md", "gflops.png", "sample_efficiency.png", "sample_efficiency.csv", "suite.json"):
        assert (out / name).stat().st_size > 0, name
    records = json.loads((out / "suite.json").read_text())
    assert records == json.loads((tmp_path / "records.json").read_text())
    by_impl = {r["impl"]: r for r in records}
    assert set(by_impl) == {"default", "tuned", "numpy", "numba"}
    for r in records:
        assert r["workload"] == "matmul" and r["threads"] == 1
        assert r["correct"] is True and r["gflops"] > 0, r
    assert by_impl["tuned"]["samples"] == 2 and by_impl["tuned"]["new_samples"] == 2
    report = (out / "REPORT.md").read_text()
    assert "| matmul |" in report and "Geomean of tuned/numpy" in report and "sample_efficiency.png" in report
    # the tuning run is in the database: a second run reuses it instead of measuring again
    proc = subprocess.run(cmd[:-1] + ["--impls", "tuned", "--no-curves", "--no-progress"], capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tuned = json.loads((out / "suite.json").read_text())[0]
    assert tuned["impl"] == "tuned" and tuned["samples"] == 2 and tuned["new_samples"] == 0


@pytest.mark.parametrize("option, message", [
    (["--workloads", "nope"], "--workloads: unknown 'nope'"),
    (["--impls", "tuned,gpu"], "--impls: unknown 'gpu'"),
    (["--budget", "0"], "--budget must be positive"),
    (["--curves-budget", "-4"], "--curves-budget must be positive"),
    (["--threads", "0"], "positive thread counts"),
    (["--threads", "two"], "positive thread counts"),
])
def test_suite_refuses_bad_options_before_measuring_anything(tmp_path: Path, option: list, message: str) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "suite.py"), *option, "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr
    assert not list(tmp_path.iterdir())      # no report, no database written


def test_sample_efficiency_summary_says_when_mcts_reaches_each_other_strategys_final_result() -> None:
    import sample_efficiency as se
    results = {"w": {"mcts": [[1.0, 2.0, 4.0], [1.0, 3.0, 4.0]], "evolutionary": [[1.0, 1.0, 2.0]],
                     "random": [[1.0, 1.0, 1.0]], "tvm": [[5.0, 6.0]]}}
    lines = se.summary(results, budget=3)
    assert "  evolutionary final (median of seeds): 2.0x; MCTS reaches it after 2 samples (median curve)" in lines
    assert "  random final (median of seeds): 1.0x; MCTS reaches it after 1 samples (median curve)" in lines
    assert "  tvm final (median of seeds): 6.0x; MCTS reaches it after more than 3 samples (median curve)" in lines
