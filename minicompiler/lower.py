"""The lowering pipeline, top to bottom: a (scheduled) loop nest → passes → LLVM → Kernel.

    lower(C or schedule)  →  Function   (what codegen sees; print it)
    build(C or schedule)  →  Kernel     (what you call with numpy arrays)

The passes, in order:
  partition_tails   guard-free main loops + tails, for factors that do not divide extents
  legalize_vectors  vectorized loops wider than a register: unrolled register-wide pieces
  simplify          index arithmetic, decided guards, loops that run once; tail guards become shorter loops
  check_code_size   a schedule that would unroll into too much code is refused here (ScheduleError)
  unroll_loops      loops marked unrolled become copies of their bodies
  simplify          constants propagate into the copies
  vectorize_loops   loops marked vectorized become vector statements
  simplify          fold what widening left (ramp bases)
Parallel loops are outlined by the emitter (codegen/llvm.py) onto the OpenMP runtime.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

from .ir.stmt import Function
from .ir.tensor import Tensor
from .passes.legalize import legalize_vectors
from .passes.partition import partition_tails
from .passes.simplify import simplify
from .passes.unroll import unroll_loops
from .passes.vectorize import vectorize_loops
from .runtime.jit import Kernel, compile_cached, cross_assembly
from .schedule import Schedule, ScheduleError
from .schedule.annotate import MAX_UNROLLED_SIZE, unrolled_size
from .target import Target

Program = Union[Tensor, Schedule]


def lower_function(func: Function, target: Optional[Target] = None) -> Function:
    func = partition_tails(func)
    func = legalize_vectors(func, target or Target.host())
    func = simplify(func)  # type: ignore[assignment]
    check_code_size(func)
    func = unroll_loops(func)
    func = simplify(func)  # type: ignore[assignment]
    func = vectorize_loops(func)
    return simplify(func)  # type: ignore[return-value]


def check_code_size(func: Function) -> None:
    """Refuse, before unrolling, a program that would unroll into more code than is worth building.

    ``unroll`` checks each step as it is made; steps after it (compute_at into unrolled loops,
    tails that copy a loop body) can still grow the code, so the pipeline checks once more, with
    room for the tail copies."""
    size = unrolled_size(func.body)
    if size > 4 * MAX_UNROLLED_SIZE:
        raise ScheduleError(f"{func.name}: once unrolled, this schedule is {size} IR nodes of code "
                            f"(at most {4 * MAX_UNROLLED_SIZE}); unroll fewer loops, or by smaller factors")


def lower(program: Program, inputs: Optional[Sequence[Tensor]] = None, name: Optional[str] = None,
          target: Optional[Target] = None) -> Function:
    """The loop-nest program that computes a tensor (default schedule) or a Schedule, fully lowered."""
    if isinstance(program, Schedule):
        return lower_function(program.func, target)
    if not isinstance(program, Tensor):
        raise TypeError(f"lower() takes a tensor or a Schedule, got {type(program).__name__}")
    return lower_function(Schedule(program, inputs, name=name).func, target)


def build(program: Program, inputs: Optional[Sequence[Tensor]] = None, target: Optional[Target] = None,
          name: Optional[str] = None) -> Kernel:
    """Compile a tensor or a Schedule into a Kernel taking the placeholders (in creation order, or ``inputs``)."""
    target = target or Target.host()
    if not target.is_host:
        raise ValueError(f"cannot run code for {target.triple} on this host; use "
                         f"minicompiler.assembly(program, target) to inspect it")
    func = lower(program, inputs, name, target)
    return Kernel(func, compile_cached(func, target))


def assembly(program: Program, target: Optional[Target] = None, inputs: Optional[Sequence[Tensor]] = None) -> str:
    """The machine code for ``program`` on ``target`` (any LLVM target, e.g. ``Target.aarch64()``)."""
    target = target or Target.host()
    return cross_assembly(lower(program, inputs, target=target), target)
