"""Each primitive declared once: its parameters, their kinds and meanings, its docstring.

    @primitive(loop=LOOP("the loop to split"),
               factor=COUNT("iterations of the new inner loop", required=False), ...)
    def split(func, loop, factor=None, nparts=None):
        \"\"\"What it does, in a sentence or two.

        Legal when: what its checks demand.
        \"\"\"

The declaration is the one source of everything else that must agree with the primitive:
``check_arguments`` (a step's arguments, checked before the primitive runs), the trace text
(``Step`` printing), the Schedule methods (a test checks their signatures against it), the LLM
prompt's vocabulary and the JSON schema of a valid answer (``step_schema``), and the numeric
decisions a search may mutate (``count_params``).

Because every argument is proven of its kind before the primitive runs — a string is not a
list of loop names, a bool or a float is not a count — the primitive's body only decides
legality, and any exception from it other than ScheduleError is a bug in it, not a bad step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

from ..ir.stmt import Function
from .loops import ScheduleError

F = TypeVar("F", bound=Callable[..., Function])

# Counts beyond this are refused outright: no loop or tensor is that large, and an int64 must hold them.
MAX_COUNT = 2**62


@dataclass(frozen=True)
class Param:
    kind: "Kind"
    doc: str                  # what this parameter means for this primitive
    required: bool = True


@dataclass(frozen=True)
class Kind:
    name: str                 # "loop", "tensor", "loops", "count", "index"
    meaning: str              # what a value of this kind is, for error messages
    short: str                # the same in a few words, for the LLM's vocabulary

    def __call__(self, doc: str, required: bool = True) -> Param:
        return Param(self, doc, required)

    def accepts(self, value: Any) -> bool:
        if self.name in ("loop", "tensor"):
            return isinstance(value, str) and value != ""
        if self.name == "loops":
            return isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value)
        return isinstance(value, int) and not isinstance(value, bool) and \
            (1 if self.name == "count" else 0) <= value <= MAX_COUNT

    def json_schema(self, loops: Optional[list[str]] = None, tensors: Optional[list[str]] = None) -> dict:
        """The JSON schema of one value; loop and tensor names become enums when they are given."""
        def name(names: Optional[list[str]]) -> dict:
            return {"type": "string", "enum": list(names)} if names else {"type": "string", "minLength": 1}
        if self.name == "loop":
            return name(loops)
        if self.name == "tensor":
            return name(tensors)
        if self.name == "loops":
            return {"type": "array", "items": name(loops), "minItems": 2}
        return {"type": "integer", "minimum": 1 if self.name == "count" else 0, "maximum": MAX_COUNT}


LOOP = Kind("loop", "a loop name (a string)", "loop name")
TENSOR = Kind("tensor", "a tensor name (a string)", "tensor name")
LOOPS = Kind("loops", "a list of loop names (strings)", "list of loop names")
COUNT = Kind("count", "a positive integer (at most 2**62; more than a loop's extent means the whole loop)",
             "positive int")
INDEX = Kind("index", "a non-negative integer", "int >= 0")


@dataclass(frozen=True)
class Primitive:
    """A registered schedule primitive: call it as the function it wraps, ``p(func, **args)``."""

    name: str
    function: Callable[..., Function]
    params: dict[str, Param]
    summary: str              # what it does (the docstring before "Legal when:")
    legality: str             # when it applies (the docstring's "Legal when:" paragraph)

    def __call__(self, func: Function, **args: Any) -> Function:
        return self.function(func, **args)

    def signature(self) -> str:
        """``split(loop, factor=None, nparts=None)``."""
        return f"{self.name}(" + ", ".join(p if param.required else f"{p}=None"
                                           for p, param in self.params.items()) + ")"

    def step_schema(self, loops: Optional[list[str]] = None, tensors: Optional[list[str]] = None) -> dict:
        """The JSON schema of one step of this primitive: ``{"op": name, <param>: <value>...}``."""
        properties: dict[str, Any] = {"op": {"const": self.name}}
        properties.update({p: param.kind.json_schema(loops, tensors) for p, param in self.params.items()})
        return {"type": "object", "properties": properties,
                "required": ["op"] + [p for p, param in self.params.items() if param.required],
                "additionalProperties": False}


REGISTRY: dict[str, Primitive] = {}


def primitive(**params: Param) -> Callable[[F], F]:
    """Declare and register a primitive: its parameters (in its signature's order) and their kinds."""
    def declare(function: F) -> F:
        doc = " ".join((function.__doc__ or "").split())
        summary, _, legality = doc.partition("Legal when:")
        REGISTRY[function.__name__] = Primitive(function.__name__, function, params, summary.strip(),
                                                legality.strip())
        return function
    return declare


def check_arguments(primitive: Primitive, args: dict[str, Any]) -> None:
    """Every argument is a declared parameter of its kind; every required parameter is given."""
    op, params = primitive.name, primitive.params
    unknown = [k for k in args if k not in params]
    if unknown:
        raise ScheduleError(f"{op} takes {', '.join(params)}; not {', '.join(unknown)}")
    missing = [p for p, param in params.items() if param.required and p not in args]
    if missing:
        raise ScheduleError(f"{op} needs {', '.join(missing)}")
    for name, value in args.items():
        kind = params[name].kind
        if (value is not None or params[name].required) and not kind.accepts(value):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
            raise ScheduleError(f"{op}: {name} must be {kind.meaning}, got {shown}")


def count_params() -> tuple[str, ...]:
    """Names of the numeric parameters a search may mutate (kind count), in declaration order."""
    names = [p for prim in REGISTRY.values() for p, param in prim.params.items() if param.kind is COUNT]
    return tuple(dict.fromkeys(names))


def params_of_kind(*kinds: Kind) -> set[str]:
    return {p for prim in REGISTRY.values() for p, param in prim.params.items() if param.kind in kinds}
