"""Where a program's schedule comes from when nobody wrote one: sources the auto-scheduler registers.

The compiler core knows nothing of the auto-scheduler. ``mc.einsum`` on arrays asks
``find_schedule(tensor, inputs)``; the answer comes from the sources registered with
``register_schedule_source`` — ``minicompiler.search`` registers one when it is imported (the
tuning database's best record, else the heuristic's greedy schedule). The search package is
loaded by name the first time a schedule is wanted, so the core never imports it as code; if
it is not installed, programs get their plain loop nest.
"""
from __future__ import annotations

import importlib
import warnings
from typing import Callable, Optional, Sequence

from ..ir.tensor import Tensor
from . import Schedule

ScheduleSource = Callable[[Tensor, Sequence[Tensor]], Optional[Schedule]]

PLUGINS = ("minicompiler.search",)   # imported once, on first use: they register their sources
_sources: list[ScheduleSource] = []
_loaded = False


def register_schedule_source(source: ScheduleSource) -> ScheduleSource:
    """Ask ``source(tensor, inputs)`` for schedules (after the sources registered before it)."""
    if source not in _sources:
        _sources.append(source)
    return source


def find_schedule(tensor: Tensor, inputs: Sequence[Tensor]) -> Optional[Schedule]:
    """The first schedule a registered source offers for this program, or None."""
    global _loaded
    if not _loaded:
        _loaded = True
        for name in PLUGINS:
            try:
                importlib.import_module(name)
            except ImportError as error:   # a partial install: say so once, compile plain loop nests
                warnings.warn(f"minicompiler: {name} could not be imported ({error}); einsum compiles "
                              f"untuned loop nests", RuntimeWarning, stacklevel=2)
    for source in _sources:
        schedule = source(tensor, inputs)
        if schedule is not None:
            return schedule
    return None
