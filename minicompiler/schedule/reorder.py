"""reorder and fuse: change the order, or the number, of the loops of one perfect nest.

A nest is "perfect" between two loops when each loop's body is the next loop, possibly
through guards (the ``if`` that split adds). Guards are kept and re-placed just inside
the innermost loop their condition depends on, where they are checked least often.
"""
from __future__ import annotations

from ..ir.expr import Const, Expr, Load, Var, const
from ..ir.stmt import Accumulate, Alloc, For, Function, If, Stmt, Store
from ..ir.visitor import substitute, walk
from .loops import ScheduleError, find_loop, fresh_name, free_vars, replace_stmt, single_child, used_names
from .params import LOOP, LOOPS, primitive


def _chain(top: For, wanted: set[str]) -> tuple[list[Stmt], Stmt]:
    """The loops and guards from ``top`` down to the last wanted loop, and the body below them."""
    chain: list[Stmt] = []
    found: set[str] = set()
    node: Stmt = top
    while True:
        chain.append(node)
        if isinstance(node, For):
            found.add(node.var.name)
            if found >= wanted:
                return chain, node.body
        child = single_child(node)
        if child is None or not isinstance(child, (For, If)) or isinstance(child, If) and child.else_body:
            missing = ", ".join(sorted(wanted - found))
            raise ScheduleError(f"loops {', '.join(sorted(wanted))} are not perfectly nested: {missing} "
                                f"is not directly inside {node.var.name if isinstance(node, For) else 'a guard'}"
                                f" (other statements sit between them)")
        node = child


def check_point_independent(body: Stmt, what: str) -> None:
    """Each iteration reads and writes only its own points of any written tensor (reductions aside).

    This makes loop order, and the split of iterations between threads, unobservable: the
    only cross-iteration effect left is ``+=`` into one point, and reductions are reassociable.
    """
    private = {id(n.tensor) for n in walk(body) if isinstance(n, Alloc)}
    written = [w for w in walk(body) if isinstance(w, (Store, Accumulate)) and id(w.tensor) not in private]
    for w in written:
        for n in walk(body):
            if isinstance(n, (Load, Store, Accumulate)) and n.tensor is w.tensor and n.indices != w.indices:
                raise ScheduleError(f"cannot {what}: {w.tensor.name} is written and also accessed at "
                                    f"another point in the same loop body, so iterations depend on each other")


@primitive(order=LOOPS("two or more loops of ONE perfect nest, outermost first"))
def reorder(func: Function, order: tuple[str, ...] | list[str]) -> Function:
    """Put the named loops of one perfect nest in this order (other loops keep their places).

    Legal when: all the loops are in one perfect nest (no statement between them), all still
    serial, with constant extents, and the new order keeps every iteration's reads and writes
    (reductions aside) to its own points.
    """
    order = tuple(order)
    if len(order) < 2 or len(set(order)) != len(order):
        raise ScheduleError(f"reorder takes two or more distinct loop names, got {list(order)}")
    named = {name: find_loop(func, name) for name in order}
    tops = [loop for loop in named.values()
            if not any(loop is not other and _contains(other, loop) for other in named.values())]
    if len(tops) != 1:
        raise ScheduleError(f"loops {', '.join(order)} are not in one nest")
    chain, body = _chain(tops[0], set(order))
    chain_loops = [n for n in chain if isinstance(n, For)]
    guards = [n for n in chain if isinstance(n, If)]
    for loop in chain_loops:
        if not isinstance(loop.extent, Const):
            raise ScheduleError(f"reorder needs loops of constant extent; {loop.var.name} is not")
        if loop.kind != "serial":
            raise ScheduleError(f"reorder before marking {loop.var.name} {loop.kind}")
    check_point_independent(body, "reorder")
    queue = iter(named[name] for name in order)
    new_loops = [next(queue) if loop.var.name in named else loop for loop in chain_loops]
    return replace_stmt(func, tops[0], lambda _: rebuild_nest(new_loops, [g.cond for g in guards], body))


def rebuild_nest(nest: list[For], guards: list[Expr], body: Stmt) -> Stmt:
    """Loops ``nest`` (outermost first) around ``body``, each guard inside the innermost loop it needs."""
    depth_of = {loop.var: d for d, loop in enumerate(nest)}
    placed: dict[int, list[Expr]] = {}
    for g in guards:
        depth = max((depth_of[v] for v in free_vars(g) if v in depth_of), default=-1)
        placed.setdefault(depth, []).append(g)
    for d in range(len(nest) - 1, -2, -1):
        for g in reversed(placed.get(d, [])):
            body = If(g, body)
        if d >= 0:
            body = For(nest[d].var, nest[d].extent, body, nest[d].kind)
    return body


def _contains(outer: Stmt, inner: Stmt) -> bool:
    return any(n is inner for n in walk(outer) if n is not outer)


@primitive(outer=LOOP("the outer loop"), inner=LOOP("the loop directly inside it"))
def fuse(func: Function, outer: str, inner: str) -> Function:
    """Merge ``inner`` (directly inside ``outer``) into one loop over both, named outer_inner.

    Legal when: inner is directly inside outer; both are serial with constant extents.
    """
    o, i = find_loop(func, outer), find_loop(func, inner)
    if not _contains(o, i):
        raise ScheduleError(f"fuse needs {inner} directly inside {outer}, but {inner} is not inside {outer}")
    chain, body = _chain(o, {outer, inner})
    loops_ = [n for n in chain if isinstance(n, For)]
    if len(loops_) != 2 or loops_[1] is not i:
        raise ScheduleError(f"fuse needs {inner} directly inside {outer}")
    for loop in (o, i):
        if not isinstance(loop.extent, Const):
            raise ScheduleError(f"fuse needs loops of constant extent; {loop.var.name} is not")
        if loop.kind != "serial":
            raise ScheduleError(f"fuse before marking {loop.var.name} {loop.kind}")
    n_inner = int(i.extent.value)  # type: ignore[attr-defined]
    fused = Var(fresh_name(used_names(func), f"{outer}_{inner}"))
    mapping = {o.var: fused // n_inner if n_inner != 1 else fused, i.var: fused % n_inner if n_inner != 1 else const(0, "int64")}
    new_body = substitute(body, mapping)
    for g in reversed([n for n in chain if isinstance(n, If)]):
        new_body = If(substitute(g.cond, mapping), new_body)
    extent = const(int(o.extent.value) * n_inner, "int64")  # type: ignore[attr-defined]
    return replace_stmt(func, o, lambda _: For(fused, extent, new_body))
