"""JIT compilation of LLVM modules, and Kernel: the checked, callable result of ``build``.

Each compiled module gets its own MCJIT engine and its own TargetMachine (an engine
owns the machine it is given; sharing one between engines crashes LLVM). Compiled
code is cached by the program's text and the target, so rebuilding the same program
costs a dictionary lookup.
"""
from __future__ import annotations

import ctypes
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import llvmlite.binding as llvm
import numpy as np

from ..codegen.llvm import OUT_OF_MEMORY, emit_llvm, symbol_name
from ..dtypes import itemsize
from ..ir.stmt import Alloc, Function
from ..ir.visitor import walk
from ..target import Target


@dataclass
class CompiledModule:
    function_name: str
    llvm_ir: str             # as emitted, before optimisation
    optimized_ir: str
    address: int
    target: Target
    compile_seconds: float
    engine: Any = field(repr=False)  # keeps the machine code alive

    def assembly(self) -> str:
        module = llvm.parse_assembly(self.optimized_ir)
        return self.target.create_target_machine().emit_assembly(module)


def optimize(module: llvm.ModuleRef, machine: llvm.TargetMachine, level: int = 3,
             loop_vectorization: bool = True) -> None:
    options = llvm.create_pipeline_tuning_options(speed_level=level)
    options.loop_vectorization = loop_vectorization
    options.slp_vectorization = True
    builder = llvm.create_pass_builder(machine, options)
    builder.getModulePassManager().run(module, builder)


def optimized_module(func: Function, target: Target) -> tuple[str, llvm.ModuleRef, llvm.TargetMachine]:
    """Emit, verify and optimise ``func`` for ``target``: (IR as emitted, optimised module, its machine)."""
    text = str(emit_llvm(func, target))
    module = llvm.parse_assembly(text)
    module.verify()
    machine = target.create_target_machine()
    module.triple = target.triple
    module.data_layout = str(machine.target_data)
    # LLVM's loop vectorizer (llvmlite's build keeps assertions) aborts the process on some aarch64
    # loops ("VPlan cost model and legacy cost model disagreed", found by tests/fuzz.py): for ARM
    # the vector code is ours alone (vectorize steps), never LLVM's auto-vectorized loops.
    arm = target.triple.startswith(("aarch64", "arm64"))
    optimize(module, machine, loop_vectorization=not arm)
    return text, module, machine


def cross_assembly(func: Function, target: Target) -> str:
    """Assembly for any target LLVM knows (e.g. aarch64 from an x86 host); nothing is run."""
    _, module, machine = optimized_module(func, target)
    return machine.emit_assembly(module)


def compile_function(func: Function, target: Target) -> CompiledModule:
    """Emit, verify, optimise and JIT ``func`` for ``target`` (which must be this host to run)."""
    start = time.perf_counter()
    text, module, machine = optimized_module(func, target)
    optimized = str(module)
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    address = engine.get_function_address(symbol_name(func))
    return CompiledModule(func.name, text, optimized, address, target, time.perf_counter() - start, engine)


_cache: dict[tuple[str, str], CompiledModule] = {}
_cache_lock = threading.Lock()


def compile_cached(func: Function, target: Target) -> CompiledModule:
    key = (str(func), target.key())
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    compiled = compile_function(func, target)
    with _cache_lock:
        return _cache.setdefault(key, compiled)


class Kernel:
    """A compiled program: call it with numpy arrays for its inputs; it returns the output."""

    def __init__(self, func: Function, compiled: CompiledModule) -> None:
        self.func = func
        self.compiled = compiled
        self.input_specs = [(t.name, t.shape, np.dtype(t.dtype)) for t in func.inputs]
        (output,) = func.outputs
        self.output_shape, self.output_dtype = output.shape, np.dtype(output.dtype)
        self._cfunc = ctypes.CFUNCTYPE(ctypes.c_int32, *[ctypes.c_void_p] * len(func.params))(compiled.address)

    # What a reader wants to see of a kernel.
    @property
    def ir(self) -> str:
        return str(self.func)

    @property
    def llvm_ir(self) -> str:
        return self.compiled.llvm_ir

    @property
    def optimized_llvm_ir(self) -> str:
        return self.compiled.optimized_ir

    @property
    def assembly(self) -> str:
        return self.compiled.assembly()

    def __repr__(self) -> str:
        args = ", ".join(f"{n}: {d}{list(s)}" for n, s, d in self.input_specs)
        return f"<Kernel {self.func.name}({args}) -> {self.output_dtype}{list(self.output_shape)}>"

    def check_arguments(self, arrays: tuple[Any, ...]) -> None:
        if len(arrays) != len(self.input_specs):
            names = ", ".join(n for n, _, _ in self.input_specs)
            raise TypeError(f"{self.func.name} takes {len(self.input_specs)} array(s) ({names}), "
                            f"got {len(arrays)}")
        for a, (name, shape, dtype) in zip(arrays, self.input_specs):
            self._check_one(a, name, shape, dtype)

    def _check_one(self, a: Any, name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        if not isinstance(a, np.ndarray):
            raise TypeError(f"argument {name} must be a numpy array, got {type(a).__name__}")
        if a.dtype != dtype:
            raise TypeError(f"argument {name} must have dtype {dtype}, got {a.dtype}; "
                            f"convert with .astype(np.{dtype})")
        if a.shape != shape:
            raise ValueError(f"argument {name} must have shape {shape}, got {a.shape}")
        if not a.flags.c_contiguous:
            raise ValueError(f"argument {name} must be C-contiguous; pass np.ascontiguousarray({name})")
        if not a.flags.aligned:
            raise ValueError(f"argument {name} is not aligned to its element size; pass a copy")

    def __call__(self, *arrays: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        self.check_arguments(arrays)
        if out is None:
            out = np.empty(self.output_shape, self.output_dtype)
        else:
            self._check_one(out, "out", self.output_shape, self.output_dtype)
            if not out.flags.writeable or any(np.shares_memory(out, a) for a in arrays):
                raise ValueError("out must be writeable and must not overlap an input")
        self.run_unchecked(arrays, out)  # type: ignore[arg-type]
        return out

    def run_unchecked(self, arrays: list[np.ndarray] | tuple[np.ndarray, ...], out: np.ndarray) -> None:
        """Call without checks: for callers (einsum, the measurer) that validated the signature once."""
        if self._cfunc(*[a.ctypes.data for a in arrays], out.ctypes.data) == OUT_OF_MEMORY:
            raise MemoryError(f"{self.func.name}: a scratch tensor could not be allocated "
                              f"({self.scratch_bytes() / 2**20:.1f} MiB of scratch in all); use smaller "
                              f"pack / cache_write tiles")

    def scratch_bytes(self) -> int:
        """Bytes of every scratch tensor the kernel allocates (once each; parallel bodies once per thread)."""
        return sum(n.tensor.size * itemsize(n.tensor.dtype) for n in walk(self.func.body) if isinstance(n, Alloc))
