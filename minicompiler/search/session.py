"""A tuning session: the budget, the measurer, the database and the history, shared by all strategies.

Every strategy asks ``session.measure(schedule)``; that is the only way to spend a sample,
so all strategies count samples the same way. Each result is appended to the database as
soon as it is measured. A trace measured before in this run (also by an earlier, killed
process of the same run) is answered from the record without spending a sample: a resumed
deterministic strategy walks its old path for free and carries on where it stopped.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from minicompiler.schedule import Schedule, Step
from minicompiler.target import Target

from .database import Database, TuningRecord
from .workload import Workload


class BudgetExhausted(Exception):
    pass


@dataclass
class Sample:
    index: int           # 1-based sample number within the run
    steps: tuple[Step, ...]
    status: str
    time_s: Optional[float]
    best_s: Optional[float]   # best time so far, after this sample
    wall_s: float             # seconds since the session started
    error: str = ""           # what went wrong, for a sample that is not "ok"


@dataclass(frozen=True)
class Confirmation:
    """A schedule re-measured after the search: its first time (the sample) and the re-measurements."""
    steps: tuple[Step, ...]
    sample: int                 # the sample that first measured it
    times_s: tuple[float, ...]  # the sample's time, then one per round

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)


def trace_key(steps: tuple[Step, ...]) -> str:
    return json.dumps([s.to_json() for s in steps], sort_keys=True)


@dataclass
class Session:
    workload: Workload
    measurer: Any
    database: Database
    budget: int
    target: Target
    threads: int
    strategy: str
    seed: int
    run_id: str
    progress: Optional[Callable[["Session", Sample], None]] = None
    proposer: str = ""
    history: list[Sample] = field(default_factory=list)
    best_steps: tuple[Step, ...] = ()
    best_s: Optional[float] = None
    baseline_s: Optional[float] = None
    started: float = field(default_factory=time.perf_counter)
    _known: dict[str, tuple[str, Optional[float]]] = field(default_factory=dict)

    # -- resuming ---------------------------------------------------------------------------
    def load_previous(self) -> int:
        """Read this run's earlier samples from the database; returns how many there were."""
        previous = sorted(self.database.records(run_id=self.run_id, workload=self.workload.key),
                          key=lambda r: r.get("sample", 0))
        for record in previous:
            steps = tuple(Step.from_json(d) for d in record["steps"])
            self._record(steps, record["status"], record.get("time_s"), write=False,
                         error=str(record.get("error", "")))
        return len(previous)

    # -- measuring ----------------------------------------------------------------------------
    @property
    def samples(self) -> int:
        return len(self.history)

    @property
    def remaining(self) -> int:
        return self.budget - self.samples

    def measure(self, schedule: Schedule) -> Optional[float]:
        """Median seconds of ``schedule`` (None if it failed); costs one sample unless known."""
        key = trace_key(schedule.steps)
        if key in self._known:
            return self._known[key][1]
        if self.remaining <= 0:
            raise BudgetExhausted
        result = self.measurer.measure(list(schedule.steps))
        return self._record(schedule.steps, result.status, result.time_s, write=True,
                            compile_s=getattr(result, "compile_s", 0.0), error=getattr(result, "error", ""))

    def _record(self, steps: tuple[Step, ...], status: str, time_s: Optional[float], write: bool,
                compile_s: float = 0.0, error: str = "") -> Optional[float]:
        time_s = time_s if status == "ok" else None
        self._known[trace_key(steps)] = (status, time_s)
        if not steps and time_s is not None:
            self.baseline_s = time_s
        if time_s is not None and (self.best_s is None or time_s < self.best_s):
            self.best_s, self.best_steps = time_s, steps
        sample = Sample(len(self.history) + 1, steps, status, time_s, self.best_s,
                        time.perf_counter() - self.started, error[:500])
        self.history.append(sample)
        if write:
            self.database.append(self._database_record(steps, status, time_s, sample.index, compile_s, error))
        if self.progress is not None:
            self.progress(self, sample)
        return time_s

    # -- confirming ---------------------------------------------------------------------------
    def confirm(self, top: int = 3, rounds: int = 2) -> list[Confirmation]:
        """Re-measure the ``top`` fastest schedules ``rounds`` more times, interleaved, and make the
        best the one with the lowest median of all its times. Not samples: no new candidate.

        Why: the best of many noisy measurements is biased towards a lucky draw (the winner's
        curse); on a shared or many-core machine a candidate measured in a quiet moment can look
        10-30 % faster than one as good or better. Interleaving the rounds spreads a slow moment over
        all of them. A candidate that fails a re-measurement (a crash, a wrong result, a timeout) is
        dropped. When the confirmed medians come out slower than the next sample's single time,
        that one is confirmed too (up to ``top`` more). The times go to the database under the run
        id + ":confirm" (strategy "confirm"): ``Database.best`` judges re-measured schedules by their
        medians too, ahead of any measured once, and so agrees with this choice."""
        fastest: dict[str, Sample] = {}
        for sample in sorted((s for s in self.history if s.time_s is not None),   # the unscheduled too
                             key=lambda s: s.time_s):
            fastest.setdefault(trace_key(sample.steps), sample)
        ranked = list(fastest.values())
        if len(ranked) < 2 or rounds < 1:
            return []
        if self.progress is not None:
            print(f"confirming: the {min(top, len(ranked))} fastest measured {rounds} more times each, "
                  f"interleaved", file=sys.stderr, flush=True)
        times: dict[str, list[float]] = {}
        failed: set[str] = set()
        count = 0

        def remeasure(group: list[Sample]) -> None:
            nonlocal count
            for sample in group:
                times[trace_key(sample.steps)] = [sample.time_s]   # type: ignore[list-item]
            for _ in range(rounds):
                for sample in group:
                    key = trace_key(sample.steps)
                    if key in failed:
                        continue
                    result = self.measurer.measure(list(sample.steps))
                    count += 1
                    status, time_s = result.status, result.time_s if result.status == "ok" else None
                    if time_s is None:
                        failed.add(key)
                    else:
                        times[key].append(time_s)
                    self.database.append(self._database_record(
                        sample.steps, status, time_s, count, error=getattr(result, "error", ""),
                        run_id=f"{self.run_id}:confirm", strategy="confirm"))

        def confirmed() -> list[Confirmation]:
            return [Confirmation(s.steps, s.index, tuple(times[trace_key(s.steps)]))
                    for s in ranked if trace_key(s.steps) in times and trace_key(s.steps) not in failed]

        remeasure(ranked[:top])
        for sample in ranked[top:2 * top]:   # the next ones, while one measured once would still win
            done = confirmed()
            if done and sample.time_s >= min(c.median_s for c in done):   # type: ignore[operator]
                break
            remeasure([sample])
        done = confirmed()
        if done:
            winner = min(done, key=lambda c: c.median_s)
            self.best_steps, self.best_s = winner.steps, winner.median_s
        return done

    def _database_record(self, steps: tuple[Step, ...], status: str, time_s: Optional[float], sample: int,
                         compile_s: float = 0.0, error: str = "", run_id: str = "",
                         strategy: str = "") -> TuningRecord:
        return TuningRecord(
            run_id=run_id or self.run_id, sample=sample, workload=self.workload.key,
            workload_name=self.workload.name, target=self.target.key(), threads=self.threads,
            strategy=strategy or self.strategy, proposer=self.proposer, seed=self.seed,
            steps=[s.to_json() for s in steps], status=status, time_s=time_s, compile_s=compile_s,
            error=error[:500], timestamp=time.time())

    def speedup(self, time_s: Optional[float]) -> float:
        if time_s is None or self.baseline_s is None:
            return 0.0
        return self.baseline_s / time_s

    def reward(self, time_s: Optional[float]) -> float:
        """Normalised speedup in [0, 1]: this candidate's speedup over the best speedup seen."""
        best = self.speedup(self.best_s)
        return self.speedup(time_s) / best if best > 0 else 0.0


def print_progress(session: Session, sample: Sample) -> None:
    """One line per sample: index, what happened, the best so far."""
    width = len(str(session.budget))
    what = f"{sample.time_s * 1e3:9.3f} ms" if sample.time_s is not None else f"{sample.status:>12}"
    best = f"best {session.best_s * 1e3:.3f} ms" if session.best_s is not None else "best -"
    speedup = f"speedup {session.speedup(session.best_s):6.2f}x" if session.baseline_s else ""
    print(f"[{sample.index:>{width}}/{session.budget}] {what}  {best}  {speedup}  {decisions(sample.steps)}",
          file=sys.stderr, flush=True)


def decisions(steps: tuple[Step, ...], limit: int = 70) -> str:
    """The choices that tell candidates apart, briefly: tiles, blocks, loop orders, packing, fusion
    (every candidate of a tune ends with similar vectorize and parallel steps)."""
    if not steps:
        return "(unscheduled)"
    short = {"tile": lambda a: f"tile {a['outer_factor']}x{a['inner_factor']}",
             "split": lambda a: f"split {a['loop']}/{a.get('factor') or a.get('nparts')}",
             "reorder": lambda a: "order " + ",".join(a["order"]),
             "pack": lambda a: f"pack {a['tensor']}",
             "cache_read": lambda a: f"copy {a['tensor']}@{a['at']}",
             "prefetch": lambda a: f"prefetch {a['tensor']}@{a['at']}+{a['distance']}",
             "compute_at": lambda a: f"{a['tensor']}@{a['at']}"}
    parts = [short[s.op](s.kwargs) for s in steps if s.op in short]
    text = " | ".join(parts) or str(steps[-1])
    return text if len(text) <= limit else text[: limit - 3] + "..."
