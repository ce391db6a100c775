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

from typing import Any, Optional, Sequence

from ..ir.stmt import Function
from ..ir.tensor import Tensor
from ..passes.loop_nest import default_loop_nest
# Importing the primitives' modules registers them (``params.primitive``), in this order.
from . import split as _split, reorder as _reorder, annotate as _annotate, cache as _cache, stages as _stages  # noqa: F401
from .loops import ScheduleError, loop_names
from .params import LOOPS, REGISTRY, Primitive, check_arguments
from .step import Step, trace_from_json, trace_to_json

# name -> the primitive's one declaration, in the order a reader (and the LLM prompt) meets them:
# restructure, then mark, then storage and stages.
_ORDER = ("split", "tile", "reorder", "fuse", "parallel", "vectorize", "unroll",
          "cache_write", "cache_read", "prefetch", "pack", "compute_at", "compute_inline")
PRIMITIVES: dict[str, Primitive] = {name: REGISTRY[name] for name in _ORDER}
assert set(PRIMITIVES) == set(REGISTRY), "a new primitive needs its place in _ORDER"


def apply_step(func: Function, step: Step) -> Function:
    """Apply one step; a step that does not fit the program raises ScheduleError.

    Arguments are checked against the primitive's declared kinds first (``params.py``), so an
    exception other than ScheduleError from inside a primitive is a bug in it, and propagates."""
    primitive = PRIMITIVES.get(step.op)
    if primitive is None:
        raise ScheduleError(f"unknown transformation {step.op!r}; known: {', '.join(PRIMITIVES)}")
    check_arguments(primitive, step.kwargs)
    return primitive(func, **step.kwargs)


def _step(op: str, **args: Any) -> Step:
    """A Step from a method's arguments; arguments that are not step data are a ScheduleError."""
    try:
        return Step.make(op, **args)
    except TypeError as error:
        raise ScheduleError(f"{op}: {error}") from None


def call_text(step: Step) -> str:
    """The step as a Schedule method call: keywords, except a list of loops, passed as ``*order``."""
    primitive = PRIMITIVES.get(step.op)
    kinds = {p: param.kind for p, param in primitive.params.items()} if primitive else {}
    args = [", ".join(map(repr, v)) if kinds.get(k) is LOOPS and isinstance(v, tuple)
            else f"{k}={list(v)!r}" if isinstance(v, tuple) else f"{k}={v!r}" for k, v in step.args]
    return f"{step.op}({', '.join(args)})"


def trace_from_python(text: str) -> tuple[Step, ...]:
    """The steps of a trace written as Python — ``s.trace()``'s lines (``s = s.tile(...)``) or a
    chain (``Schedule(C).tile(...).split(...)``) — in the order they appear. Nothing is run:
    the text is parsed, each call of a primitive's name is read with ``ast.literal_eval``, and
    anything that is not a literal argument is a ValueError."""
    import ast
    try:
        tree = ast.parse(text)
    except SyntaxError as error:
        raise ValueError(f"the trace is not Python: {error}") from None
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr in PRIMITIVES]
    steps = []
    for call in sorted(calls, key=lambda n: (n.func.end_lineno, n.func.end_col_offset)):  # type: ignore[attr-defined]
        op, params = call.func.attr, list(PRIMITIVES[call.func.attr].params)  # type: ignore[attr-defined]
        try:
            positional = [ast.literal_eval(a) for a in call.args]
            named = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg is not None}
        except (ValueError, TypeError, SyntaxError):
            raise ValueError(f"line {call.lineno}: {op}(...) takes literal arguments only") from None
        if PRIMITIVES[op].params[params[0]].kind is LOOPS and positional:
            named[params[0]] = positional if len(positional) > 1 or isinstance(positional[0], str) else positional[0]
        else:
            named.update(zip(params, positional))
        steps.append(_step(op, **named))
    return tuple(steps)


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

    def cache_read(self, tensor: str, at: str, panel: Optional[int] = None) -> "Schedule":
        args: dict[str, Any] = {"tensor": tensor, "at": at}
        args.update({"panel": panel} if panel is not None else {})
        return self._extend(_step("cache_read", **args))

    def prefetch(self, tensor: str, at: str, distance: int) -> "Schedule":
        return self._extend(_step("prefetch", tensor=tensor, at=at, distance=distance))

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
        return "\n".join(["s = Schedule(tensor)"] + [f"s = s.{call_text(step)}" for step in self.steps])

    def explain(self, color: bool = False) -> str:
        """Each step of the trace: the step as Python, what it did in a sentence, and the diff of
        the loop nest before and after it (``explain.explain_steps`` gives them as data)."""
        from .explain import explain_steps
        changes = explain_steps(self)
        if not changes:
            return "the unscheduled program (no steps):\n" + str(self)
        return "\n\n".join(change.render(color) for change in changes)

    def to_json(self) -> str:
        return trace_to_json(self.steps)

    @staticmethod
    def from_json(tensor: Tensor, text: str, inputs: Optional[Sequence[Tensor]] = None) -> "Schedule":
        return Schedule(tensor, inputs, trace_from_json(text))

    def __str__(self) -> str:
        return str(self.func)

    def __repr__(self) -> str:
        return f"<Schedule of {self.tensor.name}: {len(self.steps)} step(s)>"


__all__ = ["Schedule", "Step", "ScheduleError", "PRIMITIVES", "Primitive", "apply_step", "call_text",
           "trace_from_python"]
