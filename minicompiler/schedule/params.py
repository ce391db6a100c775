"""The kinds of a primitive's parameters, declared beside each primitive and checked before it runs.

    @primitive(loop=LOOP, factor=COUNT.optional(), nparts=COUNT.optional())
    def split(func, loop, factor=None, nparts=None): ...

A step reaches a primitive only after ``check_arguments`` has proven every argument of the
declared kind — so a string where a list of loop names goes (``reorder(order="ji")``), a bool
or a float where a count goes, are refused with a ScheduleError that names the parameter,
and the primitive's body only has to decide legality. A TypeError raised inside a primitive
is then a bug of the primitive, not a bad step, and propagates as one.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, TypeVar

from .loops import ScheduleError

F = TypeVar("F", bound=Callable[..., Any])

# Counts beyond this are refused outright: no loop or tensor is that large, and an int64 must hold them.
MAX_COUNT = 2**62


@dataclass(frozen=True)
class Kind:
    name: str
    meaning: str               # what a value of this kind is, for error messages and the LLM's vocabulary
    required: bool = True

    def optional(self) -> "Kind":
        return replace(self, required=False)

    def check(self, op: str, param: str, value: Any) -> None:
        """Raise ScheduleError unless ``value`` is of this kind."""
        if self.name in ("loop", "tensor"):
            ok = isinstance(value, str) and value != ""
        elif self.name == "loops":
            ok = isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value)
        else:  # count, index
            ok = isinstance(value, int) and not isinstance(value, bool) and \
                (1 if self.name == "count" else 0) <= value <= MAX_COUNT
        if not ok:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
            raise ScheduleError(f"{op}: {param} must be {self.meaning}, got {shown}")


LOOP = Kind("loop", "a loop name (a string)")
TENSOR = Kind("tensor", "a tensor name (a string)")
LOOPS = Kind("loops", "a list of loop names (strings)")
COUNT = Kind("count", "a positive integer (at most 2**62; more than a loop's extent means the whole loop)")
INDEX = Kind("index", "a non-negative integer")


def primitive(**params: Kind) -> Callable[[F], F]:
    """Declare a primitive's parameters and their kinds (in the order of its signature)."""
    def declare(function: F) -> F:
        function.params = params  # type: ignore[attr-defined]
        return function
    return declare


def check_arguments(op: str, function: Callable[..., Any], args: dict[str, Any]) -> None:
    """Every argument is a declared parameter of its kind; every required parameter is given."""
    params: dict[str, Kind] = function.params  # type: ignore[attr-defined]
    unknown = [k for k in args if k not in params]
    if unknown:
        raise ScheduleError(f"{op} takes {', '.join(params)}; not {', '.join(unknown)}")
    missing = [p for p, kind in params.items() if kind.required and p not in args]
    if missing:
        raise ScheduleError(f"{op} needs {', '.join(missing)}")
    for name, value in args.items():
        if value is not None or params[name].required:
            params[name].check(op, name, value)
