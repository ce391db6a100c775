"""Trying steps: an illegal step is a None, a bug in a primitive is a defect, never an illegal step.

Every part of the search that tries a step — the decision space, the proposers, MCTS and the
evolutionary search — goes through ``try_steps``. Only a ScheduleError means "illegal": the
step is skipped. Any other exception is a bug in the compiler. Outside a tune it propagates
(tests see it); inside ``collecting_defects()`` (which ``tune()`` opens) it is recorded, the
step is skipped and the tune goes on, and the result reports every defect it met.
"""
from __future__ import annotations

import contextlib
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

from minicompiler.schedule import Schedule, ScheduleError, Step


@dataclass(frozen=True)
class Defect:
    steps: tuple[Step, ...]   # the whole trace that raised, from the unscheduled program
    error: str                # "KeyError: ...", one line

    def __str__(self) -> str:
        return f"{self.error} after {', '.join(str(s) for s in self.steps) or 'no steps'}"


_defects: ContextVar[Optional[list[Defect]]] = ContextVar("minicompiler_defects", default=None)


def try_steps(schedule: Schedule, steps: Sequence[Step]) -> Optional[Schedule]:
    """``schedule`` with ``steps`` applied, or None if one of them is illegal (or, in a tune, a defect)."""
    try:
        return schedule.replay(steps)
    except ScheduleError:
        return None
    except Exception as error:  # noqa: BLE001 - a bug in a primitive: recorded in a tune, raised elsewhere
        report_defect(schedule, steps, error)
        return None


def report_defect(schedule: Schedule, steps: Sequence[Step], error: Exception) -> None:
    """Inside ``collecting_defects()``, record ``error`` (raised by ``steps`` on ``schedule``); else re-raise it."""
    defects = _defects.get()
    if defects is None:
        raise error
    defect = Defect(tuple(schedule.steps) + tuple(steps), " ".join(f"{type(error).__name__}: {error}".split())[:500])
    if not defects:
        print(f"minicompiler: internal error while trying a step (a bug; please report it): {defect}",
              file=sys.stderr, flush=True)
    defects.append(defect)


@contextlib.contextmanager
def collecting_defects() -> Iterator[list[Defect]]:
    """Within this block, ``try_steps`` records defects instead of raising them."""
    defects: list[Defect] = []
    token = _defects.set(defects)
    try:
        yield defects
    finally:
        _defects.reset(token)
