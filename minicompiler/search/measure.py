"""Measuring candidates: build, check and time schedules in a worker process a bad one cannot take down.

One *sample* is one candidate (a workload plus a list of steps) measured on this machine:

    with Measurer(workload, threads=4) as measurer:
        result = measurer.measure(schedule.steps)     # MeasureResult: status, time_s, times, ...

Isolation (``Measurer``, in the tuning process)
  Candidates run in ONE worker process, started lazily as a fresh interpreter
  (``minicompiler/search/worker.py``: never a re-import of the caller's ``__main__``, never a fork of a
  process that already runs LLVM and OpenMP threads) and reused for every candidate. The workload goes to the worker once, when it starts; each request is
  just the steps as JSON-able dicts (``Step.to_json()``), each answer a ``MeasureResult``.
  If the worker dies while measuring (a segfault in generated code), the candidate is a
  "crash"; if it does not answer within ``timeout_s``, it is a "timeout" and the worker is
  killed (terminate, then kill). Either way the next candidate starts a fresh worker, so
  ``measure`` never raises for a bad candidate and never hangs. ``timeout_s`` covers one
  candidate's replay, build, check and timing; a worker's start-up gets ``STARTUP_S`` more.
  Any script can measure: with or without an ``if __name__ == "__main__":`` guard, from
  ``python -c``, stdin, an interactive session or a notebook.

  What the worker runs per candidate is ``runner(workload, steps, config)`` (default
  ``run_candidate``; tests inject others), where ``config`` comes from ``make_config``: the
  inputs, the reference output and the repeat rules. Any other exception a runner raises is
  an "error" naming its type; the worker carries on.

Timing protocol (``run_candidate``, in the worker)
  0. Once per worker start: set the thread count (``set_num_threads``), build the
     UNSCHEDULED program and run it on ``workload.random_inputs(seed=0)``: the reference.
  1. Replay the steps and build (``compile_s``). A ScheduleError → "error"; any other exception
     → "error" too, its message starting "internal compiler error" (a bug, counted apart).
  2. One call on the same inputs, into an output buffer poisoned with NaN (or the smallest
     integer) so unwritten elements show, compared with the reference: floats with
     ``np.isclose(rtol=1e-3, atol=1e-3 * rms(reference))`` (float rounding grows with the size
     of a reduction, and so does the magnitude of its result), integers exactly.
     A mismatch is "wrong" and is never timed.
  3. (A candidate whose checked call alone took longer than ``budget_s`` gets one timed call,
     its checked call serving as warm-up: it is far from the best, and ranking it needs no more.)
     One warm-up call, then timed calls (``time.perf_counter`` around each) until at least
     ``min_repeats`` calls AND ``budget_s`` seconds of timed calls, at most ``max_repeats``.
     ``time_s`` is the median of the timed calls; ``times`` keeps them all.
"""
from __future__ import annotations

import signal
import subprocess
import statistics
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Callable, Optional, Sequence

import numpy as np

from minicompiler.lower import build
from minicompiler.runtime.threads import default_threads, set_num_threads
from minicompiler.schedule import ScheduleError, Step

from . import worker
from .workload import Workload

STARTUP_S = 30.0   # allowed for a worker's start-up (imports, reference build and run) beyond timeout_s
STATUSES = ("ok", "wrong", "error", "crash", "timeout")


@dataclass
class MeasureResult:
    status: str               # one of STATUSES
    time_s: Optional[float]   # median seconds, only for "ok"
    times: list[float] = field(default_factory=list)   # every timed repeat
    compile_s: float = 0.0    # replaying the steps and building
    error: str = ""           # one line saying what went wrong


def _one_line(error: BaseException | str, limit: int = 500) -> str:
    return " ".join(str(error).split())[:limit]


# ------------------------------------------------------------------ in the worker
def make_config(workload: Workload, min_repeats: int = 3, budget_s: float = 0.3,
                max_repeats: int = 50) -> dict[str, Any]:
    """What ``run_candidate`` needs besides the steps: the inputs, the reference output, the repeat rules."""
    inputs = workload.random_inputs(seed=0)
    reference = build(workload.schedule(()))(*inputs)
    return {"inputs": inputs, "reference": reference, "min_repeats": min_repeats,
            "budget_s": budget_s, "max_repeats": max_repeats}


def compare(output: np.ndarray, reference: np.ndarray) -> str:
    """"" if ``output`` matches ``reference`` (see the module docstring), else what differs."""
    if np.issubdtype(reference.dtype, np.floating):
        finite = reference[np.isfinite(reference)].astype(np.float64)
        rms = float(np.sqrt(np.mean(np.square(finite)))) if finite.size else 0.0
        bad = ~np.isclose(output, reference, rtol=1e-3, atol=1e-3 * rms, equal_nan=True)
    else:
        bad = output != reference
    if not bad.any():
        return ""
    first = np.unravel_index(int(np.argmax(bad)), bad.shape)
    return (f"{int(bad.sum())} of {bad.size} element(s) differ from the unscheduled program; "
            f"first at {tuple(int(i) for i in first)}: {output[first]!r}, expected {reference[first]!r}")


def _poisoned(like: np.ndarray) -> np.ndarray:
    if np.issubdtype(like.dtype, np.floating):
        return np.full(like.shape, np.nan, like.dtype)
    return np.full(like.shape, np.iinfo(like.dtype).min, like.dtype)


def run_candidate(workload: Workload, steps: list[dict], config: dict) -> MeasureResult:
    """Replay, build, check and time one candidate (the protocol in the module docstring)."""
    start = time.perf_counter()
    inputs, reference = config["inputs"], config["reference"]
    try:
        kernel = build(workload.schedule([Step.from_json(d) for d in steps]))
        kernel.check_arguments(tuple(inputs))
    except ScheduleError as error:
        return MeasureResult("error", None, [], time.perf_counter() - start, _one_line(error))
    except Exception as error:  # noqa: BLE001 - anything else from replay or build is a compiler bug
        return MeasureResult("error", None, [], time.perf_counter() - start,
                             f"internal compiler error (a bug; please report it): {type(error).__name__}: "
                             f"{_one_line(error)}")
    compile_s = time.perf_counter() - start

    out = _poisoned(reference)
    t0 = time.perf_counter()
    kernel.run_unchecked(inputs, out)
    first_s = time.perf_counter() - t0
    mismatch = compare(out, reference)
    if mismatch:
        return MeasureResult("wrong", None, [], compile_s, mismatch)

    # A candidate slower than the whole budget per call is far from the best: the checked call
    # was its warm-up, and one timed call is enough to rank it.
    slow = 0 < config["budget_s"] < first_s
    if not slow:
        kernel.run_unchecked(inputs, out)  # warm-up
    min_repeats = 1 if slow else config["min_repeats"]
    times: list[float] = []
    while len(times) < config["max_repeats"] and (len(times) < min_repeats
                                                   or sum(times) < config["budget_s"]):
        t0 = time.perf_counter()
        kernel.run_unchecked(inputs, out)
        times.append(time.perf_counter() - t0)
    return MeasureResult("ok", statistics.median(times), times, compile_s)


def _worker(conn: Connection, workload: Workload, threads: int, runner: Callable[..., MeasureResult],
            repeats: dict[str, Any]) -> None:
    """The worker's life: set up once (answer None, or a MeasureResult if that failed), then serve requests."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which then stops us
    try:
        set_num_threads(threads)
        config = make_config(workload, **repeats)
    except Exception as error:  # noqa: BLE001 - reported to the parent, which reports it per candidate
        conn.send(MeasureResult("error", None, [], error=f"worker start-up: {type(error).__name__}: "
                                                         f"{_one_line(error)}"))
        return
    conn.send(None)
    while True:
        try:
            steps = conn.recv()
        except EOFError:  # the parent closed the pipe (close()) or died
            return
        try:
            result = runner(workload, steps, config)
        except Exception as error:  # noqa: BLE001 - a candidate must not end the worker
            result = MeasureResult("error", None, [], error=f"{type(error).__name__}: {_one_line(error)}")
        conn.send(result)


# ------------------------------------------------------------------ in the tuning process
def _describe_exit(code: Optional[int]) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Measurer:
    """Measures candidates of one workload in a reused worker process; see the module docstring."""

    def __init__(self, workload: Workload, threads: Optional[int] = None, timeout_s: float = 60.0,
                 min_repeats: int = 3, budget_s: float = 0.3, max_repeats: int = 50,
                 runner: Callable[[Workload, list[dict], dict], MeasureResult] = run_candidate) -> None:
        self._process: Optional[subprocess.Popen] = None
        self._conn: Optional[Connection] = None
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        if not 1 <= min_repeats <= max_repeats:
            raise ValueError(f"need 1 <= min_repeats <= max_repeats, got {min_repeats} and {max_repeats}")
        if budget_s < 0:
            raise ValueError(f"budget_s must not be negative, got {budget_s!r}")
        worker.importable(runner, "runner")
        self.workload = workload
        self.threads = threads or default_threads()
        self.timeout_s = timeout_s
        self.runner = runner
        self._repeats = {"min_repeats": min_repeats, "budget_s": budget_s, "max_repeats": max_repeats}

    @property
    def worker_pid(self) -> Optional[int]:
        """The running worker's process id, None when there is none (not started yet, or stopped)."""
        return self._process.pid if self._process is not None else None

    def measure(self, steps: Sequence[Step]) -> MeasureResult:
        """Measure the schedule these steps make: never raises for a bad candidate, never hangs."""
        request = [step.to_json() for step in steps]
        if self._process is not None and self._process.poll() is not None:
            self._stop(grace_s=0.0)  # died between candidates (e.g. killed from outside): not this one's fault
        if self._process is None:
            failed = self._start()
            if failed is not None:
                return failed
        assert self._conn is not None
        try:
            self._conn.send(request)
        except OSError:  # the worker is gone (BrokenPipeError): treat as dying on this candidate
            return self._lost("crash", "before receiving this candidate")
        return self._answer(self.timeout_s, "while measuring this candidate")

    def _start(self) -> Optional[MeasureResult]:
        """Start a worker and wait until it has its reference output; a MeasureResult if it could not."""
        self._process, self._conn = worker.start(
            _worker, (self.workload, self.threads, self.runner, self._repeats))
        failed = self._answer(self.timeout_s + STARTUP_S, "while starting (building the reference)")
        if failed is not None:
            self.close()
        return failed

    def _answer(self, timeout_s: float, doing: str) -> Any:
        """The worker's next message, or a "crash" / "timeout" result (the worker then stopped)."""
        assert self._conn is not None and self._process is not None
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._lost("timeout", f"gave no answer within {timeout_s:g} s {doing}")
            if self._conn.poll(min(remaining, 0.5)):
                try:
                    return self._conn.recv()
                except (EOFError, OSError):
                    return self._lost("crash", doing)
            if self._process.poll() is not None and not self._conn.poll():
                return self._lost("crash", doing)

    def _lost(self, status: str, doing: str) -> MeasureResult:
        """Stop the worker (the next candidate starts a fresh one) and say why."""
        if status == "timeout":
            self._stop(grace_s=0.0)
            return MeasureResult("timeout", None, [], error=f"the worker {doing}; it was killed")
        code = self._stop(grace_s=2.0)
        return MeasureResult("crash", None, [], error=f"the worker {_describe_exit(code)} {doing}")

    def _stop(self, grace_s: float) -> Optional[int]:
        """End the worker: close the pipe, give it ``grace_s`` to leave, then terminate, then kill."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is None:
            return None
        for stop in (None, process.terminate, process.kill):
            if stop is not None:
                stop()
            try:
                return process.wait(grace_s if stop is None else 2.0)
            except subprocess.TimeoutExpired:
                continue
        return process.wait()

    def close(self) -> None:
        """Stop the worker, if any. A later ``measure`` would start a new one."""
        self._stop(grace_s=1.0)

    def __enter__(self) -> "Measurer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit, modules may already be torn down
            pass
