"""The one LLVM emitter: loop-nest IR → LLVM IR, built with llvmlite's IR builder.

Conventions of the generated code:
- a kernel is ``int32 name(T0* noalias, T1* noalias, ...)``, inputs then outputs, C-contiguous;
  it returns 0, or ``OUT_OF_MEMORY`` when a scratch tensor could not be allocated (the code that
  needed it is skipped, in every thread, and the caller raises MemoryError);
- indices are i64; a multi-dimensional index is flattened row-major with constant strides;
- a loop is a header block with a phi for its counter (start 0, step 1);
- a ``Select`` whose branches read memory is a branch, never a speculated load;
- float arithmetic carries ``reassoc contract``, so LLVM may vectorise reductions and form FMAs
  (the same freedom numpy's own pairwise / BLAS summation takes);
- scratch tensors live on the stack up to ``STACK_LIMIT`` bytes each and ``STACK_BUDGET`` bytes per
  function (an OpenMP thread's stack is small), on the heap beyond.
"""
from __future__ import annotations

import math

from llvmlite import ir

from ..dtypes import element, is_float, itemsize, lanes
from ..ir.expr import BinOp, Broadcast, Call, Cast, Const, Expr, Load, Ramp, Select, Var
from ..ir.stmt import Accumulate, Alloc, For, Function, If, Let, Prefetch, Seq, Stmt, Store
from ..ir.tensor import Tensor
from ..ir.visitor import walk
from ..target import Target

STACK_LIMIT = 16 * 1024
STACK_BUDGET = 64 * 1024
OUT_OF_MEMORY = 1
STATUS = "status"   # the key of the status slot among the emitter's pointers (travels into parallel bodies)
I32 = ir.IntType(32)
FAST_MATH = ("reassoc", "contract")
I64 = ir.IntType(64)
_TYPES: dict[str, ir.Type] = {"float32": ir.FloatType(), "float64": ir.DoubleType(),
                              "int32": ir.IntType(32), "int64": I64, "bool": ir.IntType(1)}
_FLOAT_CMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


def symbol_name(func: Function) -> str:
    """The kernel's LLVM symbol; prefixed so a tensor called ``exp`` or ``free`` cannot clash with libc."""
    return f"mc_{func.name}"


def llvm_type(dtype: str) -> ir.Type:
    n = lanes(dtype)
    return _TYPES[dtype] if n == 1 else ir.VectorType(_TYPES[element(dtype)], n)


def _suffix(t: ir.Type) -> str:
    """LLVM's overloaded-intrinsic suffix: f32, f64, i64, v16f32..."""
    if isinstance(t, ir.VectorType):
        return f"v{t.count}{_suffix(t.element)}"
    return {"float": "f32", "double": "f64"}.get(str(t), str(t))


def zero(t: ir.Type) -> ir.Constant:
    return ir.Constant(t, [0] * t.count) if isinstance(t, ir.VectorType) else ir.Constant(t, 0)


def _reads_memory(e: Expr) -> bool:
    return any(isinstance(n, Load) or isinstance(n, BinOp) and n.op in ("floordiv", "mod") for n in walk(e))


class LLVMEmitter:
    def __init__(self, func: Function, target: Target) -> None:
        self.func = func
        self.target = target
        self.module = ir.Module(name=func.name)
        self.module.triple = target.triple
        self.values: dict[Var, ir.Value] = {}
        self.pointers: dict[int, ir.Value] = {}
        from ..runtime.threads import parallel_runtime_available
        self.parallel_runtime = target.is_host and parallel_runtime_available() or not target.is_host

    # ---------------------------------------------------------------- driver
    def emit(self) -> ir.Module:
        params = self.func.params
        fn_type = ir.FunctionType(I32, [llvm_type(t.dtype).as_pointer() for t in params])
        self.fn = ir.Function(self.module, fn_type, name=symbol_name(self.func))
        self.fn.attributes.add("nounwind")
        for arg, tensor in zip(self.fn.args, params):
            arg.name = tensor.name
            arg.add_attribute("noalias")
            self.pointers[id(tensor)] = arg
        entry = self.fn.append_basic_block("entry")
        start = self.fn.append_basic_block("start")
        self.allocas = ir.IRBuilder(entry)  # stack slots go to the entry block, outside every loop
        self.stack_bytes = 0
        status = self.allocas.alloca(I32, name=STATUS)
        self.allocas.store(ir.Constant(I32, 0), status)
        self.pointers[STATUS] = status  # type: ignore[index]
        self.builder = ir.IRBuilder(start)
        self.stmt(self.func.body)
        self.builder.ret(self.builder.load(status))
        self.allocas.branch(start)
        return self.module

    # ---------------------------------------------------------------- helpers
    def intrinsic(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
        full = f"llvm.{name}.{_suffix(args[0] if args else ret)}"
        if full in self.module.globals:
            return self.module.globals[full]
        return ir.Function(self.module, ir.FunctionType(ret, args), name=full)

    def external(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
        if name in self.module.globals:
            return self.module.globals[name]
        return ir.Function(self.module, ir.FunctionType(ret, args), name=name)

    def address(self, tensor: Tensor, indices: tuple[Expr, ...]) -> ir.Value:
        return self.flat_address(tensor, [self.expr(i) for i in indices])

    def flat_address(self, tensor: Tensor, indices: list[ir.Value]) -> ir.Value:
        return self.builder.gep(self.pointers[id(tensor)], [self.flat_index(tensor, indices)], inbounds=True)

    def flat_index(self, tensor: Tensor, indices: list[ir.Value]) -> ir.Value:
        """Row-major: the last index varies fastest."""
        flat: ir.Value | None = None
        stride = 1
        for term, extent in reversed(list(zip(indices, tensor.shape))):
            if stride != 1:
                term = self.builder.mul(term, ir.Constant(I64, stride))
            flat = term if flat is None else self.builder.add(flat, term)
            stride *= extent
        return flat if flat is not None else ir.Constant(I64, 0)   # a 0-d tensor: its one element

    def prefetch(self, tensor: Tensor, indices: tuple[Expr, ...]) -> None:
        """llvm.prefetch (read, locality 3, data cache). The address is computed without
        ``inbounds``: a prefetch may point past the tensor's end (it never faults there)."""
        flat = self.flat_index(tensor, [self.expr(i) for i in indices])
        pointer = self.builder.gep(self.pointers[id(tensor)], [flat], inbounds=False)
        i32 = ir.IntType(32)
        hint = self.external("llvm.prefetch.p0", ir.VoidType(), [pointer.type, i32, i32, i32])
        self.builder.call(hint, [pointer, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])

    def load(self, tensor: Tensor, indices: tuple[Expr, ...]) -> ir.Value:
        return self.builder.load(self.address(tensor, indices), align=itemsize(tensor.dtype))

    def store(self, value: ir.Value, tensor: Tensor, indices: tuple[Expr, ...]) -> None:
        self.builder.store(value, self.address(tensor, indices), align=itemsize(tensor.dtype))

    def broadcast(self, value: ir.Value, n: int) -> ir.Value:
        vector_type = ir.VectorType(value.type, n)
        one = self.builder.insert_element(ir.Constant(vector_type, None), value, ir.Constant(ir.IntType(32), 0))
        return self.builder.shuffle_vector(one, ir.Constant(vector_type, None),
                                           ir.Constant(ir.VectorType(ir.IntType(32), n), [0] * n))

    def _contiguous(self, indices: tuple[Expr, ...]) -> bool:
        last = indices[-1] if indices else None
        return isinstance(last, Ramp) and last.stride == 1 and all(lanes(i.dtype) == 1 for i in indices[:-1])

    def _lane_addresses(self, tensor: Tensor, indices: tuple[Expr, ...], n: int) -> list[ir.Value]:
        """One address per lane, for gathers and scatters."""
        values = [self.expr(i) for i in indices]
        addresses = []
        for lane in range(n):
            lane_index = ir.Constant(ir.IntType(32), lane)
            scalars = [self.builder.extract_element(v, lane_index) if isinstance(v.type, ir.VectorType) else v
                       for v in values]
            addresses.append(self.flat_address(tensor, scalars))
        return addresses

    def vector_load(self, e: Load) -> ir.Value:
        n = lanes(e.dtype)
        vector_type = llvm_type(e.dtype)
        if self._contiguous(e.indices):
            ramp = e.indices[-1]
            assert isinstance(ramp, Ramp)
            pointer = self.address(e.tensor, e.indices[:-1] + (ramp.base,))
            return self.builder.load(self.builder.bitcast(pointer, vector_type.as_pointer()),
                                     align=itemsize(e.tensor.dtype))
        result = ir.Constant(vector_type, None)
        for lane, address in enumerate(self._lane_addresses(e.tensor, e.indices, n)):
            scalar = self.builder.load(address, align=itemsize(e.tensor.dtype))
            result = self.builder.insert_element(result, scalar, ir.Constant(ir.IntType(32), lane))
        return result

    def vector_store(self, value: ir.Value, tensor: Tensor, indices: tuple[Expr, ...]) -> None:
        if self._contiguous(indices):
            ramp = indices[-1]
            assert isinstance(ramp, Ramp)
            pointer = self.address(tensor, indices[:-1] + (ramp.base,))
            self.builder.store(value, self.builder.bitcast(pointer, value.type.as_pointer()),
                               align=itemsize(tensor.dtype))
            return
        for lane, address in enumerate(self._lane_addresses(tensor, indices, value.type.count)):
            scalar = self.builder.extract_element(value, ir.Constant(ir.IntType(32), lane))
            self.builder.store(scalar, address, align=itemsize(tensor.dtype))

    def combine(self, op: str, a: ir.Value, b: ir.Value, dtype: str) -> ir.Value:
        """Arithmetic on two values of ``dtype``."""
        bld = self.builder
        if is_float(dtype):
            if op == "add":
                return bld.fadd(a, b, flags=FAST_MATH)
            if op == "sub":
                return bld.fsub(a, b, flags=FAST_MATH)
            if op == "mul":
                return bld.fmul(a, b, flags=FAST_MATH)
            if op == "div":
                return bld.fdiv(a, b, flags=FAST_MATH)
            if op in ("max", "min"):  # NaN-propagating, as numpy's maximum / max
                name = "maximum" if op == "max" else "minimum"
                return bld.call(self.intrinsic(name, a.type, [a.type, a.type]), [a, b])
            if op in ("floordiv", "mod"):
                floor = self.intrinsic("floor", a.type, [a.type])
                q = bld.call(floor, [bld.fdiv(a, b)])
                return q if op == "floordiv" else bld.fsub(a, bld.fmul(q, b))
            raise NotImplementedError(op)
        if op == "add":
            return bld.add(a, b)
        if op == "sub":
            return bld.sub(a, b)
        if op == "mul":
            return bld.mul(a, b)
        if op in ("max", "min"):
            return bld.select(bld.icmp_signed(">" if op == "max" else "<", a, b), a, b)
        if op in ("floordiv", "mod"):
            return self.floor_divmod(op, a, b)
        raise NotImplementedError(op)

    def floor_divmod(self, op: str, a: ir.Value, b: ir.Value) -> ir.Value:
        """Python's // and % on integers; division by zero gives 0 (as numpy), never a trap."""
        bld = self.builder
        zero_, one = zero(a.type), (ir.Constant(a.type, [1] * a.type.count) if isinstance(a.type, ir.VectorType)
                                    else ir.Constant(a.type, 1))
        b_is_zero = bld.icmp_signed("==", b, zero_)
        safe_b = bld.select(b_is_zero, one, b)
        q, r = bld.sdiv(a, safe_b), bld.srem(a, safe_b)
        signs_differ = bld.icmp_signed("!=", bld.icmp_signed("<", r, zero_), bld.icmp_signed("<", safe_b, zero_))
        adjust = bld.and_(bld.icmp_signed("!=", r, zero_), signs_differ)
        result = bld.select(adjust, bld.sub(q, one), q) if op == "floordiv" else bld.select(adjust, bld.add(r, safe_b), r)
        return bld.select(b_is_zero, zero_, result)

    # ---------------------------------------------------------------- expressions
    def expr(self, e: Expr) -> ir.Value:
        bld = self.builder
        if isinstance(e, Const):
            return ir.Constant(llvm_type(e.dtype), e.value)
        if isinstance(e, Var):
            if e not in self.values:
                raise ValueError(f"variable {e.name} is used outside the loop or let that defines it")
            return self.values[e]
        if isinstance(e, Load):
            if lanes(e.dtype) > 1:
                return self.vector_load(e)
            return self.load(e.tensor, e.indices)
        if isinstance(e, Broadcast):
            return self.broadcast(self.expr(e.value), e.lanes)
        if isinstance(e, Ramp):
            base = self.broadcast(self.expr(e.base), e.lanes)
            steps = ir.Constant(ir.VectorType(base.type.element, e.lanes), [k * e.stride for k in range(e.lanes)])
            return bld.add(base, steps)
        if isinstance(e, Cast):
            return self.cast(self.expr(e.value), e.value.dtype, e.dtype)
        if isinstance(e, Select):
            if _reads_memory(e.true_value) or _reads_memory(e.false_value):
                return self.branching_select(e)
            return bld.select(self.expr(e.cond), self.expr(e.true_value), self.expr(e.false_value))
        if isinstance(e, Call):
            return self.call(e)
        if isinstance(e, BinOp):
            a, b = self.expr(e.a), self.expr(e.b)
            if e.op == "and":
                return bld.and_(a, b)
            if e.op == "or":
                return bld.or_(a, b)
            if e.op in _FLOAT_CMP:
                if is_float(e.a.dtype):  # ordered comparisons, except != which holds for NaN as in numpy
                    return bld.fcmp_ordered(_FLOAT_CMP[e.op], a, b) if e.op != "ne" \
                        else bld.fcmp_unordered("!=", a, b)
                return bld.icmp_signed(_FLOAT_CMP[e.op], a, b)
            return self.combine(e.op, a, b, e.dtype)
        raise NotImplementedError(f"cannot emit {type(e).__name__}")

    def branching_select(self, e: Select) -> ir.Value:
        cond = self.expr(e.cond)
        result_type = llvm_type(e.dtype)
        with self.builder.if_else(cond) as (then, otherwise):
            with then:
                t_value, t_block = self.expr(e.true_value), self.builder.block
            with otherwise:
                f_value, f_block = self.expr(e.false_value), self.builder.block
        phi = self.builder.phi(result_type)
        phi.add_incoming(t_value, t_block)
        phi.add_incoming(f_value, f_block)
        return phi

    def splat(self, t: ir.Type, value: float | int) -> ir.Constant:
        """A constant of type ``t`` (scalar or vector) holding ``value`` in every lane."""
        if isinstance(t, ir.VectorType):
            return ir.Constant(t, [value] * t.count)
        return ir.Constant(t, value)

    def fast_exp(self, x: ir.Value) -> ir.Value:
        """exp(x) inline, lane-parallel: x = n·ln2 + r with |r| <= ln2/2, exp(r) by its Taylor
        polynomial (error below float precision), 2**n assembled in the exponent bits.

        LLVM's own llvm.exp on a vector becomes one libm call per lane; this stays in registers.
        """
        bld = self.builder
        double = "double" in str(x.type)
        bits, mantissa, bias, degree = (64, 52, 1023, 13) if double else (32, 23, 127, 7)
        high, low = (709.78, -745.13) if double else (88.7228, -103.97)
        int_type = ir.IntType(bits)
        vec_int = ir.VectorType(int_type, x.type.count) if isinstance(x.type, ir.VectorType) else int_type
        clamped = bld.call(self.intrinsic("minimum", x.type, [x.type, x.type]),
                           [bld.call(self.intrinsic("maximum", x.type, [x.type, x.type]), [x, self.splat(x.type, low)]),
                            self.splat(x.type, high)])
        n = bld.call(self.intrinsic("rint", x.type, [x.type]), [bld.fmul(clamped, self.splat(x.type, 1.4426950408889634))])
        # Cody-Waite: ln2 = hi + lo with hi short enough that n * hi is exact in this precision.
        ln2_hi, ln2_lo = (0.6931471803691238, 1.9082149292705877e-10) if double else (0.693359375, -2.12194440e-4)
        r = bld.fsub(clamped, bld.fmul(n, self.splat(x.type, ln2_hi)))
        r = bld.fsub(r, bld.fmul(n, self.splat(x.type, ln2_lo)))
        poly = self.splat(x.type, 1.0 / math.factorial(degree))
        for k in range(degree - 1, -1, -1):
            poly = bld.call(self.intrinsic("fma", x.type, [x.type] * 3), [poly, r, self.splat(x.type, 1.0 / math.factorial(k))])
        # 2**n as two factors 2**(n//2) * 2**(n - n//2): each stays a normal number, so values
        # near the overflow edge and the gradual underflow into subnormals both come out right.
        whole = bld.fptosi(n, vec_int)
        half = bld.ashr(whole, self.splat(vec_int, 1))
        result = poly
        for part in (half, bld.sub(whole, half)):
            scale = bld.shl(bld.add(part, self.splat(vec_int, bias)), self.splat(vec_int, mantissa))
            result = bld.fmul(result, bld.bitcast(scale, x.type))
        result = bld.select(bld.fcmp_ordered("<", x, self.splat(x.type, low)), self.splat(x.type, 0.0), result)
        result = bld.select(bld.fcmp_ordered(">", x, self.splat(x.type, high)), self.splat(x.type, math.inf), result)
        return bld.select(bld.fcmp_unordered("uno", x, x), x, result)  # NaN stays NaN

    def call(self, e: Call) -> ir.Value:
        x = self.expr(e.args[0])
        if e.fn == "exp" and is_float(e.dtype):
            return self.fast_exp(x)
        if e.fn == "not":
            return self.builder.not_(x)
        if e.fn == "abs" and not is_float(e.dtype):
            negative = self.builder.icmp_signed("<", x, zero(x.type))
            return self.builder.select(negative, self.builder.neg(x), x)
        name = {"abs": "fabs"}.get(e.fn, e.fn)
        return self.builder.call(self.intrinsic(name, x.type, [x.type]), [x])

    def cast(self, x: ir.Value, src: str, dst: str) -> ir.Value:
        bld, to = self.builder, llvm_type(dst)
        if dst == "bool":
            return bld.fcmp_unordered("!=", x, zero(x.type)) if is_float(src) \
                else bld.icmp_signed("!=", x, zero(x.type))
        if src == "bool":
            return bld.uitofp(x, to) if is_float(dst) else bld.zext(x, to)
        if is_float(src) and is_float(dst):
            return bld.fpext(x, to) if itemsize(dst) > itemsize(src) else bld.fptrunc(x, to)
        if is_float(src):
            return bld.fptosi(x, to)
        if is_float(dst):
            return bld.sitofp(x, to)
        return bld.sext(x, to) if itemsize(dst) > itemsize(src) else bld.trunc(x, to)

    # ---------------------------------------------------------------- statements
    def stmt(self, s: Stmt) -> None:
        if isinstance(s, Seq):
            for child in s.stmts:
                self.stmt(child)
        elif isinstance(s, For):
            self.loop(s)
        elif isinstance(s, Store):
            value = self.expr(s.value)
            if lanes(s.value.dtype) > 1:
                self.vector_store(value, s.tensor, s.indices)
            else:
                self.store(value, s.tensor, s.indices)
        elif isinstance(s, Prefetch):
            self.prefetch(s.tensor, s.indices)
        elif isinstance(s, Accumulate):
            op = "add" if s.op == "sum" else s.op
            if lanes(s.value.dtype) > 1:
                old = self.vector_load(Load(s.tensor, s.indices))
                self.vector_store(self.combine(op, old, self.expr(s.value), s.value.dtype), s.tensor, s.indices)
            else:
                old = self.load(s.tensor, s.indices)
                self.store(self.combine(op, old, self.expr(s.value), s.tensor.dtype), s.tensor, s.indices)
        elif isinstance(s, Alloc):
            self.alloc(s)
        elif isinstance(s, If):
            cond = self.expr(s.cond)
            if s.else_body is None:
                with self.builder.if_then(cond):
                    self.stmt(s.then_body)
            else:
                with self.builder.if_else(cond) as (then, otherwise):
                    with then:
                        self.stmt(s.then_body)
                    with otherwise:
                        self.stmt(s.else_body)
        elif isinstance(s, Let):
            self.values[s.var] = self.expr(s.value)
            self.stmt(s.body)
            del self.values[s.var]
        else:
            raise NotImplementedError(f"cannot emit {type(s).__name__}")

    def loop(self, s: For) -> None:
        if s.kind == "parallel" and self.parallel_runtime:
            self.parallel_loop(s)
        else:
            self.counted_loop(s, ir.Constant(I64, 0), self.expr(s.extent))

    def counted_loop(self, s: For, start: ir.Value, stop: ir.Value) -> None:
        """``for var in range(start, stop): body`` with a phi for the counter."""
        bld = self.builder
        before = bld.block
        header = self.fn.append_basic_block(f"{s.var.name}.header")
        body = self.fn.append_basic_block(f"{s.var.name}.body")
        exit_ = self.fn.append_basic_block(f"{s.var.name}.exit")
        bld.branch(header)
        bld.position_at_end(header)
        counter = bld.phi(I64, name=s.var.name)
        counter.add_incoming(start, before)
        bld.cbranch(bld.icmp_signed("<", counter, stop), body, exit_)
        bld.position_at_end(body)
        self.values[s.var] = counter
        self.stmt(s.body)
        del self.values[s.var]
        counter.add_incoming(bld.add(counter, ir.Constant(I64, 1), name=f"{s.var.name}.next"), bld.block)
        bld.branch(header)
        bld.position_at_end(exit_)

    def parallel_loop(self, s: For) -> None:
        """Outline the loop body into ``body(closure)`` and run it on the OpenMP team.

        The closure is an array of i64 holding the extent, every variable in scope and every
        tensor pointer; each thread takes one contiguous chunk of the iterations.
        """
        i8p = ir.IntType(8).as_pointer()
        variables = [(v, val) for v, val in self.values.items() if val.type == I64]
        tensors = list(self.pointers.items())
        slots = [self.expr(s.extent)] + [val for _, val in variables] + \
            [self.builder.ptrtoint(p, I64) for _, p in tensors]
        closure = self.allocas.alloca(ir.ArrayType(I64, len(slots)), name=f"{s.var.name}.closure")
        for n, value in enumerate(slots):
            slot = self.builder.gep(closure, [ir.Constant(ir.IntType(32), 0), ir.Constant(ir.IntType(32), n)])
            self.builder.store(value, slot)

        saved = (self.fn, self.builder, self.allocas, dict(self.values), dict(self.pointers), self.stack_bytes)
        self.outlined_count = getattr(self, "outlined_count", 0) + 1  # a loop may appear in main and tail copies
        outlined = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [i8p]),
                               name=f"{self.fn.name}.{s.var.name}.parallel{self.outlined_count}")
        outlined.linkage = "internal"
        outlined.attributes.add("nounwind")
        self.fn = outlined
        entry, start = outlined.append_basic_block("entry"), outlined.append_basic_block("start")
        self.allocas, self.builder = ir.IRBuilder(entry), ir.IRBuilder(start)
        self.stack_bytes = 0
        data = self.builder.bitcast(outlined.args[0], ir.ArrayType(I64, len(slots)).as_pointer())

        def slot(n: int) -> ir.Value:
            return self.builder.load(self.builder.gep(data, [ir.Constant(ir.IntType(32), 0),
                                                             ir.Constant(ir.IntType(32), n)]))
        extent = slot(0)
        self.values = {v: slot(1 + n) for n, (v, _) in enumerate(variables)}
        self.pointers = {key: self.builder.inttoptr(slot(1 + len(variables) + n), pointer.type)
                         for n, (key, pointer) in enumerate(tensors)}
        i32 = ir.IntType(32)
        thread = self.builder.sext(self.builder.call(self.external("omp_get_thread_num", i32, []), []), I64)
        threads = self.builder.sext(self.builder.call(self.external("omp_get_num_threads", i32, []), []), I64)
        chunk = self.builder.sdiv(self.builder.add(extent, self.builder.sub(threads, ir.Constant(I64, 1))), threads)
        lo = self.builder.mul(thread, chunk)
        hi = self.builder.add(lo, chunk)
        hi = self.builder.select(self.builder.icmp_signed("<", hi, extent), hi, extent)
        self.counted_loop(s, lo, hi)
        self.builder.ret_void()
        self.allocas.branch(start)
        self.fn, self.builder, self.allocas, self.values, self.pointers, self.stack_bytes = saved

        gomp = self.external("GOMP_parallel", ir.VoidType(),
                             [outlined.type, i8p, ir.IntType(32), ir.IntType(32)])
        self.builder.call(gomp, [outlined, self.builder.bitcast(closure, i8p),
                                 ir.Constant(ir.IntType(32), 0), ir.Constant(ir.IntType(32), 0)])

    def alloc(self, s: Alloc) -> None:
        t = s.tensor
        element = llvm_type(t.dtype)
        count = max(1, t.size)
        nbytes = count * itemsize(t.dtype)
        if nbytes <= STACK_LIMIT and self.stack_bytes + nbytes <= STACK_BUDGET:
            self.stack_bytes += nbytes
            slot = self.allocas.alloca(ir.ArrayType(element, count), name=t.name)
            self.pointers[id(t)] = self.allocas.bitcast(slot, element.as_pointer())
            self.stmt(s.body)
            del self.pointers[id(t)]  # out of scope: a later parallel closure must not carry it
            return
        i8p = ir.IntType(8).as_pointer()
        aligned_alloc = self.external("aligned_alloc", i8p, [I64, I64])
        free = self.external("free", ir.VoidType(), [i8p])
        padded = (nbytes + 63) // 64 * 64  # aligned_alloc wants a multiple of the alignment
        raw = self.builder.call(aligned_alloc, [ir.Constant(I64, 64), ir.Constant(I64, padded)])
        failed = self.builder.icmp_unsigned("==", raw, ir.Constant(i8p, None))
        with self.builder.if_else(failed) as (on_failure, allocated):
            with on_failure:
                self.builder.store(ir.Constant(I32, OUT_OF_MEMORY), self.pointers[STATUS])  # type: ignore[index]
            with allocated:
                self.pointers[id(t)] = self.builder.bitcast(raw, element.as_pointer(), name=t.name)
                self.stmt(s.body)
                self.builder.call(free, [raw])
                del self.pointers[id(t)]  # defined in this branch only: nothing after it may use it


def emit_llvm(func: Function, target: Target) -> ir.Module:
    return LLVMEmitter(func, target).emit()
