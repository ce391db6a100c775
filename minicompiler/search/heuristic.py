"""The offline default proposer: what a performance engineer would try next, phase by phase.

``HeuristicProposer`` reads the loop nest and the target and proposes, in order: place the
stages (compute_at), tile for registers and cache, cache / pack / vectorize the micro-kernel,
then parallelize — ranking its parameter choices with the machine model (``machine.py``:
registers, cache footprint, vector width). ``greedy_schedule`` applies its first proposal
round after round: the schedule einsum uses when nothing was tuned.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

from minicompiler.dtypes import itemsize
from minicompiler.ir.expr import Load, Var
from minicompiler.ir.stmt import Accumulate, Alloc, For, Function, Stmt
from minicompiler.ir.visitor import walk
from minicompiler.schedule import Schedule, Step
from minicompiler.schedule.loops import children, enclosing_loops, free_vars, loops, outermost_loops
from minicompiler.target import Target

from .legality import try_steps
from .machine import blockings, tilings
from .nests import Nest, intermediates, main_nest, nests, trip_count
from .proposer import Context, Proposal, TuneHooks


@dataclass(frozen=True)
class _TileOption:
    key: tuple[str, int]    # (blocking rule, reduction-order variant): comparable across contractions
    rank: int               # tile rank + blocking rank + variant: lower is tried first
    tile_rank: int
    proposal: Proposal


class HeuristicProposer(TuneHooks):
    name = "heuristic"

    def __init__(self, max_variants: int = 6) -> None:
        self.max_variants = max_variants

    def propose(self, context: Context, n: int) -> list[Proposal]:
        schedule, target = context.schedule, context.target
        tried = {tuple(t) for t in context.tried}
        out: list[Proposal] = []
        for phase in (self._stages, self._tile, self._microkernel, self._vectorize_rest, self._parallel):
            for proposal in phase(schedule, target):
                if proposal.steps in tried or any(p.steps == proposal.steps for p in out):
                    continue
                if try_steps(schedule, proposal.steps) is not None:
                    out.append(proposal)
            if out:  # propose from the earliest phase that still has work to do
                return out[:n]
        return out[:n]

    # -- phase 1: where intermediate tensors are computed ------------------------------------
    def _stages(self, schedule: Schedule, target: Target) -> list[Proposal]:
        func = schedule.func
        scratch = [name for name in intermediates(func) if not _inside_loop(func, name)]
        if not scratch:
            return []
        out_nest = [n for n in nests(func) if n.write.tensor is func.outputs[0]][-1]
        proposals = []
        # Move every stage into one loop of the output nest, consumers first, deepest row first —
        # only where that neither recomputes a stage nor re-streams a large input.
        for depth in range(len(out_nest.loops) - 2, -1, -1):
            outer = out_nest.loops[: depth + 1]
            if all(trip_count(l) <= 1 for l in outer):
                continue  # a loop of one iteration: nothing to gain
            if not _indexes_every_stage_read(out_nest, outer, scratch):
                continue
            at = out_nest.loops[depth].var.name
            names = [l.var.name for l in outer]
            # A block of rows rather than one: the contractions inside can then keep a register
            # tile of several rows (one row reuses nothing of the streamed operand).
            block = self._row_block(out_nest, depth, target)
            variants = []
            if block is not None:
                blocked = (Step.make("split", loop=at, factor=block),) + tuple(
                    Step.make("compute_at", tensor=t, at=f"{at}_o") for t in reversed(scratch))
                variants.append((blocked, names[:-1] + [f"{at}_o"], f"a block of {block} rows of loop {at}"))
            variants.append((tuple(Step.make("compute_at", tensor=t, at=at) for t in reversed(scratch)),
                             names, f"loop {at}"))
            for steps, outer_names, where in variants:
                trial = try_steps(schedule, steps)
                if trial is None or not _no_restreaming(trial.func, outer_names, target):
                    continue
                proposals.append(Proposal(steps, f"compute every intermediate inside {where} so its "
                                                 f"rows stay in cache instead of round-tripping through memory"))
        return proposals

    @staticmethod
    def _row_block(nest: Nest, depth: int, target: Target) -> Optional[int]:
        """Rows per block when the stages go inside loop ``depth`` of the output nest: the rows of
        the best register tile for the output's (rows, contiguous columns), if the loop is long
        enough to split."""
        loop = nest.loops[depth]
        m = trip_count(loop)
        jn = nest.contiguous
        if jn is None or jn == loop.var.name or m < 16:
            return None
        lanes = target.vector_lanes(nest.write.tensor.dtype)
        best = tilings(target, m, nest.extent(jn), lanes)
        return best[0].mr if best and best[0].mr > 1 else None

    # -- phase 2: tile the main contraction for registers and cache ---------------------------
    def _tile(self, schedule: Schedule, target: Target) -> list[Proposal]:
        eligible = sorted((n for n in nests(schedule.func) if isinstance(n.write, Accumulate) and not _is_tiled(n)
                           and n.contiguous is not None and bool(n.reduction) and _work(n) >= 4096),
                          key=_work, reverse=True)
        options = [self._tile_options(n, target, schedule.func) for n in eligible]
        if not options or not options[0]:
            return []
        largest = options[0]
        ranked: list[tuple[int, int, Proposal]] = [(o.rank, o.tile_rank, o.proposal) for o in largest]
        if len(options) > 1:
            # One blocking for every contraction at once (an MLP's three products stream their weights
            # alike): one decision of the search, where one per product would each take a tree level.
            for key in dict.fromkeys(o.key for o in largest):
                steps: list[Step] = []
                for per_nest in (opts for opts in options if opts):
                    same = [o for o in per_nest if o.key == key] or per_nest
                    steps.extend(min(same, key=lambda o: o.rank).proposal.steps)
                first = min((o for o in largest if o.key == key), key=lambda o: o.rank)
                ranked.append((first.rank, -1, Proposal(tuple(steps), "every contraction, each with its best "
                                                        "register tile: " + first.proposal.reasoning)))
        # Interleaved: the best tile with each blocking and the best blocking with each tile come
        # before second choices of both, so a search that takes the first few sees both decisions vary.
        ranked.sort(key=lambda r: (r[0], r[1]))
        return [p for _, _, p in ranked]

    def _tile_options(self, nest: Nest, target: Target, func: Function) -> list["_TileOption"]:
        """Register tiles x cache blockings x reduction orders for one contraction, ranked."""
        jn = nest.contiguous
        spatial = [s for s in nest.spatial if s != jn]
        if jn is None or not nest.reduction:
            return []
        im = nest.loop_of_output_dim(-2) if len(nest.write.indices) >= 2 else None
        if im is None or im == jn:
            im = spatial[-1] if spatial else None
        # The tile's rows must reuse the vectors loaded along jn: prefer a spatial loop that no read
        # walked by jn depends on (output channels of a convolution, not its image rows).
        reusing = [s for s in spatial if nest.extent(s) > 1 and not _shares_read(nest, s, jn)]
        if im is not None and _shares_read(nest, im, jn) and reusing:
            im = reusing[-1]
        lanes = target.vector_lanes(nest.write.tensor.dtype)
        m = nest.extent(im) if im else 1
        n, k = nest.extent(jn), max(nest.extent(r) for r in nest.reduction)
        k_loop = max(nest.reduction, key=nest.extent)
        others = [r for r in nest.reduction if r != k_loop]
        outer_spatial = [s for s in nest.spatial if s not in (im, jn)]
        size = itemsize(nest.write.tensor.dtype)
        # A loop around the tile with an iteration per core (attention's heads, a conv's rows) is
        # where the cores go: each of them then runs this contraction alone.
        around = enclosing_loops(func, nest.loops[0]) + [l for l in nest.loops if l.var.name in outer_spatial]
        if any(trip_count(l) >= target.cores for l in around):
            target = target.with_(cores=1)
        ranked: list[_TileOption] = []
        for tile_rank, t in enumerate(tilings(target, m, n, lanes)[: self.max_variants]):
            if im is not None and t.mr > 1:
                tile = Step.make("tile", outer_loop=im, inner_loop=jn, outer_factor=t.mr, inner_factor=t.nr)
                im_o, im_i = [f"{im}_o"], [f"{im}_i"]
            else:
                tile = Step.make("split", loop=jn, factor=t.nr)
                im_o = im_i = []
            for block_rank, b in enumerate(blockings(target, m, n, k, t, size)):
                steps = [tile]
                k_outer, k_inner = [], [k_loop]
                if b.kc is not None:
                    steps.append(Step.make("split", loop=k_loop, factor=b.kc))
                    k_outer, k_inner = [f"{k_loop}_o"], [f"{k_loop}_i"]
                if b.order == "core_slab":
                    steps.append(Step.make("split", loop=f"{jn}_o", nparts=b.chunks or target.cores))
                blocks = {"resident": [f"{jn}_o"] + im_o + k_outer,
                          "panel": [f"{jn}_o"] + k_outer + im_o,
                          "slab": k_outer + [f"{jn}_o"] + im_o,
                          "core_slab": [f"{jn}_o_o"] + k_outer + [f"{jn}_o_i"] + im_o}[b.order]
                # The reduction loops inside the blocks keep the program's order (a convolution's
                # channel, then its window rows and columns: the window's neighbouring elements
                # are read one after another); with the blocked loop innermost as the alternative.
                as_written = [k_inner[0] if r == k_loop else r for r in nest.reduction]
                for extra, reductions in enumerate(dict.fromkeys(
                        (tuple(as_written), tuple(others + k_inner)))):
                    order = outer_spatial + blocks + list(reductions) + im_i + [f"{jn}_i"]
                    ranked.append(_TileOption((b.name, extra), tile_rank + block_rank + extra, tile_rank, Proposal(
                        tuple(steps + [Step.make("reorder", order=tuple(order))]), (
                            f"register tile {t.mr}x{t.nr} ({max(1, t.mr) * (t.nr // lanes)} vector "
                            f"accumulators of {lanes} lanes); {b.why}"))))
        return ranked

    # -- phase 3: keep the tile in registers, pack the streamed operand, vectorize -------------
    def _microkernel(self, schedule: Schedule, target: Target) -> list[Proposal]:
        nest = _largest(schedule.func, lambda n: isinstance(n.write, Accumulate) and _is_tiled(n)
                        and not n.write.tensor.name.endswith("_local") and not _has_kind(n, "vectorized"))
        if nest is None:
            return []
        names = nest.names
        jn_i = names[-1]
        im_i = names[-2] if names[-2].endswith("_i") and nest.extent(names[-2]) <= 16 else None
        at = _cache_level(nest)
        lanes = target.vector_lanes(nest.write.tensor.dtype)
        base: list[Step] = []
        if at is not None:
            base.append(Step.make("cache_write", tensor=nest.write.tensor.name, at=at))
        tail = ([Step.make("unroll", loop=im_i)] if im_i else []) + [Step.make("vectorize", loop=jn_i)]
        proposals = []
        packed = self._pack_step(schedule, nest, lanes)
        # Rows that reuse the packed panel: the spatial loops its indices do not use. Packing
        # costs one extra read and write of the operand, so it pays only with enough reuse
        # (a 16-token matmul streaming its weights once must not copy them first).
        m_total = 1
        block_copy: list[Step] = []
        if packed is not None:
            load = next(l for l in nest.reads() if l.tensor.name == packed.kwargs["tensor"])
            used = _index_names(load)
            for s in nest.spatial:
                if s not in used:
                    m_total *= nest.extent(s)
            # A vector loop over a dimension that is not the operand's last walks it with a stride
            # (Kᵀ in Q·Kᵀ): without the copy every vector would be a gather, so pack it anyway.
            strided = packed.kwargs["dim"] != load.tensor.ndim - 1
            if m_total < 64 and not strided:
                block_copy = self._block_copy_steps(schedule, nest, packed)
                packed = None
        if packed is not None:
            # The copy is a loop nest of its own: run it on every core too.
            trial = try_steps(schedule, [packed])
            first = trial.loops[0] if trial is not None else None
            if first is not None and first.startswith(f"{packed.kwargs['tensor']}_packed"):
                tail = tail + [Step.make("parallel", loop=first)]
            proposals.append(Proposal(tuple(base + [packed] + tail),
                                      "accumulate the tile in registers; pack the streamed operand into "
                                      "contiguous panels (its rows are far apart in memory); unroll rows, "
                                      "vectorize columns"))
        plain = [t for t in tail if t.op != "parallel"]
        proposals.append(Proposal(tuple(base + plain), "accumulate the tile in registers; unroll rows, "
                                                        "vectorize columns"))
        if block_copy:
            copy = Proposal(tuple(base + block_copy + plain), (
                "accumulate the tile in registers; copy each reduction block of the streamed operand "
                "into panels as it is reached (read once, contiguously; its rows a power of two apart "
                "would share cache sets)"))
            # Columns split into chunks (the "chunk" blocking) exist for this copy: first choice there
            # (measured, MLP on one Zen 3 core: chunks without the copy 139-153 ms, with it 96-105,
            # slabs 113-116), so a rollout from the chunked tile completes it with the copy.
            if any(l.var.name.endswith("_o_o") for l in nest.loops):
                proposals.insert(0, copy)
            else:
                proposals.append(copy)
        rows = self._pack_rows_step(schedule, nest, im_i) if im_i else None
        if rows is not None:   # BLIS packs both operands; measured, not assumed, to pay here
            both = (base + ([packed] if packed is not None else []) + [rows] +
                    (tail if packed is not None else plain))
            proposals.append(Proposal(tuple(both), "also pack the broadcast operand in panels of the tile's "
                                                   "rows, so its mr values per reduction step are adjacent"))
        return proposals

    @staticmethod
    def _block_copy_steps(schedule: Schedule, nest: Nest, packed: Step) -> list[Step]:
        """Few rows reuse B too little to pack all of it first: copy the block of it that one
        iteration of the blocked reduction loop reads (kc rows of the columns inside), in panels
        of the tile's width, and vectorize the copy. [] when the reduction is not blocked."""
        blocked = [r for r in nest.reduction if r.endswith("_o")]   # the outer loop of a split reduction
        if not blocked:
            return []
        tensor, panel = packed.kwargs["tensor"], nest.extent(nest.names[-1])
        copy = Step.make("cache_read", tensor=tensor, at=blocked[0], panel=panel)
        trial = try_steps(schedule, [copy])
        if trial is None:
            return []
        inner = [n for n in trial.loops if n.startswith(f"{tensor}_block_c")]
        if inner:
            vector = Step.make("vectorize", loop=inner[-1])
            if try_steps(trial, [vector]) is not None:
                return [copy, vector]
        return [copy]

    @staticmethod
    def _pack_rows_step(schedule: Schedule, nest: Nest, im_i: str) -> Optional[Step]:
        """Pack the input read by the unrolled row loop but not the vector loop (A in C = A·B), in
        panels of the register tile's rows."""
        rows = next(l.var for l in nest.loops if l.var.name == im_i)
        jn_i = nest.loops[-1].var
        for load in _matrix_inputs(schedule, nest):
            dims = _dims_using(load, rows)
            if not _dims_using(load, jn_i) and len(dims) == 1 and dims[0] != load.tensor.ndim - 1:
                return Step.make("pack", tensor=load.tensor.name, dim=dims[0], factor=nest.extent(im_i))
        return None

    @staticmethod
    def _pack_step(schedule: Schedule, nest: Nest, lanes: int) -> Optional[Step]:
        """Pack the input read with the vectorized loop in its last index (B in C = A·B)."""
        jn_i = nest.loops[-1].var
        for load in _matrix_inputs(schedule, nest):
            dims = _dims_using(load, jn_i)
            if len(dims) == 1:  # the operand the vector loop walks: make that walk contiguous
                return Step.make("pack", tensor=load.tensor.name, dim=dims[0], factor=nest.extent(jn_i.name))
        return None

    # -- phase 4: vectorize the remaining (elementwise) nests ------------------------------------
    def _vectorize_rest(self, schedule: Schedule, target: Target) -> list[Proposal]:
        steps: list[Step] = []
        current = schedule
        for nest in nests(schedule.func):
            if _has_kind(nest, "vectorized") or _has_kind(nest, "unrolled"):
                continue
            loop = nest.contiguous
            if loop is None:
                continue
            extent = nest.extent(loop)
            lanes = target.vector_lanes(nest.write.tensor.dtype)
            if extent < 2:
                continue
            candidate = [Step.make("vectorize", loop=loop)] if extent <= 64 and loop == nest.names[-1] else \
                [Step.make("split", loop=loop, factor=lanes), Step.make("vectorize", loop=f"{loop}_i")]
            if nest.names[-1] != loop:
                inner = nest.names[-1]
                candidate = [Step.make("reorder", order=(loop, inner))] + candidate \
                    if nest.extent(inner) > 0 else candidate
            trial = try_steps(current, candidate)
            if trial is not None:
                current = trial
                steps.extend(candidate)
        return [Proposal(tuple(steps), "vectorize the contiguous loop of every remaining nest")] if steps else []

    # -- phase 5: parallelize ------------------------------------------------------------------------
    def _parallel(self, schedule: Schedule, target: Target) -> list[Proposal]:
        func = schedule.func
        nest = main_nest(func)
        if nest is None:
            return []
        around = nest.loops
        if any(l.kind == "parallel" for l in around):
            others = _parallelize_other_nests(schedule, target)
            return [Proposal(others, "run the other large stages on every core too")] if others else []
        # Which loops may run in parallel (None: a reduction loop, or iterations that share data).
        trials = {l.var.name: try_steps(schedule, (Step.make("parallel", loop=l.var.name),))
                  for l in around if trip_count(l) > 1}
        proposals: list[tuple[tuple, Proposal]] = []
        for depth, loop in enumerate(around):
            extent = trip_count(loop)
            if loop.kind != "serial" or extent < 2 or trials[loop.var.name] is None:
                continue
            step = Step.make("parallel", loop=loop.var.name)
            # The other big top-level nests (separate stages: G and U before an MLP's down
            # projection, a padding stage) need all the cores as well.
            others = _parallelize_other_nests(trials[loop.var.name], target)
            balance = (-(-extent // target.cores) * target.cores) / extent  # 1.0: every core equally busy
            # Inputs this loop does not index are read whole by every core: prefer the loop that
            # splits the largest operand (a 16-row matmul splits its weights' columns, not its rows).
            shared = _shared_input_bytes(nest, loop.var.name, {t.name for t in func.inputs})
            # Below a loop that must stay serial (a reduction) the cores would fork and join once
            # per iteration of it.
            below_serial = any(trials[l.var.name] is None for l in around[:depth] if trip_count(l) > 1)
            # Each iteration of the loops around it forks and joins the threads once more: with
            # even work either way, the outer loop (a core that is late to wake stalls every join).
            forks = math.prod(trip_count(l) for l in around[:depth])
            rank = (below_serial, round(balance, 1), forks.bit_length() // 2, shared.bit_length() // 4, depth)
            proposals.append((rank, Proposal((step,) + others, (
                f"run {loop.var.name} ({extent} iterations) on {target.cores} cores; the outermost "
                f"legal loop with even work per core has the least synchronisation"
                + ("; the other large stages on every core too" if others else "")))))
        proposals.sort(key=lambda p: p[0])
        return [p for _, p in proposals[:3]]


def _parallelize_other_nests(schedule: Schedule, target: Target,
                             min_work: int = 1 << 16) -> tuple[Step, ...]:
    """Parallel steps for every other top-level contraction with enough work (>= min_work iterations)
    and no parallel loop yet: its outermost loop with at least ``target.cores`` iterations that
    may run in parallel."""
    steps: list[Step] = []
    for index in range(len(outermost_loops(schedule.func.body))):
        top = outermost_loops(schedule.func.body)[index]   # re-read: every step rebuilds the function
        if any(l.kind == "parallel" for l in loops(top)) or _nest_work(top) < min_work:
            continue
        if not any(isinstance(n, Accumulate) for n in walk(top)):
            continue  # initialisations and elementwise stages are memory-bound: a fork costs more
        node = top
        while isinstance(node, For):
            step = Step.make("parallel", loop=node.var.name)
            trial = try_steps(schedule, (step,)) if trip_count(node) >= target.cores else None
            if trial is not None:
                schedule = trial
                steps.append(step)
                break
            node = node.body
    return tuple(steps)


def _nest_work(loop: For) -> int:
    """Iterations of the largest path of loops from ``loop`` down."""
    return trip_count(loop) * max((_nest_work(c) for c in outermost_loops(loop.body)), default=1)


def _matrix_inputs(schedule: Schedule, nest: Nest) -> list[Load]:
    """The nest's reads of the program's inputs with two or more dimensions: what packing can copy."""
    return [l for l in nest.reads() if l.tensor.ndim >= 2 and any(l.tensor is t for t in schedule.func.inputs)]


def _dims_using(load: Load, var: Var) -> list[int]:
    """The dimensions of the load whose index uses ``var``."""
    return [d for d, index in enumerate(load.indices) if var in free_vars(index)]


def _index_names(load: Load) -> set[str]:
    """The names of the variables a load's indices use."""
    return {v.name for v in free_vars(load)}


def _indexes_every_stage_read(out_nest: Nest, outer: Sequence[For], scratch: Sequence[str]) -> bool:
    """True when every loop of ``outer`` (with more than one iteration) indexes every read of an
    intermediate in the output statement: otherwise computing the stages inside that loop would
    recompute them once per iteration of a loop they do not depend on (H[t, k] inside the loop
    over Y's columns; a padded image inside the loop over output channels)."""
    for load in out_nest.reads():
        if load.tensor.name not in scratch:
            continue
        used = _index_names(load)
        if any(trip_count(l) > 1 and l.var.name not in used for l in outer):
            return False
    return True


def _no_restreaming(func: Function, outer: Sequence[str], target: Target) -> bool:
    """After moving stages inside the loops ``outer``: is no input re-read, once per iteration of an
    outer loop it does not depend on, over a slab larger than L2? (x @ W computed one token row at
    a time streams all of W from memory once per row.) The slab of a load below such a loop: the
    extents of the loops inside it that the load's indices use."""
    inputs = {t.name for t in func.inputs}
    outer_names = set(outer)

    def ok(s: Stmt, enclosing: tuple[For, ...]) -> bool:
        if isinstance(s, For):
            return ok(s.body, enclosing + (s,))
        inside = children(s)
        if inside:
            return all(ok(c, enclosing) for c in inside)
        for load in (n for n in walk(s) if isinstance(n, Load) and n.tensor.name in inputs):
            used = _index_names(load)
            for depth, loop in enumerate(enclosing):
                if loop.var.name not in outer_names or trip_count(loop) <= 1 or loop.var.name in used:
                    continue
                slab = itemsize(load.tensor.dtype)
                for inner in enclosing[depth + 1:]:
                    if inner.var.name in used:
                        slab *= trip_count(inner)
                if slab > target.l2_bytes:
                    return False
        return True
    return ok(func.body, ())


def greedy_schedule(schedule: Schedule, target: Target, max_rounds: int = 24) -> Schedule:
    """The heuristic's first proposal at every phase, applied in turn: a good schedule with no search.

    MCTS uses it as its rollout policy; ``einsum`` uses it when the database has nothing better.
    """
    proposer = HeuristicProposer()
    for _ in range(max_rounds):
        proposals = proposer.propose(Context(schedule, target), 1)
        if not proposals:
            break
        schedule = schedule.replay(proposals[0].steps)
    return schedule


def _work(nest: Nest) -> int:
    work = 1
    for loop in nest.loops:
        work *= trip_count(loop)
    return work


def _largest(func, accept) -> Optional[Nest]:  # noqa: ANN001
    """The nest with the most iterations among those ``accept`` takes."""
    candidates = [n for n in nests(func) if accept(n)]
    return max(candidates, key=_work) if candidates else None


def _shared_input_bytes(nest: Nest, loop: str, inputs: set[str]) -> int:
    """Bytes of the input tensors the nest reads without using ``loop`` in their indices."""
    total = 0
    for load in nest.reads():
        if loop not in _index_names(load) and load.tensor.name in inputs:
            total += itemsize(load.tensor.dtype) * load.tensor.size
    return total


def _shares_read(nest: Nest, a: str, b: str) -> bool:
    """Does some read of the nest depend on both loops ``a`` and ``b``?"""
    return any({a, b} <= _index_names(load) for load in nest.reads())


def _inside_loop(func, name: str) -> bool:  # noqa: ANN001
    for loop in (n for n in walk(func.body) if isinstance(n, For)):
        if any(isinstance(a, Alloc) and a.tensor.name == name for a in walk(loop.body)):
            return True
    return False


def _is_tiled(nest: Nest) -> bool:
    return any(name.endswith("_i") for name in nest.names)


def _has_kind(nest: Nest, kind: str) -> bool:
    return any(l.kind == kind for l in nest.loops)


def _cache_level(nest: Nest) -> Optional[str]:
    """The loop just outside the reduction and register-tile loops: where the tile is reused."""
    spatial = set(nest.spatial)
    for loop in reversed(nest.loops):
        name = loop.var.name
        if name in spatial and not name.endswith("_i"):
            return name
    return None
