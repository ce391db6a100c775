"""The measurement harness: statuses, and a worker that survives segfaults and hangs of candidates."""
from __future__ import annotations

import ctypes
import os
import time

import numpy as np
import pytest

import minicompiler as mc
from minicompiler.runtime.jit import Kernel
from minicompiler.search.measure import MeasureResult, Measurer, compare, make_config, run_candidate
from minicompiler.search.workload import Workload

CRASH, HANG = 13, 17   # split factors that mark the candidates the misbehaving runner sabotages


def _workload() -> Workload:
    A = mc.placeholder((16, 16), name="A")
    B = mc.placeholder((16, 16), name="B")
    k = mc.reduce_axis(16, "k")
    return Workload(mc.compute((16, 16), lambda i, j: mc.sum(A[i, k] * B[k, j], axis=k), name="C"), name="mm16")


GOOD = list(mc.Schedule(_workload().tensor).reorder("i", "k", "j").split("j", 8).vectorize("j_i").steps)


def _split_factors(steps: list[dict]) -> set[int]:
    return {d.get("factor") for d in steps if d["op"] == "split"}


# Runners are sent to the worker by reference, so they live at module level.
def misbehaving_runner(workload: Workload, steps: list[dict], config: dict) -> MeasureResult:
    """Segfault on a split by CRASH, hang on a split by HANG, else measure normally."""
    if CRASH in _split_factors(steps):
        ctypes.string_at(0)
    if HANG in _split_factors(steps):
        time.sleep(3600)
    return run_candidate(workload, steps, config)


def corrupting_runner(workload: Workload, steps: list[dict], config: dict) -> MeasureResult:
    """Measure normally, but every kernel call adds 1 to the first output element."""
    original = Kernel.run_unchecked

    def corrupted(self: Kernel, arrays: list[np.ndarray], out: np.ndarray) -> None:
        original(self, arrays, out)
        out.flat[0] += 1

    Kernel.run_unchecked = corrupted  # type: ignore[method-assign]
    try:
        return run_candidate(workload, steps, config)
    finally:
        Kernel.run_unchecked = original  # type: ignore[method-assign]


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def measurer():
    with Measurer(_workload(), threads=1, timeout_s=3, budget_s=0.01, runner=misbehaving_runner) as m:
        yield m


def test_good_candidate_is_ok_with_a_positive_median(measurer: Measurer) -> None:
    for steps in ([], GOOD):
        result = measurer.measure(steps)
        assert result.status == "ok", result.error
        assert result.time_s is not None and result.time_s > 0
        assert len(result.times) >= 3 and all(t > 0 for t in result.times)
        assert result.time_s == float(np.median(result.times))
        assert result.compile_s > 0 and result.error == ""


def test_schedule_error_is_error_and_the_worker_carries_on(measurer: Measurer) -> None:
    pid = measurer.worker_pid
    result = measurer.measure([mc.Step.make("split", loop="nope", factor=4)])
    assert result.status == "error" and result.time_s is None
    assert "nope" in result.error and "\n" not in result.error
    assert measurer.measure(GOOD).status == "ok"
    assert pid is None or measurer.worker_pid == pid


def test_segfault_is_crash_and_the_next_candidate_is_measured(measurer: Measurer) -> None:
    assert measurer.measure(GOOD).status == "ok"
    old = measurer.worker_pid
    result = measurer.measure([mc.Step.make("split", loop="i", factor=CRASH)])
    assert result.status == "crash" and result.time_s is None
    assert "SIGSEGV" in result.error
    assert old is not None and _dead(old)
    after = measurer.measure(GOOD)
    assert after.status == "ok" and after.time_s > 0
    assert measurer.worker_pid != old


def test_hang_is_timeout_and_the_next_candidate_is_measured(measurer: Measurer) -> None:
    assert measurer.measure(GOOD).status == "ok"
    old = measurer.worker_pid
    start = time.monotonic()
    result = measurer.measure([mc.Step.make("split", loop="i", factor=HANG)])
    assert result.status == "timeout" and result.time_s is None
    assert 3 <= time.monotonic() - start < 10
    assert old is not None and _dead(old)
    assert measurer.measure(GOOD).status == "ok"


def test_wrong_output_is_wrong_and_not_timed() -> None:
    with Measurer(_workload(), threads=1, budget_s=0.01, runner=corrupting_runner) as m:
        result = m.measure(GOOD)
    assert result.status == "wrong", result
    assert result.time_s is None and result.times == []
    assert "1 of 256 element(s) differ" in result.error and "(0, 0)" in result.error


def test_close_kills_the_worker() -> None:
    m = Measurer(_workload(), threads=1, budget_s=0.01)
    assert m.worker_pid is None  # started lazily
    assert m.measure([]).status == "ok"
    pid = m.worker_pid
    assert pid is not None and not _dead(pid)
    m.close()
    assert m.worker_pid is None and _dead(pid)
    m.close()  # idempotent


def test_runner_must_be_picklable() -> None:
    with pytest.raises(TypeError, match="module-level"):
        Measurer(_workload(), runner=lambda w, s, c: run_candidate(w, s, c))


def test_compare_tolerates_rounding_but_not_errors() -> None:
    reference = np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32) * 4
    assert compare(reference * np.float32(1 + 1e-5), reference) == ""
    shifted = reference.copy()
    shifted[3, 5] += 0.5
    assert "first at (3, 5)" in compare(shifted, reference)
    assert compare(np.full_like(reference, np.nan), reference)   # unwritten (poisoned) output
    ints = np.arange(6, dtype=np.int32)
    assert compare(ints, ints) == "" and compare(ints + (ints == 2), ints)


def test_run_candidate_in_process() -> None:
    workload = _workload()
    config = make_config(workload, min_repeats=2, budget_s=0.0, max_repeats=2)
    a, b = config["inputs"]
    np.testing.assert_allclose(config["reference"], a @ b, rtol=1e-5, atol=1e-5)
    result = run_candidate(workload, [s.to_json() for s in GOOD], config)
    assert result.status == "ok" and len(result.times) == 2


class UnmeasurableWorkload(Workload):
    """A workload whose reference cannot be computed (picklable: defined at module level)."""

    def random_inputs(self, seed: int = 0) -> list[np.ndarray]:
        raise ValueError("no inputs today")


def test_worker_start_up_failure_is_reported_not_raised() -> None:
    w = _workload()
    with Measurer(UnmeasurableWorkload(w.tensor, name="broken"), threads=1) as m:
        result = m.measure(GOOD)
        assert result.status == "error" and result.error == "worker start-up: ValueError: no inputs today"
        assert m.worker_pid is None
