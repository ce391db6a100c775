"""``tune()``: search for a fast schedule of a tensor program by measuring candidates.

    result = minicompiler.tune(C, budget=64, strategy="mcts")
    result.speedup, result.best_time_s, print(result.trace())
    kernel = result.kernel          # the best schedule, built

Every sample goes to the tuning database as it is measured; ``resume=True`` continues the
latest run of the same workload / strategy / proposer / threads, without re-measuring.
"""
from __future__ import annotations

import dataclasses
import math
import random
import sqlite3
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import networkx as nx

from minicompiler.ir.tensor import Tensor
from minicompiler.runtime.threads import check_thread_count, default_threads, get_num_threads
from minicompiler.schedule import Schedule, ScheduleError, Step
from minicompiler.target import Target

from .database import Database
from .evolutionary import Evolutionary
from .legality import Defect, collecting_defects
from .mcts import MCTS
from .measure import Measurer
from .heuristic import HeuristicProposer, greedy_schedule
from .proposer import TuneHooks, with_hooks
from .random_search import RandomSearch
from .session import Confirmation, Sample, Session, print_progress
from .workload import Workload

STRATEGIES = ("mcts", "evolutionary", "random")


class TuneError(RuntimeError):
    """A tune that measured nothing: every candidate (or the unscheduled baseline) failed."""


@dataclass
class TuneResult:
    workload: Workload
    best_steps: tuple[Step, ...]
    best_time_s: Optional[float]
    baseline_time_s: Optional[float]
    history: list[Sample]
    run_id: str
    tree: Optional[nx.DiGraph] = None
    llm_stats: Any = None          # the proposer's report: LLMStats for the LLM (calls, tokens, fallbacks, cost)
    defects: list[Defect] = field(default_factory=list)   # internal compiler errors met while trying steps
    confirmed: list[Confirmation] = field(default_factory=list)  # the fastest ones re-measured; best by median
    threads: int = 1               # the thread count the kernels were measured with
    _kernel: Any = field(default=None, repr=False)

    @property
    def status_counts(self) -> dict[str, int]:
        """How many samples ended in each status ("ok", "wrong", "error", "crash", "timeout")."""
        return dict(Counter(s.status for s in self.history))

    @property
    def first_errors(self) -> dict[str, str]:
        """The first error message of each failing status: what went wrong, once per kind."""
        first: dict[str, str] = {}
        for s in self.history:
            if s.status != "ok":
                first.setdefault(s.status, s.error or "(no message)")
        return first

    def failure_summary(self) -> str:
        """"" when every sample was measured; else the counts by status and the first error of each."""
        failed = {k: v for k, v in self.status_counts.items() if k != "ok"}
        lines = []
        if failed:
            counts = ", ".join(f"{n} {status}" for status, n in sorted(failed.items()))
            lines.append(f"{sum(failed.values())} of {self.samples} samples failed ({counts})")
            lines += [f"  first {status}: {error}" for status, error in self.first_errors.items()]
        if self.defects:
            lines.append(f"{len(self.defects)} internal compiler error(s) while trying steps (bugs; please "
                         f"report): first: {self.defects[0]}")
        return "\n".join(lines)

    @property
    def speedup(self) -> float:
        if not self.best_time_s or not self.baseline_time_s:
            return 0.0
        return self.baseline_time_s / self.best_time_s

    @property
    def samples(self) -> int:
        return len(self.history)

    @property
    def schedule(self) -> Schedule:
        return self.workload.schedule(self.best_steps)

    @property
    def kernel(self):  # noqa: ANN201 - a minicompiler Kernel
        if self._kernel is None:
            from minicompiler.lower import build
            self._kernel = build(self.schedule)
        return self._kernel

    def trace(self) -> str:
        return self.schedule.trace()

    def report(self, directory: Any, peak_gflops: Optional[float] = None,
               bandwidth_gbs: Optional[float] = None) -> Any:
        """Write ``directory``/index.html: the curve, the roofline, the tree, every sample and the
        best trace explained (``search.report``); returns its path. The roofs are measured now
        unless given."""
        from .report import write_report
        return write_report(self, directory, peak_gflops, bandwidth_gbs)

    def best_so_far(self, baseline_s: Optional[float] = None) -> list[tuple[int, float]]:
        """(sample index, best speedup so far) for every sample: the sample-efficiency curve.
        ``baseline_s``: the time speedups are relative to (default: this run's own unscheduled
        sample). Runs compared with each other need one common baseline: the unscheduled program
        is timed once per run, and a few noisy seconds there would rescale a whole curve."""
        baseline_s = baseline_s or self.baseline_time_s
        return [(s.index, (baseline_s / s.best_s) if s.best_s and baseline_s else 0.0) for s in self.history]


def _strategy(name: str, proposer: TuneHooks, c: float, branching: int):  # noqa: ANN202
    if name == "mcts":
        return MCTS(proposer, c=c, branching=branching, ancestor_depth=proposer.ancestor_depth)
    if name == "evolutionary":
        return Evolutionary()
    if name == "random":
        return RandomSearch()
    raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def _proposer(proposer: Any, llm: Any) -> TuneHooks:
    """The proposer object: "heuristic", "llm" (built from ``llm``: an LLMConfig or a dict of its
    fields), or any object with ``propose`` (given the tune's hooks if it has none)."""
    if isinstance(proposer, str) and proposer == "llm":
        from minicompiler.llm import LLMConfig, make_proposer   # the LLM layer sits above the search
        return make_proposer(llm if isinstance(llm, LLMConfig) else LLMConfig(**(llm or {})))
    if llm is not None:
        raise ValueError("llm= configures proposer='llm'; pass the LLM settings with it")
    if isinstance(proposer, str) and proposer == "heuristic":
        return HeuristicProposer()
    if hasattr(proposer, "propose") and not isinstance(proposer, str):
        return with_hooks(proposer)
    raise ValueError(f"unknown proposer {proposer!r}; use 'heuristic', 'llm' or an object with .propose()")


def _run_id(database: Database, workload: Workload, strategy: str, proposer: str, threads: int,
            seed: Optional[int], resume: bool) -> tuple[str, int]:
    """The run to write to, and its seed: the latest matching run when resuming, else a new one."""
    if resume:
        latest = database.latest_run(workload.key, Target.host().key(), threads, strategy, proposer, seed)
        if latest is not None:
            return latest
    seed = seed if seed is not None else random.randrange(2**31)
    return f"{workload.key}:{strategy}:{proposer}:t{threads}:s{seed}:{time.strftime('%Y%m%dT%H%M%S')}:" \
           f"{random.randrange(10**6):06d}", seed


def tune(tensor: Tensor, budget: int = 64, strategy: str = "mcts", proposer: Any = "heuristic",
         database: Any = None, seed: Optional[int] = None, threads: Optional[int] = None,
         inputs: Optional[Sequence[Tensor]] = None, resume: bool = False, progress: bool = True,
         timeout_s: float = 60.0, measurer: Any = None, c: float = math.sqrt(2), branching: int = 2,
         name: str = "", llm: Any = None, confirm: int = 3) -> TuneResult:
    """Search ``budget`` measured samples for the fastest schedule of ``tensor``.

    ``proposer``: "heuristic" (offline), "llm" (an OpenAI-compatible endpoint configured by ``llm``,
    an ``minicompiler.llm.LLMConfig`` or a dict of its fields; unset fields come from
    $OPENAI_BASE_URL, $OPENAI_API_KEY, $MINICOMPILER_LLM_MODEL), or a proposer object.

    ``confirm``: after the search, the ``confirm`` fastest schedules are measured twice more,
    interleaved, and the best is the one with the lowest median (``Session.confirm``: the minimum
    of noisy timings favours a lucky one). These re-measurements are not samples; 0 turns it off."""
    if not isinstance(tensor, Tensor) or tensor.op is None:
        raise TypeError("tune() takes a computed tensor (from compute() or einsum on placeholders)")
    if not isinstance(confirm, int) or isinstance(confirm, bool) or confirm < 0:
        raise ValueError(f"confirm is how many of the fastest schedules to re-measure (0: none), got {confirm!r}")
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a positive number of samples, got {budget!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    threads = check_thread_count(threads or default_threads())   # before a worker starts, or a plan
    workload = Workload(tensor, tuple(inputs) if inputs is not None else None, name or tensor.name)
    db = database if isinstance(database, Database) else Database(database)
    proposer_obj = _proposer(proposer, llm)
    proposer_name = proposer_obj.name or type(proposer_obj).__name__
    target = Target.host().with_(cores=threads)   # the heuristic plans for the cores the kernel gets
    recorded = getattr(proposer_obj, "replay_target", None)
    if recorded:   # a replayed LLM run plans for the machine it was recorded on (the same candidates anywhere)
        known = {f.name for f in dataclasses.fields(Target)}
        target = Target(**{k: v for k, v in recorded.items() if k in known})
    if seed is None:
        seed = proposer_obj.replay_seed   # a replayed run reuses its recorded seed (else None)
    run_id, seed = _run_id(db, workload, strategy, proposer_name, threads, seed, resume)
    own_measurer = measurer is None
    measurer = measurer or Measurer(workload, threads=threads, timeout_s=timeout_s)
    proposer_obj.begin(workload, seed, threads, strategy, run_id, target)
    measurer = proposer_obj.wrap_measurer(measurer)   # e.g. the LLM's recording or replay of measurements
    session = Session(workload, measurer, db, budget, target, threads, strategy, seed, run_id,
                      progress=print_progress if progress else None, proposer=proposer_name)
    session.load_previous()
    search = _strategy(strategy, proposer_obj, c, branching)
    try:
        with collecting_defects() as defects:
            search.run(session, random.Random(seed))
            confirmed = session.confirm(top=confirm) if confirm > 0 else []
    finally:
        if own_measurer:
            measurer.close()
    tree = search.tree() if isinstance(search, MCTS) else None
    result = TuneResult(workload, session.best_steps, session.best_s, session.baseline_s, session.history,
                        run_id, tree, proposer_obj.finish(), defects, confirmed, threads)
    _check_measured(result)
    return result


def _check_measured(result: TuneResult) -> None:
    """Raise TuneError when the tune measured nothing, or could not run the unscheduled program."""
    baseline = next((s for s in result.history if not s.steps), None)
    if baseline is not None and baseline.status in ("error", "crash", "wrong"):
        what = f"the unscheduled program itself failed ({baseline.status})"
    elif result.best_time_s is None:
        what = f"none of its {result.samples} sample(s) could be measured"
    else:
        return
    raise TuneError(
        f"the tune of {result.workload.name or 'the program'} measured nothing: {what}.\n"
        f"{result.failure_summary()}\n"
        f"What to do: a 'crash' or 'error' while starting means the measuring worker could not run the "
        f"program (mc.build(tensor) in this process shows the error); 'timeout' means every candidate "
        f"took longer than timeout_s (raise it, or tune a smaller shape); 'wrong' is a compiler bug "
        f"(please report it). Every sample is in the tuning database, run {result.run_id}.")


def best_schedule(tensor: Tensor, database: Any = None, threads: Optional[int] = None,
                  inputs: Optional[Sequence[Tensor]] = None) -> Optional[Schedule]:
    """The fastest schedule the database holds for this program, target and thread count."""
    db = database if isinstance(database, Database) else Database(database)
    workload = Workload(tensor, tuple(inputs) if inputs is not None else None)
    record = db.best(workload.key, Target.host().key(), threads or default_threads())
    if record is None:
        return None
    return workload.schedule([Step.from_json(d) for d in record["steps"]])


def default_schedule(tensor: Tensor, inputs: Sequence[Tensor] = ()) -> Optional[Schedule]:
    """The schedule to use when none is given: the database's best, else the greedy heuristic's.

    A database that cannot be read (damaged, locked, a disk error) or a record that no longer
    replays (made by another version of the compiler) falls back to the heuristic, with a
    warning; any other exception is a bug, and propagates."""
    holders = tuple(inputs) or None
    try:
        tuned = best_schedule(tensor, threads=get_num_threads(), inputs=holders)
    except (sqlite3.Error, OSError, ScheduleError) as error:
        warnings.warn(f"minicompiler: no tuned schedule ({type(error).__name__}: {error}); using the "
                      f"heuristic's", RuntimeWarning, stacklevel=3)
        tuned = None
    if tuned is not None:
        return tuned
    return greedy_schedule(Schedule(tensor, holders), Target.host().with_(cores=get_num_threads()))
