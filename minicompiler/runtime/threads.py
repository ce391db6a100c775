"""The thread pool behind parallel loops: the OpenMP runtime (libgomp).

Why libgomp: a parallel loop is outlined into a function and handed to ``GOMP_parallel``,
whose team of threads persists between calls and spins briefly before sleeping, so a
parallel region costs a few microseconds, not the tens that creating threads would.
It ships with gcc on every Linux we target (Debian's libgomp1). If it cannot be loaded,
parallel loops run serially and ``parallel_runtime_available()`` says so.

The thread count is a run-time setting: ``set_num_threads(n)`` (default: OMP_NUM_THREADS,
else all cores).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import lru_cache
from typing import Optional

import llvmlite.binding as llvm

_CANDIDATES = ("libgomp.so.1", "libgomp.so", "libgomp.1.dylib")


@lru_cache(maxsize=1)
def _libgomp() -> Optional[ctypes.CDLL]:
    names = list(_CANDIDATES)
    found = ctypes.util.find_library("gomp")
    if found:
        names.insert(0, found)
    for name in names:
        try:
            lib = ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        path = name
        try:
            llvm.load_library_permanently(path)  # makes GOMP_parallel visible to the JIT's linker
        except RuntimeError:
            pass
        return lib
    return None


def parallel_runtime_available() -> bool:
    return _libgomp() is not None


def check_thread_count(n: object) -> int:
    """``n`` if it is a positive integer, else a ValueError that says so."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"the thread count must be a positive integer, got {n!r}")
    return n


def set_num_threads(n: int) -> None:
    """Threads used by parallel loops called from this thread from now on."""
    check_thread_count(n)
    lib = _libgomp()
    if lib is not None:
        lib.omp_set_num_threads(ctypes.c_int(n))


def get_num_threads() -> int:
    lib = _libgomp()
    return int(lib.omp_get_max_threads()) if lib is not None else 1


def default_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else (len(os.sched_getaffinity(0))
                                                             if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
