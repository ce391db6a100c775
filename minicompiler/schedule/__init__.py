"""Schedules: a program plus a trace of Steps, each applied by one pure transform.

    s = Schedule(C)
    s = s.tile("i", "j", 6, 32).split("k", 256).reorder("i_o", "j_o", "k_o", "k_i", "i_i", "j_i")
    s = s.cache_write("C", at="j_o").unroll("i_i").vectorize("j_i").parallel("i_o")
    print(s)            # the transformed loop nest
    print(s.trace())    # the steps, as Python you can paste
    build(s)            # a Kernel

A Schedule is immutable: every method returns a new one, so a search can branch from any point.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from ..ir.stmt import Function
from ..ir.tensor import Tensor
from ..passes.loop_nest import default_loop_nest
from .annotate import parallel, unroll, vectorize
from .cache import cache_write, pack
from .loops import ScheduleError, loop_names
from .params import check_arguments
from .reorder import fuse, reorder
from .split import split, tile
from .stages import compute_at, compute_inline
from .step import Step, trace_from_json, trace_to_json

PRIMITIVES: dict[str, Callable[..., Function]] = {
    "split": split, "tile": tile, "reorder": reorder, "fuse": fuse,
    "parallel": parallel, "vectorize": vectorize, "unroll": unroll,
    "cache_write": cache_write, "pack": pack, "compute_at": compute_at, "compute_inline": compute_inline,
}


def apply_step(func: Function, step: Step) -> Function:
    """Apply one step; a step that does not fit the program raises ScheduleError.

    Arguments are checked against the primitive's declared kinds first (``params.py``), so an
    exception other than ScheduleError from inside a primitive is a bug in it, and propagates."""
    primitive = PRIMITIVES.get(step.op)
    if primitive is None:
        raise ScheduleError(f"unknown transformation {step.op!r}; known: {', '.join(PRIMITIVES)}")
    check_arguments(step.op, primitive, step.kwargs)
    return primitive(func, **step.kwargs)


def _step(op: str, **args: Any) -> Step:
    """A Step from a method's arguments; arguments that are not step data are a ScheduleError."""
    try:
        return Step.make(op, **args)
    except TypeError as error:
        raise ScheduleError(f"{op}: {error}") from None


class Schedule:
    def __init__(self, tensor: Tensor, inputs: Optional[Sequence[Tensor]] = None,
                 steps: Sequence[Step] = (), name: Optional[str] = None) -> None:
        if not isinstance(tensor, Tensor):
            raise TypeError(f"Schedule takes a tensor, got {type(tensor).__name__}")
        self.tensor = tensor
        self.inputs = tuple(inputs) if inputs is not None else None
        self.name = name
        self.initial = default_loop_nest(tensor, inputs, name)
        self.func = self.initial
        self.steps: tuple[Step, ...] = ()
        for step in steps:
            self.func = apply_step(self.func, step)
            self.steps += (step,)

    def _extend(self, step: Step) -> "Schedule":  # noqa: D401 - every method below funnels here
        new = object.__new__(Schedule)
        new.tensor, new.inputs, new.name, new.initial = self.tensor, self.inputs, self.name, self.initial
        new.func = apply_step(self.func, step)
        new.steps = self.steps + (step,)
        return new

    def apply(self, step: Step) -> "Schedule":
        return self._extend(step)

    def replay(self, steps: Sequence[Step]) -> "Schedule":
        s = self
        for step in steps:
            s = s._extend(step)
        return s

    # One method per primitive; each records a Step.
    def split(self, loop: str, factor: Optional[int] = None, nparts: Optional[int] = None) -> "Schedule":
        args: dict[str, Any] = {"loop": loop}
        args.update({"factor": factor} if factor is not None else {"nparts": nparts})
        return self._extend(_step("split", **args))

    def tile(self, outer_loop: str, inner_loop: str, outer_factor: int, inner_factor: int) -> "Schedule":
        return self._extend(_step("tile", outer_loop=outer_loop, inner_loop=inner_loop,
                                      outer_factor=outer_factor, inner_factor=inner_factor))

    def reorder(self, *order: str) -> "Schedule":
        return self._extend(_step("reorder", order=order))

    def fuse(self, outer: str, inner: str) -> "Schedule":
        return self._extend(_step("fuse", outer=outer, inner=inner))

    def parallel(self, loop: str) -> "Schedule":
        return self._extend(_step("parallel", loop=loop))

    def vectorize(self, loop: str) -> "Schedule":
        return self._extend(_step("vectorize", loop=loop))

    def unroll(self, loop: str, factor: Optional[int] = None) -> "Schedule":
        return self._extend(_step("unroll", loop=loop, **({"factor": factor} if factor is not None else {})))

    def cache_write(self, tensor: str, at: str) -> "Schedule":
        return self._extend(_step("cache_write", tensor=tensor, at=at))

    def pack(self, tensor: str, dim: int, factor: int) -> "Schedule":
        return self._extend(_step("pack", tensor=tensor, dim=dim, factor=factor))

    def compute_at(self, tensor: str, at: str) -> "Schedule":
        return self._extend(_step("compute_at", tensor=tensor, at=at))

    def compute_inline(self, tensor: str) -> "Schedule":
        return self._extend(_step("compute_inline", tensor=tensor))

    # Looking at a schedule.
    @property
    def loops(self) -> list[str]:
        return loop_names(self.func)

    def trace(self) -> str:
        """The steps as Python that rebuilds this schedule."""
        lines = ["s = Schedule(tensor)"]
        for step in self.steps:
            args = ", ".join(f"{k}={v!r}" if not isinstance(v, tuple) else f"{k}={list(v)!r}"
                             for k, v in step.args)
            if step.op == "reorder":
                args = ", ".join(repr(x) for x in step.kwargs["order"])
            lines.append(f"s = s.{step.op}({args})")
        return "\n".join(lines)

    def to_json(self) -> str:
        return trace_to_json(self.steps)

    @staticmethod
    def from_json(tensor: Tensor, text: str, inputs: Optional[Sequence[Tensor]] = None) -> "Schedule":
        return Schedule(tensor, inputs, trace_from_json(text))

    def __str__(self) -> str:
        return str(self.func)

    def __repr__(self) -> str:
        return f"<Schedule of {self.tensor.name}: {len(self.steps)} step(s)>"


__all__ = ["Schedule", "Step", "ScheduleError", "PRIMITIVES", "apply_step"]
