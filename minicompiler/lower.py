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

from typing import Callable, Optional, Sequence, Union

from .ir.stmt import Function
from .ir.tensor import Tensor
from .passes.legalize import legalize_vectors
from .passes.partition import partition_tails
from .passes.simplify import simplify
from .passes.unroll import unroll_loops
from .passes.vectorize import vectorize_loops
from .runtime.jit import Kernel, compile_cached, cross_assembly
from .schedule import Schedule, ScheduleError
from .schedule.explain import Change
from .schedule.annotate import MAX_UNROLLED_SIZE, unrolled_size
from .target import Target

Program = Union[Tensor, Schedule]


def passes(target: Optional[Target] = None) -> list[tuple[str, str, Callable[[Function], Function]]]:
    """The pipeline, in order: (name, what it does in a sentence, the pass)."""
    target = target or Target.host()
    return [
        ("partition_tails", "Loops whose factor does not divide the extent become a guard-free main loop "
                            "and a tail.", partition_tails),
        ("legalize_vectors", f"Vectorized loops wider than a {target.vector_bits}-bit register become "
                             f"register-wide pieces.", lambda f: legalize_vectors(f, target)),
        ("simplify", "Index arithmetic folds, decided guards and loops that run once disappear.", simplify),
        ("check_code_size", "A schedule that would unroll into too much code is refused here.", _checked),
        ("unroll_loops", "Loops marked unrolled become copies of their bodies.", unroll_loops),
        ("simplify", "Constants propagate into the unrolled copies.", simplify),
        ("vectorize_loops", "Loops marked vectorized become vector statements (one per register).",
         vectorize_loops),
        ("simplify", "What widening left (ramp bases) folds.", simplify),
    ]


def lower_function(func: Function, target: Optional[Target] = None) -> Function:
    for _, _, apply in passes(target):
        func = apply(func)
    return func


def explain_lowering(program: "Program", target: Optional[Target] = None) -> list[Change]:
    """One Change per pass of the pipeline: the program before and after it (``explain --lowered``).
    Parallel loops are outlined later, by the emitter, and show as ``parallel`` loops here."""
    func = program.func if isinstance(program, Schedule) else Schedule(program).func
    changes = []
    for number, (name, what, apply) in enumerate(passes(target), start=1):
        following = apply(func)
        changes.append(Change(f"pass {number}: {name}", what, str(func), str(following)))
        func = following
    return changes


def _checked(func: Function) -> Function:
    check_code_size(func)
    return func


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
