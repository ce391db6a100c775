"""A Step is one schedule transformation as plain data: its name and its arguments.

The same Step type is the unit of a schedule's trace, of the search space, of what the
LLM proposer is parsed into, and of what the tuning database stores. Steps are frozen and
hashable; they round-trip through JSON exactly and print as the Python call that makes them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


# The order arguments print in: what is transformed first, then where, then how much.
_ORDER = ("tensor", "loop", "outer_loop", "inner_loop", "outer", "inner", "order", "at", "dim",
          "factor", "nparts", "outer_factor", "inner_factor")


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if hasattr(value, "__index__"):
        return int(value)
    raise TypeError(f"step arguments are ints, strings, None or lists of them; got {value!r}")


def _thaw(value: Any) -> Any:
    return [_thaw(v) for v in value] if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Step:
    op: str
    args: tuple[tuple[str, Any], ...] = ()

    @staticmethod
    def make(op: str, **args: Any) -> "Step":
        """A step with its arguments in one canonical order, so equal steps compare equal."""
        ordered = sorted(args.items(), key=lambda kv: (_ORDER.index(kv[0]) if kv[0] in _ORDER else len(_ORDER), kv[0]))
        return Step(op, tuple((k, _freeze(v)) for k, v in ordered))

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.args)

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, **{k: _thaw(v) for k, v in self.args}}

    @staticmethod
    def from_json(data: dict[str, Any]) -> "Step":
        if not isinstance(data, dict) or not isinstance(data.get("op"), str):
            raise ValueError(f"a step is a JSON object with an 'op' string, got {data!r}")
        return Step.make(data["op"], **{k: v for k, v in data.items() if k != "op"})

    def __str__(self) -> str:
        args = ", ".join(f"{k}={_thaw(v)!r}" for k, v in self.args)
        return f"{self.op}({args})"


def trace_to_json(steps: tuple[Step, ...] | list[Step]) -> str:
    return json.dumps([s.to_json() for s in steps])


def trace_from_json(text: str) -> tuple[Step, ...]:
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("a trace is a JSON list of steps")
    return tuple(Step.from_json(d) for d in data)
