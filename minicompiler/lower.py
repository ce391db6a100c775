"""The lowering pipeline, top to bottom: tensor definitions → loop nest → passes → LLVM → Kernel.

    lower(C)  →  Function   (what ``print`` shows)
    build(C)  →  Kernel     (what you call with numpy arrays)
"""
from __future__ import annotations

from typing import Optional, Sequence

from .ir.stmt import Function
from .ir.tensor import Tensor
from .passes.loop_nest import default_loop_nest
from .passes.simplify import simplify
from .runtime.jit import Kernel, compile_cached
from .target import Target


def lower(tensor: Tensor, inputs: Optional[Sequence[Tensor]] = None, name: Optional[str] = None) -> Function:
    """The loop-nest program that computes ``tensor`` (default schedule)."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"lower() takes a tensor made by placeholder/compute/einsum, got {type(tensor).__name__}")
    func = default_loop_nest(tensor, inputs, name)
    func = simplify(func)  # type: ignore[assignment]
    return func  # type: ignore[return-value]


def build(tensor: Tensor, inputs: Optional[Sequence[Tensor]] = None, target: Optional[Target] = None,
          name: Optional[str] = None) -> Kernel:
    """Compile ``tensor`` into a Kernel taking its placeholders (in creation order, or ``inputs``)."""
    target = target or Target.host()
    if not target.is_host:
        raise ValueError(f"cannot run code for {target.triple} on this host; use "
                         f"minicompiler.codegen.emit_assembly to inspect it")
    func = lower(tensor, inputs, name)
    return Kernel(func, compile_cached(func, target))
