"""Proposers: given a node of the search, ranked sequences of Steps to try next — the interface.

A proposer sees the program, its trace, the measured times of its ancestors and the target
(a ``Context``) and answers with concrete, parameterised steps (``Proposal``s). The offline
default is ``heuristic.HeuristicProposer``; the LLM proposer (``minicompiler/llm/``) implements
the same interface. ``TuneHooks`` is what ``tune()`` tells every proposer about its run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol, Sequence

from minicompiler.schedule import Schedule, Step
from minicompiler.target import Target

@dataclass
class Context:
    """What a proposer knows about a search node."""

    schedule: Schedule
    target: Target
    time_s: Optional[float] = None                   # this node's measured time
    baseline_s: Optional[float] = None               # the unscheduled program's time
    ancestors: Sequence["Ancestor"] = ()             # parent first
    tried: Sequence[tuple[Step, ...]] = ()           # proposals already expanded here


@dataclass(frozen=True)
class Ancestor:
    schedule: Schedule
    time_s: Optional[float]


@dataclass(frozen=True)
class Proposal:
    steps: tuple[Step, ...]
    reasoning: str = ""


class Proposer(Protocol):
    def propose(self, context: Context, n: int) -> list[Proposal]: ...


class TuneHooks:
    """What ``tune()`` tells every proposer about its run, and asks of it. The defaults do nothing;
    a proposer that keeps a run's state (the LLM one: its recording or replay, its statistics)
    overrides them. ``with_hooks`` gives a plain object with only ``propose`` these defaults."""

    name: str = ""                          # as the tuning database records it ("heuristic", "llm")
    replay_seed: Optional[int] = None       # a replayed run's seed, which the tune then reuses
    ancestor_depth: int = 2                 # how many ancestors a Context carries

    replay_target: Optional[dict] = None    # a replayed run's recorded Target fields, which the tune plans for

    def begin(self, workload: Any, seed: Optional[int], threads: int, strategy: str, run_id: str,
              target: Any = None) -> None:
        """The run starts."""

    def wrap_measurer(self, measurer: Any) -> Any:
        """The measurer the run uses (a proposer may record or replay measurements around it)."""
        return measurer

    def finish(self) -> Any:
        """The run ended: the proposer's own report (``TuneResult.llm_stats`` for the LLM), or None."""
        return None


class _Hooked(TuneHooks):
    def __init__(self, proposer: Proposer) -> None:
        self.proposer = proposer
        self.name = type(proposer).__name__
        self.ancestor_depth = getattr(proposer, "ancestor_depth", 2)

    def propose(self, context: Context, n: int) -> list[Proposal]:
        return self.proposer.propose(context, n)


def with_hooks(proposer: Proposer) -> TuneHooks:
    """``proposer`` itself if it has the tune's hooks, else it wrapped with the default ones."""
    return proposer if isinstance(proposer, TuneHooks) else _Hooked(proposer)
