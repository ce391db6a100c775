"""The fuzzer (tests/fuzz.py) in CI: random programs x random schedules, each case in a child worker.

A case passes when it ends in a clean rejection (ScheduleError / ValueError / TypeError with a
message) or in a kernel that matches numpy; anything else fails with a standalone reproducer.
Deterministic (hypothesis derandomized, fixed seeds). Longer runs: ``python tests/fuzz.py --cases 2000``.
"""
from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fuzz  # noqa: E402

CASE_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def worker():
    w = fuzz.Worker(timeout=CASE_TIMEOUT, mem_gb=6.0)
    yield w
    w.stop()


def run_checked(worker: fuzz.Worker, case: dict) -> dict:
    outcome = worker.run(case)
    if outcome.get("status") == "defect":
        pytest.fail("\n" + fuzz.format_defect(case, outcome), pytrace=False)
    assert outcome["status"] in ("correct", "rejected"), outcome
    return outcome


# No shrink phase: a shrink would re-run cases through the worker (and a timeout costs its whole
# limit each time); the failure message carries the reproducer, and `python tests/fuzz.py` shrinks.
@settings(derandomize=True, max_examples=50, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
@given(rnd=st.randoms(use_true_random=False))
def test_random_programs_and_schedules(worker, rnd):
    run_checked(worker, fuzz.gen_case(rnd))


def test_seeded_cases_reach_deep(worker):
    """The plain-seed driver (what the CLI runs): no defects, and most cases get to run a kernel,
    so the fuzzer is not just bouncing off the first argument check."""
    statuses = [run_checked(worker, fuzz.case_for(seed=12345, index=i))["status"] for i in range(40)]
    assert statuses.count("correct") >= len(statuses) // 3, statuses


def test_generator_is_deterministic_and_json():
    import json
    a = [fuzz.case_for(7, i) for i in range(20)]
    b = [fuzz.case_for(7, i) for i in range(20)]
    assert json.dumps(a) == json.dumps(b)
    assert json.loads(json.dumps(a)) == a or "NaN" in json.dumps(a)  # NaN != NaN, the text still round-trips
    families = {c["program"]["family"] for c in (fuzz.case_for(0, i) for i in range(200))}
    assert families == set(fuzz.FAMILIES)


def test_invalid_step_oracle():
    assert fuzz.invalid_reason({"via": "make", "op": "reorder", "args": {"order": "ji"}})
    assert fuzz.invalid_reason({"via": "make", "op": "split", "args": {"loop": "i", "factor": True}})
    assert fuzz.invalid_reason({"via": "make", "op": "pack", "args": {"tensor": "B", "dim": -1, "factor": 4}})
    assert fuzz.invalid_reason({"via": "json", "json": ["split"]})
    assert fuzz.invalid_reason({"via": "make", "op": "splitt", "args": {"loop": "i", "factor": 4}})
    assert fuzz.invalid_reason({"via": "make", "op": "split", "args": {"loop": "i", "factor": 4}}) is None
    assert fuzz.invalid_reason({"via": "json", "op": "split", "args": {"loop": "i", "nparts": 2 ** 63}}) is None


def test_harness_survives_crash_and_timeout():
    """A segfault and a hang in the child are reported as defects, and the next case runs on a fresh worker."""
    w = fuzz.Worker(timeout=3.0, mem_gb=6.0)
    try:
        ok = {"id": 0, "seed": 0, "program": {"family": "matmul", "M": 3, "N": 5, "K": 7, "dtype": "float32"},
              "steps": [{"kind": "concrete", "via": "make", "op": "split", "args": {"loop": "j", "factor": 2}}]}
        crash = w.run(dict(ok, selftest="segfault"))
        assert (crash["status"], crash["kind"]) == ("defect", "crash"), crash
        assert "signal 11" in crash["error"]
        hang = w.run(dict(ok, selftest="hang"))
        assert (hang["status"], hang["kind"]) == ("defect", "timeout"), hang
        assert w.run(ok)["status"] == "correct"
        assert w.starts == 3
    finally:
        w.stop()
