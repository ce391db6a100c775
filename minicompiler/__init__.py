"""minicompiler: a scheduling compiler for tensor kernels on CPUs.

    import minicompiler as mc
    A = mc.placeholder((64, 32), name="A"); B = mc.placeholder((32, 48), name="B")
    C = mc.einsum("ik,kj->ij", A, B)          # symbolic
    print(mc.lower(C))                         # the loop nest
    kernel = mc.build(C)                       # JIT-compiled
    kernel(a, b)                               # numpy in, numpy out
    mc.einsum("ik,kj->ij", a, b)               # or straight on arrays, like numpy.einsum
"""
from .frontend.compute import (abs, as_dtype, compute, equal, exp, log, max, maximum, min, minimum,
                               not_equal, placeholder, reduce_axis, sqrt, sum, tanh, where)
from .frontend.einsum import einsum
from .ir.expr import cast
from .ir.tensor import Tensor
from .lower import assembly, build, lower
from .runtime.jit import Kernel
from .runtime.threads import get_num_threads, set_num_threads
from .schedule import Schedule, ScheduleError, Step
from .target import Target



def tune(tensor, budget: int = 64, strategy: str = "mcts", proposer="heuristic", database=None,  # noqa: ANN001
         seed=None, threads=None, **options):  # noqa: ANN001, ANN003, ANN201
    """Search for a fast schedule of ``tensor`` by measuring ``budget`` candidates (see ``search.tune``)."""
    from minicompiler.search.tune import tune as _tune
    return _tune(tensor, budget=budget, strategy=strategy, proposer=proposer, database=database,
                 seed=seed, threads=threads, **options)


__all__ = ["placeholder", "compute", "reduce_axis", "sum", "max", "min", "exp", "log", "sqrt", "tanh",
           "abs", "maximum", "minimum", "equal", "not_equal", "where", "cast", "as_dtype", "einsum",
           "build", "lower", "assembly", "Kernel", "Target", "Tensor", "Schedule", "ScheduleError", "Step",
           "set_num_threads", "get_num_threads", "tune"]
