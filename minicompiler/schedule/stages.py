"""compute_inline and compute_at: where an intermediate tensor is computed.

compute_inline("E") replaces every read of E by E's defining expression and drops E.
compute_at("S", at="i") moves the nests computing S into loop ``i`` of its consumer and
shrinks them, and S's storage, to the part one iteration of ``i`` reads:
for attention, one row of scores instead of the whole score matrix.
"""
from __future__ import annotations

from ..ir.expr import Expr, Load, Var, const
from ..ir.stmt import Accumulate, Alloc, For, Function, Seq, Stmt, Store, seq
from ..ir.tensor import Tensor
from ..ir.visitor import Mutator, substitute, walk
from .cache import _Retarget, find_tensor
from .loops import ScheduleError, find_loop, replace_stmt
from .params import LOOP, TENSOR, primitive
from .regions import accesses, region_in


def _producer_nests(func: Function, tensor: Tensor) -> tuple[Alloc, list[For]]:
    """The Alloc of an intermediate tensor and the top-level nests in it that write the tensor."""
    alloc = next((n for n in walk(func.body) if isinstance(n, Alloc) and n.tensor is tensor), None)
    if alloc is None:
        raise ScheduleError(f"{tensor.name} is not an intermediate tensor of this program")
    if tensor.name not in func.stages:
        raise ScheduleError(f"{tensor.name} is a buffer a schedule step added (cache_write or pack), not a "
                            f"stage defined by compute(); compute_at / compute_inline move stages")
    nests = [s for s in _flatten(alloc.body) if isinstance(s, For) and any(
        isinstance(w, (Store, Accumulate)) and w.tensor is tensor for w in walk(s))]
    for nest in nests:
        if any(isinstance(w, (Store, Accumulate)) and w.tensor is not tensor for w in walk(nest)):
            raise ScheduleError(f"the loops computing {tensor.name} also compute other tensors")
    all_writes = sum(1 for w in walk(alloc.body) if isinstance(w, (Store, Accumulate)) and w.tensor is tensor)
    if not nests or all_writes != sum(1 for n in nests for w in walk(n)
                                      if isinstance(w, (Store, Accumulate)) and w.tensor is tensor):
        raise ScheduleError(f"{tensor.name} is written outside the loops that define it (a cache_write "
                            f"accumulator or a packed copy?); compute_at / compute_inline move stages "
                            f"defined by compute()")
    return alloc, nests


def _flatten(s: Stmt) -> list[Stmt]:
    """Statements of a body, looking through the Allocs of later intermediates."""
    if isinstance(s, Seq):
        return [x for c in s.stmts for x in _flatten(c)]
    if isinstance(s, Alloc):
        return _flatten(s.body)
    return [s]


def _spatial_loops(nest: For, tensor: Tensor) -> list[For]:
    """The loops of an untransformed producer nest that run over the tensor's dimensions, in order."""
    chain, node = [], nest
    while isinstance(node, For) and len(chain) < tensor.ndim:
        chain.append(node)
        node = node.body
    writes = [w for w in walk(nest) if isinstance(w, (Store, Accumulate))]
    if len(chain) != tensor.ndim or any(w.indices != tuple(l.var for l in chain) for w in writes):
        raise ScheduleError(f"{tensor.name}'s loops were already transformed; compute_at / compute_inline "
                            f"{tensor.name} before scheduling its own loops")
    return chain


def _remove(func: Function, doomed: list[Stmt], alloc: Alloc | None = None) -> Function:
    ids = {id(s) for s in doomed}

    class Remove(Mutator):
        def visit_Seq(self, s: Seq) -> Stmt:
            return seq(*[self.visit(c) for c in s.stmts if id(c) not in ids])

        def visit_Alloc(self, s: Alloc) -> Stmt:
            body = self.visit(s.body)
            return body if s is alloc else Alloc(s.tensor, body)

    return func.with_body(Remove().visit(func.body))


def _check_in_scope(func: Function, reads: Stmt | Expr, places: list[Stmt | Expr], what: str) -> None:
    """Every scratch tensor ``reads`` loads must be allocated around each of ``places``, where
    the reads are about to go (outside its Alloc, the tensor does not exist)."""
    for tensor in {id(n.tensor): n.tensor for n in walk(reads) if isinstance(n, Load)}.values():
        alloc = next((n for n in walk(func.body) if isinstance(n, Alloc) and n.tensor is tensor), None)
        if alloc is None:
            continue  # an input or the output: in scope everywhere
        inside = {id(n) for n in walk(alloc.body)}
        if any(id(place) not in inside for place in places):
            raise ScheduleError(f"{what}: it reads {tensor.name}, which does not exist there (it is allocated "
                                f"in another part of the program)")


def _within(body: Stmt, dims: list[tuple[Expr, int, int, int]]) -> Stmt:
    """Guard ``body`` with ``0 <= index < size`` for each dimension that the box may overrun."""
    from ..ir.stmt import If
    cond = None
    for index, size, lo, extent in dims:
        parts = [index < const(size, "int64")]
        if lo < 0:
            parts.append(index >= const(0, "int64"))
        for part in parts:
            cond = part if cond is None else cond & part
    return If(cond, body) if cond is not None else body


@primitive(tensor=TENSOR("an intermediate tensor defined by compute()"))
def compute_inline(func: Function, tensor: str) -> Function:
    """Substitute the intermediate ``tensor``'s elementwise definition into its readers.

    Legal when: the tensor is elementwise (one assignment, no reduction), defined by compute()
    (not a cache_write accumulator or a packed copy), and its loops are untransformed.
    """
    target = find_tensor(func, tensor)
    alloc, nests = _producer_nests(func, target)
    writes = [w for w in walk(nests[0]) if isinstance(w, (Store, Accumulate))] if len(nests) == 1 else []
    if len(writes) != 1 or not isinstance(writes[0], Store):
        raise ScheduleError(f"compute_inline needs an elementwise tensor (one assignment, no reduction); "
                            f"{tensor} is a reduction — use compute_at")
    loops = _spatial_loops(nests[0], target)
    params = [l.var for l in loops]
    definition = writes[0].value
    _check_in_scope(func, definition, [n for n in walk(func.body) if isinstance(n, Load) and n.tensor is target],
                    f"compute_inline {tensor}")

    class Inline(Mutator):
        def visit_Load(self, n: Load) -> Expr:
            indices = tuple(self.visit(i) for i in n.indices)
            if n.tensor is not target:
                return Load(n.tensor, indices)
            return substitute(definition, dict(zip(params, indices)))

    func = _remove(func, [nests[0]], alloc)
    return func.with_body(Inline().visit(func.body))


@primitive(tensor=TENSOR("an intermediate tensor defined by compute()"),
           at=LOOP("a loop of a consumer, inside which the tensor's part is computed"))
def compute_at(func: Function, tensor: str, at: str) -> Function:
    """Compute the part of the intermediate ``tensor`` that loop ``at`` reads inside ``at``,
    before its body (fusion: the producer runs per iteration of the consumer's loop, and its
    storage shrinks to that part).

    Legal when: the tensor's own loops are untransformed (do it first); ``at`` is a serial loop
    of a consumer; the tensor is not read outside ``at``; it is a stage defined by compute().
    """
    target = find_tensor(func, tensor)
    alloc, nests = _producer_nests(func, target)
    loop = find_loop(func, at)
    if any(loop is n or any(x is loop for x in walk(n)) for n in nests):
        raise ScheduleError(f"{at} is one of {tensor}'s own loops; pick a loop of a consumer")
    if len(accesses(loop.body, target)) != len(accesses(func.body, target)) - \
            sum(len(accesses(n, target)) for n in nests):
        raise ScheduleError(f"compute_at {tensor} at {at}: {tensor} is also read outside {at}; "
                            f"move its other readers into {at} first")
    if loop.kind != "serial":
        raise ScheduleError(f"compute_at into {at}: mark loops after moving stages")
    for nest in nests:
        _check_in_scope(func, nest, [loop], f"compute_at {tensor} at {at}")
    region = region_in(loop.body, target, f"compute_at {tensor} at {at}")
    local = Tensor(target.name, region.extent, target.dtype)
    moved = []
    for nest in nests:
        spatial = _spatial_loops(nest, target)
        starts = {l.var: o + lo if lo else o for l, o, lo in zip(spatial, region.outer, region.lo)}
        inner = spatial[-1].body
        from ..passes.simplify import simplify_expr
        inner = substitute(inner, {v: simplify_expr(v + s) for v, s in starts.items()})
        inner = _Retarget(target, local, lambda idx: tuple(l.var for l in spatial)).visit(inner)
        # The region is a box from the consumer's loop ranges; at the tensor's edges (a tail tile,
        # a stencil's halo) part of it lies outside the tensor: those points are never read, and
        # computing them could read outside the producer's own inputs.
        inner = _within(inner, [(simplify_expr(l.var + starts[l.var]), n, lo, extent)
                                for l, n, lo, extent in zip(spatial, target.shape, region.lo, region.extent)])
        for l, extent in zip(reversed(spatial), reversed(region.extent)):
            inner = For(l.var, const(extent, "int64"), inner, l.kind)
        moved.append(inner)
    shift = {d: o + lo if lo else o for d, (o, lo) in enumerate(zip(region.outer, region.lo))}

    def to_local(idx: tuple[Expr, ...]) -> tuple[Expr, ...]:
        from ..passes.simplify import simplify_expr
        return tuple(simplify_expr(i - shift[d]) for d, i in enumerate(idx))

    func = _remove(func, nests, alloc)
    loop = find_loop(func, at)
    return replace_stmt(func, loop, lambda old: For(
        old.var, old.extent, Alloc(local, seq(*moved, _Retarget(target, local, to_local).visit(old.body))),  # type: ignore[attr-defined]
        old.kind))  # type: ignore[attr-defined]
