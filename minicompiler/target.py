"""The target description: what the code generator and the search need to know about a CPU.

``Target.host()`` reads this machine (via LLVM's host detection and Linux's sysfs);
any field can be overridden, e.g. ``Target.aarch64()`` to emit NEON code from an x86 host.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import lru_cache

import llvmlite.binding as llvm


def _init_llvm() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


def _cache_bytes(level: int, kind: str) -> int:
    """Size of the cache at ``level`` from sysfs, 0 if unknown."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            path = os.path.join(base, entry)
            with open(os.path.join(path, "level")) as f:
                if int(f.read()) != level:
                    continue
            with open(os.path.join(path, "type")) as f:
                if f.read().strip() not in (kind, "Unified"):
                    continue
            with open(os.path.join(path, "size")) as f:
                text = f.read().strip()
            units = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
            return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
    except (OSError, ValueError):
        pass
    return 0


# Full-width vector FMAs a core issues per cycle, by LLVM CPU name: Intel's server cores have two
# 512-bit FMA ports, Zen 4 runs a 512-bit FMA as two halves on its two 256-bit pipes (one per
# cycle), Zen 5 has full 512-bit pipes. Unknown CPUs: 2 (what most cores of the last decade have
# at their native width). The register tile needs units x latency independent accumulators.
_FMA_UNITS = {"znver4": 1, "knl": 2, "skylake-avx512": 2, "cascadelake": 2, "cooperlake": 2,
              "icelake-server": 2, "sapphirerapids": 2, "emeraldrapids": 2, "graniterapids": 2,
              "znver5": 2, "znver3": 2, "neoverse-v1": 2, "neoverse-n1": 2, "neoverse-v2": 4}


def _vector_bits(triple: str, features: str) -> int:
    if triple.startswith(("aarch64", "arm64")):
        return 128
    enabled = {f[1:] for f in features.split(",") if f.startswith("+")}
    if "avx512f" in enabled:
        return 512
    if "avx2" in enabled or "avx" in enabled:
        return 256
    return 128


@dataclass(frozen=True)
class Target:
    triple: str
    cpu: str
    features: str
    vector_bits: int
    cores: int
    l1_bytes: int = 32 * 1024
    l2_bytes: int = 1024 * 1024
    l3_bytes: int = 8 * 1024 * 1024
    fma_units: int = 2       # full-width vector FMAs issued per cycle
    fma_latency: int = 4     # cycles from an FMA's inputs to its result

    @staticmethod
    @lru_cache(maxsize=1)
    def host() -> "Target":
        _init_llvm()
        triple = llvm.get_process_triple()
        features = llvm.get_host_cpu_features().flatten()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return Target(triple=triple, cpu=llvm.get_host_cpu_name(), features=features,
                      vector_bits=_vector_bits(triple, features), cores=cores,
                      l1_bytes=_cache_bytes(1, "Data") or 32 * 1024,
                      l2_bytes=_cache_bytes(2, "Unified") or 1024 * 1024,
                      l3_bytes=_cache_bytes(3, "Unified") or 8 * 1024 * 1024,
                      fma_units=_FMA_UNITS.get(llvm.get_host_cpu_name(), 2))

    @staticmethod
    def aarch64(cpu: str = "neoverse-v1", cores: int = 4) -> "Target":
        return Target("aarch64-unknown-linux-gnu", cpu, "+neon,+fp-armv8", 128, cores,
                      fma_units=_FMA_UNITS.get(cpu, 2))

    def with_(self, **changes: object) -> "Target":
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def is_host(self) -> bool:
        return self == Target.host()

    def vector_lanes(self, dtype: str) -> int:
        from .dtypes import itemsize
        return max(1, self.vector_bits // (8 * itemsize(dtype)))

    def key(self) -> str:
        """What distinguishes compiled code for this target (cache and database key)."""
        return f"{self.triple}|{self.cpu}|{self.vector_bits}"

    def create_target_machine(self) -> llvm.TargetMachine:
        """A new TargetMachine: an MCJIT engine takes ownership of the one it is given."""
        _init_llvm()
        if not self.is_host:
            llvm.initialize_all_targets()
            llvm.initialize_all_asmprinters()
        target = llvm.Target.from_triple(self.triple)
        return target.create_target_machine(cpu=self.cpu, features=self.features, opt=3,
                                            reloc="default", codemodel="jitdefault")

    def describe(self) -> str:
        return (f"{self.cpu} ({self.triple}), {self.vector_bits}-bit vectors, {self.cores} cores, "
                f"L1d {self.l1_bytes // 1024} KiB, L2 {self.l2_bytes // 1024} KiB, L3 {self.l3_bytes // 2**20} MiB, "
                f"{self.fma_units} FMA unit(s)")
