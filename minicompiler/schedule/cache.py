"""cache_write and pack: new storage that makes the inner loops cheap.

cache_write("C", at="j_o") — a local accumulator (register tiling). Inside one iteration
of ``j_o`` the tile of C it updates is kept in a small local tensor ``C_local``; after
unroll + vectorize it lives in registers across the whole reduction loop:

    for j_o ...:
      C_local = empty([6, 32])
      C_local[...] = 0.0            # or a copy of C, if part of the reduction runs outside j_o
      ... C_local[i_i, j_i] += ...
      C[...] = C_local[...]         # write-back, guarded at the tensor's edges

pack("B", dim=1, factor=32) — a packed copy of an input in panel layout:
B[k, j] is read as B_packed[j // 32, k, j % 32], so the 32 columns a micro-kernel
reads for one k are contiguous, and successive k are adjacent.
"""
from __future__ import annotations

from typing import Optional, Sequence

from ..ir.expr import Const, Expr, Load, Var, const, select
from ..ir.stmt import Accumulate, Alloc, For, Function, If, Prefetch, Seq, Stmt, Store, seq
from ..ir.tensor import Tensor
from ..ir.visitor import Mutator, substitute, walk
from ..passes.loop_nest import reduction_identity
from .loops import ScheduleError, enclosing_loops, find_loop, fresh_name, free_vars, replace_stmt, used_names
from .params import COUNT, INDEX, LOOP, TENSOR, primitive
from .regions import Region, accesses, region_in, writes_cover


def find_tensor(func: Function, name: str) -> Tensor:
    for t in func.params:
        if t.name == name:
            return t
    for n in walk(func.body):
        if isinstance(n, Alloc) and n.tensor.name == name:
            return n.tensor
    names = [t.name for t in func.params] + [n.tensor.name for n in walk(func.body) if isinstance(n, Alloc)]
    raise ScheduleError(f"no tensor named {name!r}; the tensors are: {', '.join(names)}")


class _Retarget(Mutator):
    """Accesses of ``old`` become accesses of ``new`` at ``index(old_indices)``."""

    def __init__(self, old: Tensor, new: Tensor, index) -> None:  # noqa: ANN001
        super().__init__()
        self.old, self.new, self.index = old, new, index

    def visit_Load(self, n: Load) -> Expr:
        indices = tuple(self.visit(i) for i in n.indices)
        return Load(self.new, self.index(indices)) if n.tensor is self.old else Load(n.tensor, indices)

    def visit_Store(self, n: Store) -> Stmt:
        value = self.visit(n.value)
        return Store(self.new, self.index(n.indices), value) if n.tensor is self.old else Store(n.tensor, n.indices, value)

    def visit_Accumulate(self, n: Accumulate) -> Stmt:
        value = self.visit(n.value)
        if n.tensor is self.old:
            return Accumulate(self.new, self.index(n.indices), n.op, value)
        return Accumulate(n.tensor, n.indices, n.op, value)


def copy_nest(region: Region, names: list[str], make) -> Stmt:  # noqa: ANN001
    """Loops over a region's box, guarded at the tensor's edges; ``make(global_idx, local_idx)``."""
    local = [Var(n) for n in names]
    global_ = [o + l + lo if lo else o + l for o, l, lo in zip(region.outer, local, region.lo)]
    local_idx = tuple(local)
    body = make(tuple(global_), local_idx)
    for var, extent in zip(reversed(local), reversed(region.extent)):
        body = For(var, const(extent, "int64"), body)
    return body


def _guarded(tensor: Tensor, index: tuple[Expr, ...], stmt: Stmt, extra: Sequence[Expr] = ()) -> Stmt:
    """``stmt`` under ``index < tensor.shape`` (and the ``extra`` conditions), if there are any."""
    cond = None
    for c in [i < const(extent, "int64") for i, extent in zip(index, tensor.shape)] + list(extra):
        cond = c if cond is None else cond & c
    return If(cond, stmt) if cond is not None else stmt


@primitive(tensor=TENSOR("the tensor being accumulated (the output, or an intermediate)"),
           at=LOOP("the loop inside which its tile is kept"))
def cache_write(func: Function, tensor: str, at: str) -> Function:
    """Accumulate ``tensor``'s tile in a local buffer <tensor>_local inside loop ``at`` and write
    it back once: with unroll + vectorize of the tile loops it lives in registers (register
    tiling). Creates loops <tensor>_local_c0.. (init) and <tensor>_local_w0.. (write-back).

    Legal when: the tensor is written inside ``at``; ``at`` is serial (cache before marking
    loops, after tiling); the loop does not also read the tensor other than to accumulate.
    """
    target = find_tensor(func, tensor)
    loop = find_loop(func, at)
    if loop.kind != "serial":
        raise ScheduleError(f"cache_write at {at}: mark loops after caching")
    writes = [a for a in accesses(loop.body, target) if isinstance(a, (Store, Accumulate))]
    if not writes:
        raise ScheduleError(f"cache_write: {tensor} is not written inside {at}")
    region = region_in(loop.body, target, f"cache_write {tensor} at {at}")
    if any(lo != 0 for lo in region.lo):
        raise ScheduleError(f"cache_write {tensor} at {at}: the tile does not start at the loop's origin")
    if any(isinstance(n, Load) and n.tensor is target for n in walk(loop.body)) and \
            not all(isinstance(w, Accumulate) for w in writes):
        raise ScheduleError(f"cache_write {tensor} at {at}: the loop reads {tensor} as well as writing it")

    taken = used_names(func)
    local = Tensor(fresh_name(taken, f"{tensor}_local"), region.extent, target.dtype)
    # Loops around the Alloc of a stage each compute a fresh copy of it: not reductions. (Not so
    # for a buffer that an earlier cache_write added: it starts from the tensor it caches.)
    around = enclosing_loops(func, loop)
    alloc = next((n for n in walk(func.body) if isinstance(n, Alloc) and n.tensor is target), None)
    if alloc is not None and target.name in func.stages:
        around = [l for l in around if any(x is l for x in walk(alloc.body))]
    outer_vars = {l.var for l in around} | {loop.var}
    # The local tile may start from the reduction's identity only when every loop that
    # reduces into this tile (a loop whose variable no index uses) is inside ``at``.
    index_vars = set().union(*(free_vars(i) for w in writes for i in w.indices))
    reduction_outside = any(v not in index_vars for v in outer_vars)
    ops = {w.op for w in writes if isinstance(w, Accumulate)}
    # ... and only when the body accumulates into every point of the tile: the write-back writes
    # the whole tile, so a point the body skips (a strided index) must hold what C held.
    from_identity = not reduction_outside and len(ops) == 1 and all(isinstance(w, Accumulate) for w in writes) \
        and writes_cover(loop.body, target, region,
                         {l.var for l in enclosing_loops(func, alloc)} if alloc is not None else set())

    def to_local(indices: tuple[Expr, ...]) -> tuple[Expr, ...]:
        from ..passes.simplify import simplify_expr
        return tuple(simplify_expr(i - o) for i, o in zip(indices, region.outer))

    fill_names = [fresh_name(taken, f"{local.name}_c{d}") for d in range(local.ndim)]
    back_names = [fresh_name(taken, f"{local.name}_w{d}") for d in range(local.ndim)]
    if from_identity:
        identity = reduction_identity(ops.pop(), target.dtype)
        fill = copy_nest(region, fill_names, lambda g, l: Store(local, l, identity))
    else:
        fill = copy_nest(region, fill_names, lambda g, l: _guarded(target, g, Store(local, l, Load(target, g))))
    write_back = copy_nest(region, back_names, lambda g, l: _guarded(target, g, Store(target, g, Load(local, l))))
    new_body = _Retarget(target, local, to_local).visit(loop.body)
    func = replace_stmt(func, loop, lambda old: For(old.var, old.extent,  # type: ignore[attr-defined]
                                                    Alloc(local, seq(fill, new_body, write_back)), old.kind))
    return _drop_dead_init(func, target) if from_identity else func


def _drop_dead_init(func: Function, tensor: Tensor) -> Function:
    """Remove the nest that only fills ``tensor`` with a constant: the write-back overwrites it all."""
    class Drop(Mutator):
        def visit_Seq(self, s: Seq) -> Stmt:
            kept = [self.visit(c) for c in s.stmts if not _is_constant_fill(c, tensor)]
            return seq(*kept) if kept else s

    return func.with_body(Drop().visit(func.body))


def _is_constant_fill(s: Stmt, tensor: Tensor) -> bool:
    stores = [n for n in walk(s) if isinstance(n, (Store, Accumulate))]
    return isinstance(s, For) and len(stores) == 1 and isinstance(stores[0], Store) \
        and stores[0].tensor is tensor and not any(isinstance(n, Load) for n in walk(stores[0].value))


@primitive(tensor=TENSOR("a program input"),
           dim=INDEX("the dimension to split into panels (0-based)"),
           factor=COUNT("panel width: elements of dim per panel (a vector-width multiple)"))
def pack(func: Function, tensor: str, dim: int, factor: int) -> Function:
    """Copy input ``tensor`` into panels <tensor>_packed: dimension ``dim`` splits by ``factor``,
    the panel index goes first and the in-panel index last (zero-padded at the edge), so a vector
    loop over that dimension reads contiguous memory (pack B with dim=1 for C = A.B). A factor
    larger than the dimension is the whole dimension (one panel). Creates loops
    <tensor>_packed0.. for the copy (which can be parallelized).

    Legal when: the tensor is a program input (use cache_write for computed tensors) and
    0 <= dim < its number of dimensions.
    """
    target = find_tensor(func, tensor)
    if not any(target is t for t in func.inputs):
        raise ScheduleError(f"pack applies to an input; {tensor} is computed here (use cache_write)")
    if not isinstance(dim, int) or not 0 <= dim < target.ndim:
        raise ScheduleError(f"pack dim must be 0..{target.ndim - 1} for {tensor}, got {dim!r}")
    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
        raise ScheduleError(f"pack factor must be a positive integer, got {factor!r}")
    extent = target.shape[dim]
    factor = min(factor, extent)   # a panel wider than the tensor is the whole dimension
    panels = -(-extent // factor)
    rest = tuple(e for d, e in enumerate(target.shape) if d != dim)
    taken = used_names(func)
    packed = Tensor(fresh_name(taken, f"{tensor}_packed"), (panels,) + rest + (factor,), target.dtype)

    def to_packed(indices: tuple[Expr, ...]) -> tuple[Expr, ...]:
        i = indices[dim]
        others = tuple(x for d, x in enumerate(indices) if d != dim)
        return (i // factor,) + others + (i % factor,)

    names = [fresh_name(taken, f"{packed.name}{d}") for d in range(packed.ndim)]
    loop_vars = [Var(n) for n in names]
    source = list(loop_vars[1:-1])
    source.insert(dim, loop_vars[0] * factor + loop_vars[-1])
    value: Expr = Load(target, tuple(source))
    if extent % factor:
        value = select(source[dim] < const(extent, "int64"), value, const(0, target.dtype))
    fill: Stmt = Store(packed, tuple(loop_vars), value)
    for var, ext in zip(reversed(loop_vars), reversed(packed.shape)):
        fill = For(var, const(ext, "int64"), fill)
    body = _Retarget(target, packed, to_packed).visit(func.body)
    return func.with_body(Alloc(packed, seq(fill, body)))


@primitive(tensor=TENSOR("a tensor the loop reads and does not write (a matrix operand)"),
           at=LOOP("the loop each iteration of which reads its block from the local copy"),
           panel=COUNT("lay the block out in panels this wide along its last dimension, as pack does "
                       "(a vector-width multiple; the register tile's width)", required=False))
def cache_read(func: Function, tensor: str, at: str, panel: Optional[int] = None) -> Function:
    """Copy the block of ``tensor`` that one iteration of loop ``at`` reads into a small dense
    buffer <tensor>_block at the start of the iteration, and read it from there (BLIS packs each
    kc x nr block of B so). Rows of a large matrix lie a power of two apart and fall into the
    same few cache sets: a 32 x 24 block of a 7168 x 2048 B has 32 rows 8 KiB apart, all in two
    sets of an 8-way L1, and is evicted before the next register tile reuses it; copied, it is
    3 KiB of consecutive lines. Unlike pack (one copy of the whole tensor before the loops), the
    copy is a block at a time, read once from memory: cheap where the product has few rows.
    With ``panel``, the block's last dimension is split into panels of that width, panel index
    first (B_block[j // 24, k, j % 24]): the 24 columns a register tile reads for one k are
    contiguous and successive k adjacent, so the tile walks one dense stream. Creates loops
    <tensor>_block_c0.. (the copy, in the block's layout).

    Legal when: ``at`` is serial (cache before marking loops); the tensor is read inside ``at``
    and not written there; its indices there are affine.
    """
    target = find_tensor(func, tensor)
    loop = find_loop(func, at)
    if loop.kind != "serial":
        raise ScheduleError(f"cache_read at {at}: mark loops after caching")
    found = accesses(loop.body, target)
    if any(isinstance(a, (Store, Accumulate)) for a in found):
        raise ScheduleError(f"cache_read: {tensor} is written inside {at}; a copy would go stale")
    region = region_in(loop.body, target, f"cache_read {tensor} at {at}")
    taken = used_names(func)
    extent = region.extent
    if panel is not None:
        panel = min(panel, extent[-1])
        shape = (-(-extent[-1] // panel),) + extent[:-1] + (panel,)
    else:
        shape = extent
    block = Tensor(fresh_name(taken, f"{tensor}_block"), shape, target.dtype)

    def layout(local: tuple[Expr, ...]) -> tuple[Expr, ...]:
        """Block coordinates (0 .. extent) to the buffer's indices."""
        if panel is None:
            return local
        return (local[-1] // panel,) + local[:-1] + (local[-1] % panel,)

    # The copy walks the block in the tensor's order (rows, then along each row: long contiguous
    # reads, which the prefetcher follows), the last dimension split by the panel width if any.
    loop_extents = extent[:-1] + ((shape[0], panel) if panel is not None else (extent[-1],))
    loop_vars = [Var(fresh_name(taken, f"{block.name}_c{d}")) for d in range(len(loop_extents))]
    if panel is not None:
        local: tuple[Expr, ...] = tuple(loop_vars[:-2]) + (loop_vars[-2] * panel + loop_vars[-1],)
        buffer_index: tuple[Expr, ...] = (loop_vars[-2],) + tuple(loop_vars[:-2]) + (loop_vars[-1],)
    else:
        local = buffer_index = tuple(loop_vars)
    index = tuple(o + l + lo if lo else o + l for o, l, lo in zip(region.outer, local, region.lo))
    # Guarded like cache_write's copy (a guarded store vectorizes with a mask; a guarded read does
    # not): the block's points beyond the tensor's edge (or the last panel's padding) stay unset,
    # and the loops inside only use them for outputs beyond the edge, never written back.
    extra = [i >= const(0, "int64") for i, lo in zip(index, region.lo) if lo < 0]   # rows before the first
    if panel is not None and extent[-1] % panel:
        extra.append(local[-1] < const(extent[-1], "int64"))
    fill = _guarded(target, index, Store(block, buffer_index, Load(target, index)), extra)
    for var, size in zip(reversed(loop_vars), reversed(loop_extents)):
        fill = For(var, const(size, "int64"), fill)

    def to_block(indices: tuple[Expr, ...]) -> tuple[Expr, ...]:
        from ..passes.simplify import simplify_expr
        local = tuple(i - o - lo if lo else i - o for i, o, lo in zip(indices, region.outer, region.lo))
        return tuple(simplify_expr(i) for i in layout(local))

    body = _Retarget(target, block, to_block).visit(loop.body)
    return replace_stmt(func, loop, lambda old: For(old.var, old.extent,  # type: ignore[attr-defined]
                                                    Alloc(block, seq(fill, body)), old.kind))


@primitive(tensor=TENSOR("a program input the loop reads"),
           at=LOOP("the loop whose later iteration's reads are prefetched"),
           distance=COUNT("how many iterations of the loop ahead"))
def prefetch(func: Function, tensor: str, at: str, distance: int) -> Function:
    """Before every read of ``tensor`` inside loop ``at``, prefetch the element the same read will
    load ``distance`` iterations of ``at`` later. Memory the hardware prefetchers would not fetch
    in time (a block copied while the previous one is computed on: cache_read at ``at``, then
    prefetch at ``at`` one ahead) arrives while the core computes. A prefetch past the tensor's end
    is harmless: it never faults and changes nothing. In a vectorized loop, one per vector.

    Legal when: the tensor is a program input read inside ``at`` (its storage exists throughout);
    ``at`` is serial (prefetch before marking loops); a distance beyond the loop's extent is its extent.
    """
    target = find_tensor(func, tensor)
    if not any(target is t for t in func.inputs):
        raise ScheduleError(f"prefetch applies to an input; {tensor} is computed here")
    loop = find_loop(func, at)
    if loop.kind != "serial":
        raise ScheduleError(f"prefetch at {at}: mark loops after prefetching")
    if not any(isinstance(a, Load) for a in accesses(loop.body, target)):
        raise ScheduleError(f"prefetch: {tensor} is not read inside {at}")
    if not isinstance(loop.extent, Const):
        raise ScheduleError(f"prefetch at {at}: the loop's extent is not a constant")
    distance = min(distance, int(loop.extent.value))   # as every count: more than the loop means all of it
    ahead = {loop.var: loop.var + const(distance, "int64")}

    class Insert(Mutator):
        """A statement that reads the tensor gets the prefetches of its reads, ahead, before it."""

        def _with_prefetches(self, s: Stmt) -> Stmt:
            reads = [n for n in walk(s) if isinstance(n, Load) and n.tensor is target]
            hints = [Prefetch(target, tuple(substitute(i, ahead) for i in r.indices)) for r in reads]
            return seq(*dict.fromkeys(hints), s) if hints else s

        def visit_Store(self, s: Store) -> Stmt:
            return self._with_prefetches(s)

        def visit_Accumulate(self, s: Accumulate) -> Stmt:
            return self._with_prefetches(s)

    return replace_stmt(func, loop, lambda old: For(old.var, old.extent, Insert().visit(old.body), old.kind))  # type: ignore[attr-defined]
