"""The traversals every pass and analysis shares: ``walk`` and ``Visitor`` to read a tree,
``LoopVisitor`` to read it knowing the loops around each node, ``Mutator`` to rebuild one.

A method ``visit_<NodeClass>`` handles that class; every other node is visited through its
children (a Visitor) or rebuilt from its visited children (a Mutator), so a pass writes only
the cases it cares about. A handler that wants the children too calls ``generic_visit``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Union

from .expr import Expr, Var
from .stmt import Stmt

Node = Union[Expr, Stmt]


def _children(node: Node) -> Iterator[Node]:
    for f in dataclasses.fields(node):  # type: ignore[arg-type]
        value = getattr(node, f.name)
        if isinstance(value, (Expr, Stmt)):
            yield value
        elif isinstance(value, tuple):
            yield from (v for v in value if isinstance(v, (Expr, Stmt)))


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(list(_children(current))))


class Visitor:
    """Read-only traversal: ``visit_<Class>`` methods handle their class, the rest is descended."""

    def __init__(self) -> None:
        self._handlers: dict[type, Callable[[Any], Any] | None] = {}

    def visit(self, node: Any) -> Any:
        cls = type(node)
        if cls not in self._handlers:
            self._handlers[cls] = getattr(self, "visit_" + cls.__name__, None)
        handler = self._handlers[cls]
        return handler(node) if handler is not None else self.generic_visit(node)

    def generic_visit(self, node: Node) -> Any:
        for child in _children(node):
            self.visit(child)


class LoopVisitor(Visitor):
    """A Visitor that keeps ``self.loops``: the For nodes around the node being visited, outermost first."""

    def __init__(self) -> None:
        super().__init__()
        self.loops: list[Any] = []

    def visit_For(self, node: Any) -> None:
        self.loops.append(node)
        self.generic_visit(node)
        self.loops.pop()


class Mutator(Visitor):
    """Rebuilding traversal: ``visit_<Class>`` returns the new node; the rest is rebuilt from its
    visited children (the same node when none changed)."""

    def generic_visit(self, node: Node) -> Node:
        if isinstance(node, Var):
            return node
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(node):  # type: ignore[arg-type]
            value = getattr(node, f.name)
            if isinstance(value, (Expr, Stmt)):
                new = self.visit(value)
            elif isinstance(value, tuple) and any(isinstance(v, (Expr, Stmt)) for v in value):
                new = tuple(self.visit(v) if isinstance(v, (Expr, Stmt)) else v for v in value)
            else:
                continue
            if new is not value:
                changes[f.name] = new
        return dataclasses.replace(node, **changes) if changes else node  # type: ignore[type-var]


class Substitute(Mutator):
    def __init__(self, mapping: dict[Var, Expr]) -> None:
        super().__init__()
        self.mapping = mapping

    def visit_Var(self, node: Var) -> Expr:
        return self.mapping.get(node, node)

    visit_ReduceVar = visit_Var


def substitute(node: Any, mapping: dict[Var, Expr]) -> Any:
    """Replace variables by expressions everywhere in ``node``."""
    return Substitute(mapping).visit(node) if mapping else node
