"""The loop-nest IR: expressions, tensors, statements, one traversal helper, one printer."""
from .expr import (BinOp, Broadcast, Call, Cast, Const, Expr, Load, Ramp, Reduce, ReduceVar, Select, Var,
                   as_expr, binop, call, cast, const, select)
from .stmt import Accumulate, Alloc, For, Function, If, Let, Seq, Stmt, Store, seq
from .tensor import ComputeOp, Tensor, topological_order
from .visitor import Mutator, substitute, walk
from .printer import format_expr, format_function, format_stmt
