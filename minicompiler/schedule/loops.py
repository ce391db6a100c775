"""Helpers every schedule primitive shares: finding loops by name, rebuilding around them, naming.

Loops are named by their variable; names are unique in a function, so a step can say
``split("i", 32)`` and mean exactly one loop.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional

from ..ir.expr import Const, Expr, Var
from ..ir.stmt import Accumulate, Alloc, For, Function, If, Let, Seq, Stmt, Store
from ..ir.visitor import LoopVisitor, Mutator, Visitor, walk


class ScheduleError(ValueError):
    """A transformation that cannot be applied; the message says why and what to do instead."""


def loops(node: Function | Stmt) -> Iterator[For]:
    body = node.body if isinstance(node, Function) else node
    return (n for n in walk(body) if isinstance(n, For))


def loop_names(func: Function) -> list[str]:
    return [loop.var.name for loop in loops(func)]


def find_loop(func: Function, name: str) -> For:
    if not isinstance(name, str):
        raise ScheduleError(f"a loop is named by a string, got {name!r}")
    for loop in loops(func):
        if loop.var.name == name:
            return loop
    raise ScheduleError(f"no loop named {name!r}; the loops are: {', '.join(loop_names(func)) or 'none'}")


def constant_extent(loop: For, what: str) -> int:
    if not isinstance(loop.extent, Const):
        raise ScheduleError(f"{what} needs a loop of constant extent; {loop.var.name} runs "
                            f"{loop.extent} times")
    return int(loop.extent.value)


def used_names(func: Function) -> set[str]:
    names = {t.name for t in func.params}
    for node in walk(func.body):
        if isinstance(node, (For, Let)):
            names.add(node.var.name)
        elif isinstance(node, Alloc):
            names.add(node.tensor.name)
    return names


def fresh_name(taken: set[str], base: str) -> str:
    """``base``, or ``base1``, ``base2``... whichever is free; the name is then taken."""
    name, n = base, 0
    while name in taken:
        n += 1
        name = f"{base}{n}"
    taken.add(name)
    return name


class _ReplaceStmt(Mutator):
    def __init__(self, target: Stmt, make: Callable[[Stmt], Stmt]) -> None:
        super().__init__()
        self.target, self.make, self.found = target, make, False

    def visit(self, node):  # type: ignore[override]
        if node is self.target:
            self.found = True
            return self.make(node)
        if not isinstance(node, Stmt):
            return node  # statements only: expressions hold no loops
        return super().visit(node)


def replace_stmt(func: Function, target: Stmt, make: Callable[[Stmt], Stmt]) -> Function:
    """``func`` with the statement ``target`` (found by identity) replaced by ``make(target)``."""
    mutator = _ReplaceStmt(target, make)
    body = mutator.visit(func.body)
    assert mutator.found, "statement not found"
    return func.with_body(body)


def enclosing_loops(func: Function, target: Stmt) -> list[For]:
    """The loops around ``target`` (found by identity), outermost first."""
    class Find(LoopVisitor):
        found: Optional[list[For]] = None

        def visit(self, node):  # type: ignore[override]
            if node is target:
                self.found = list(self.loops)
            elif self.found is None and isinstance(node, Stmt):   # statements only: expressions hold no loops
                super().visit(node)

    find = Find()
    find.visit(func.body)
    return find.found or []


def outermost_loops(s: Stmt) -> list[For]:
    """The outermost loops at or below ``s`` (through Allocs, Seqs, Lets and Ifs), in program order."""
    class Outermost(Visitor):
        def __init__(self) -> None:
            super().__init__()
            self.found: list[For] = []

        def visit_For(self, node: For) -> None:   # not its body: loops inside it are not outermost
            self.found.append(node)

    outermost = Outermost()
    outermost.visit(s)
    return outermost.found


def children(s: Stmt) -> list[Stmt]:
    if isinstance(s, Seq):
        return list(s.stmts)
    if isinstance(s, (For, Alloc, Let)):
        return [s.body]
    if isinstance(s, If):
        return [s.then_body] + ([s.else_body] if s.else_body is not None else [])
    return []


def writes(s: Stmt) -> list[Store | Accumulate]:
    return [n for n in walk(s) if isinstance(n, (Store, Accumulate))]


def free_vars(e: Expr | Stmt) -> set[Var]:
    return {n for n in walk(e) if isinstance(n, Var)}


def single_child(s: Stmt) -> Optional[Stmt]:
    """The one statement directly inside a loop or guard, or None where the nest branches."""
    if isinstance(s, For):
        return s.body
    if isinstance(s, If) and s.else_body is None:
        return s.then_body
    return None
