"""compute() programs against numpy references, and every error the frontend and kernels raise.

Shapes include sizes that divide nothing (7, 13, 33) and 1; data is seeded and random.
"""
from __future__ import annotations

import numpy as np
import pytest

import minicompiler as mc

RNG = np.random.default_rng(1234)


def rand(*shape: int, dtype: str = "float32") -> np.ndarray:
    if dtype.startswith("int"):
        return RNG.integers(-5, 6, size=shape).astype(dtype)
    return RNG.standard_normal(shape).astype(dtype)


def close(got: np.ndarray, want: np.ndarray, reduction: int = 1) -> None:
    if got.dtype.kind in "iu":
        np.testing.assert_array_equal(got, want)
    elif got.dtype == np.float64:
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * reduction)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5 * reduction)


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (7, 13, 33), (33, 7, 13), (16, 16, 16)])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
def test_matmul(m: int, n: int, k: int, dtype: str) -> None:
    A, B = mc.placeholder((m, k), dtype, "A"), mc.placeholder((k, n), dtype, "B")
    r = mc.reduce_axis(k, "r")
    C = mc.compute((m, n), lambda i, j: mc.sum(A[i, r] * B[r, j], axis=r), name="C")
    a, b = rand(m, k, dtype=dtype), rand(k, n, dtype=dtype)
    close(mc.build(C)(a, b), a @ b, k)


def test_batched_matmul_with_transposed_operand() -> None:
    A, B = mc.placeholder((3, 7, 5), name="A"), mc.placeholder((3, 13, 5), name="B")
    r = mc.reduce_axis(5, "r")
    C = mc.compute((3, 7, 13), lambda b, i, j: mc.sum(A[b, i, r] * B[b, j, r], axis=r))
    a, b = rand(3, 7, 5), rand(3, 13, 5)
    close(mc.build(C)(a, b), a @ b.transpose(0, 2, 1), 5)


def test_elementwise_math_and_casts() -> None:
    X = mc.placeholder((7, 13), name="X")
    P = mc.placeholder((7, 13), name="P")
    N = mc.placeholder((7, 13), "int32", name="N")
    Y = mc.compute((7, 13), lambda i, j: mc.exp(X[i, j]) * 0.5 + mc.log(P[i, j]) - mc.sqrt(P[i, j])
                   + mc.tanh(X[i, j]) + mc.abs(X[i, j]) + mc.maximum(X[i, j], 0.0) - mc.minimum(X[i, j], P[i, j])
                   + mc.where(X[i, j] > 0, X[i, j], -X[i, j] * 2.0) + N[i, j].astype("float32")
                   + mc.cast(X[i, j] * 3.0, "int32").astype("float32"))
    x, p, n = rand(7, 13), np.abs(rand(7, 13)) + 0.1, rand(7, 13, dtype="int32")
    want = (np.exp(x) * 0.5 + np.log(p) - np.sqrt(p) + np.tanh(x) + np.abs(x) + np.maximum(x, 0)
            - np.minimum(x, p) + np.where(x > 0, x, -x * 2) + n.astype(np.float32)
            + (x * 3).astype(np.int32).astype(np.float32))
    close(mc.build(Y, inputs=[X, P, N])(x, p, n), want.astype(np.float32), 4)


def test_integer_division_and_modulo_follow_python() -> None:
    X = mc.placeholder((13,), "int64", name="X")
    Y = mc.compute((13,), lambda i: X[i] // 3 * 100 + X[i] % 3 + (X[i] // 0))
    x = np.arange(-6, 7, dtype=np.int64)
    np.testing.assert_array_equal(mc.build(Y)(x), x // 3 * 100 + x % 3 + 0)  # // 0 gives 0, as numpy


@pytest.mark.parametrize("op", ["sum", "max", "min"])
def test_reductions_over_one_and_two_axes(op: str) -> None:
    X = mc.placeholder((7, 13, 5), name="X")
    r1, r2 = mc.reduce_axis(13, "r1"), mc.reduce_axis(5, "r2")
    fn = getattr(mc, op)
    one = mc.compute((7, 5), lambda i, k: fn(X[i, r1, k], axis=r1))
    both = mc.compute((7,), lambda i: fn(X[i, r1, r2], axis=(r1, r2)))
    x = rand(7, 13, 5)
    npfn = getattr(np, op)
    close(mc.build(one)(x), npfn(x, axis=1), 13)
    close(mc.build(both)(x), npfn(x, axis=(1, 2)), 65)


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_conv1d_with_stride(stride: int) -> None:
    n, w = 33, 4
    out = (n - w) // stride + 1
    X, W = mc.placeholder((n,), name="X"), mc.placeholder((w,), name="W")
    r = mc.reduce_axis(w, "r")
    Y = mc.compute((out,), lambda i: mc.sum(X[i * stride + r] * W[r], axis=r))
    x, wt = rand(n), rand(w)
    want = np.array([np.dot(x[i * stride:i * stride + w], wt) for i in range(out)], np.float32)
    close(mc.build(Y)(x, wt), want, w)


def conv2d_reference(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, f, oh, ow), np.float64)
    for y in range(oh):
        for xx in range(ow):
            patch = xp[:, :, y * stride:y * stride + kh, xx * stride:xx * stride + kw]
            out[:, :, y, xx] = np.einsum("ncij,fcij->nf", patch, w)
    return out.astype(np.float32)


@pytest.mark.parametrize("stride,pad,size", [(1, 1, 7), (2, 1, 9), (1, 0, 5), (2, 2, 8)])
def test_conv2d_nchw_with_padding_and_stride(stride: int, pad: int, size: int) -> None:
    n, c, f, k = 2, 3, 4, 3
    X, W = mc.placeholder((n, c, size, size), name="X"), mc.placeholder((f, c, k, k), name="W")
    rc, ry, rx = mc.reduce_axis(c, "rc"), mc.reduce_axis(k, "ry"), mc.reduce_axis(k, "rx")
    out = (size + 2 * pad - k) // stride + 1

    def body(b, o, y, x):  # noqa: ANN001, ANN202
        iy, ix = y * stride + ry - pad, x * stride + rx - pad
        inside = (iy >= 0) & (iy < size) & (ix >= 0) & (ix < size)
        return mc.sum(mc.where(inside, X[b, rc, iy, ix], 0.0) * W[o, rc, ry, rx], axis=(rc, ry, rx))

    Y = mc.compute((n, f, out, out), body, name="Y")
    x, w = rand(n, c, size, size), rand(f, c, k, k)
    close(mc.build(Y)(x, w), conv2d_reference(x, w, stride, pad), c * k * k)


def test_max_pool_2x2_stride_2() -> None:
    X = mc.placeholder((2, 3, 8, 6), name="X")
    ry, rx = mc.reduce_axis(2, "ry"), mc.reduce_axis(2, "rx")
    Y = mc.compute((2, 3, 4, 3), lambda n, c, y, x: mc.max(X[n, c, 2 * y + ry, 2 * x + rx], axis=(ry, rx)))
    x = rand(2, 3, 8, 6)
    close(mc.build(Y)(x), x.reshape(2, 3, 4, 2, 3, 2).max(axis=(3, 5)))


def softmax(rows: int, cols: int) -> tuple[mc.Tensor, mc.Tensor]:
    X = mc.placeholder((rows, cols), name="X")
    r1, r2 = mc.reduce_axis(cols, "r"), mc.reduce_axis(cols, "r")
    m = mc.compute((rows,), lambda i: mc.max(X[i, r1], axis=r1), name="m")
    e = mc.compute((rows, cols), lambda i, j: mc.exp(X[i, j] - m[i]), name="e")
    s = mc.compute((rows,), lambda i: mc.sum(e[i, r2], axis=r2), name="s")
    return X, mc.compute((rows, cols), lambda i, j: e[i, j] / s[i], name="y")


@pytest.mark.parametrize("rows,cols", [(1, 1), (7, 13), (4, 33), (3, 1000)])
def test_softmax_is_numerically_stable(rows: int, cols: int) -> None:
    _, y = softmax(rows, cols)
    x = rand(rows, cols) * 30  # large logits: a naive exp would overflow
    want = np.exp(x - x.max(axis=1, keepdims=True))
    close(mc.build(y)(x), want / want.sum(axis=1, keepdims=True))


def test_layernorm_in_stages() -> None:
    X = mc.placeholder((5, 33), name="X")
    r1, r2 = mc.reduce_axis(33, "r"), mc.reduce_axis(33, "r")
    mean = mc.compute((5,), lambda i: mc.sum(X[i, r1], axis=r1), name="mean_sum")
    centred = mc.compute((5, 33), lambda i, j: X[i, j] - mean[i] / 33.0, name="centred")
    var = mc.compute((5,), lambda i: mc.sum(centred[i, r2] * centred[i, r2], axis=r2), name="var_sum")
    Y = mc.compute((5, 33), lambda i, j: centred[i, j] / mc.sqrt(var[i] / 33.0 + 1e-5), name="Y")
    x = rand(5, 33)
    c = x - x.mean(axis=1, keepdims=True)
    close(mc.build(Y)(x), c / np.sqrt((c * c).mean(axis=1, keepdims=True) + 1e-5), 33)


@pytest.mark.parametrize("heads,tokens,dim", [(2, 7, 16), (4, 33, 8), (1, 1, 4)])
def test_attention(heads: int, tokens: int, dim: int) -> None:
    Q, K, V = (mc.placeholder((heads, tokens, dim), name=n) for n in "QKV")
    d = mc.reduce_axis(dim, "d")
    scale = float(1 / np.sqrt(dim))
    S = mc.compute((heads, tokens, tokens), lambda h, i, j: mc.sum(Q[h, i, d] * K[h, j, d] * scale, axis=d))
    j1, j2, j3 = (mc.reduce_axis(tokens, "j") for _ in range(3))
    m = mc.compute((heads, tokens), lambda h, i: mc.max(S[h, i, j1], axis=j1))
    E = mc.compute((heads, tokens, tokens), lambda h, i, j: mc.exp(S[h, i, j] - m[h, i]))
    l = mc.compute((heads, tokens), lambda h, i: mc.sum(E[h, i, j2], axis=j2))
    U = mc.compute((heads, tokens, dim), lambda h, i, e: mc.sum(E[h, i, j3] * V[h, j3, e], axis=j3))
    O = mc.compute((heads, tokens, dim), lambda h, i, e: U[h, i, e] / l[h, i])
    q, k, v = rand(heads, tokens, dim), rand(heads, tokens, dim), rand(heads, tokens, dim)
    s = q @ k.transpose(0, 2, 1) / np.sqrt(dim)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    close(mc.build(O)(q, k, v), (p / p.sum(axis=-1, keepdims=True)) @ v, tokens)


def test_relu_mlp_two_stages() -> None:
    X, W1, W2 = mc.placeholder((5, 13), name="X"), mc.placeholder((13, 7), name="W1"), mc.placeholder((7, 3), name="W2")
    r1, r2 = mc.reduce_axis(13, "r"), mc.reduce_axis(7, "r")
    H = mc.compute((5, 7), lambda i, j: mc.sum(X[i, r1] * W1[r1, j], axis=r1), name="H")
    A = mc.compute((5, 7), lambda i, j: mc.maximum(H[i, j], 0.0), name="A")
    Y = mc.compute((5, 3), lambda i, j: mc.sum(A[i, r2] * W2[r2, j], axis=r2), name="Y")
    x, w1, w2 = rand(5, 13), rand(13, 7), rand(7, 3)
    close(mc.build(Y)(x, w1, w2), np.maximum(x @ w1, 0) @ w2, 13)


def test_printed_ir_and_kernel_views() -> None:
    _, y = softmax(3, 4)
    text = str(mc.lower(y))
    assert text.startswith("def y(X: float32[3, 4], y: float32[3, 4]):") and "for" in text and "exp(" in text
    kernel = mc.build(y)
    assert "define i32" in kernel.llvm_ir and kernel.assembly.strip()


# ------------------------------------------------------------------------------------------- errors

def test_reads_outside_a_tensor_are_refused_when_defined() -> None:
    A = mc.placeholder((8,), name="A")
    for fn in (lambda i: A[i + 1], lambda i: A[i - 1], lambda i: A[2 * i], lambda i: A[i % 9 + 1]):
        with pytest.raises(ValueError, match="A"):
            mc.build(mc.compute((8,), fn))
    with pytest.raises(ValueError, match="dimension"):
        mc.compute((8,), lambda i: A[i, i])


def test_definition_errors() -> None:
    A = mc.placeholder((4, 4), name="A")
    r = mc.reduce_axis(4, "r")
    with pytest.raises(ValueError, match="whole body"):
        mc.compute((4,), lambda i: mc.sum(A[i, r], axis=r) * 2)
    with pytest.raises(ValueError, match="reduction axis"):
        mc.compute((4,), lambda i: A[i, r])
    with pytest.raises(TypeError, match="index variable"):
        mc.compute((4, 4), lambda i: A[i, i])
    with pytest.raises(TypeError, match="integer"):
        A[0.5, 0]
    with pytest.raises(TypeError):
        mc.sum(A[0, r], axis=0)
    with pytest.raises(TypeError, match="conditions"):
        mc.compute((4,), lambda i: A[i, 0] > 0)


@pytest.mark.parametrize("dtype", ["float16", "bool", "complex64", "uint8", "object"])
def test_unsupported_dtypes(dtype: str) -> None:
    with pytest.raises(TypeError, match="unsupported dtype"):
        mc.placeholder((3,), dtype)


@pytest.mark.parametrize("shape,error", [((-1,), ValueError), ((2.5,), TypeError), (("a",), TypeError),
                                         ((True,), TypeError)])
def test_bad_shapes(shape: tuple, error: type) -> None:
    with pytest.raises(error):
        mc.placeholder(shape)


def test_kernel_argument_checks() -> None:
    A, B = mc.placeholder((3, 4), name="A"), mc.placeholder((4,), name="B")
    kernel = mc.build(mc.compute((3,), lambda i: A[i, 0] + B[i]))
    a, b = rand(3, 4), rand(4)
    with pytest.raises(TypeError, match="takes 2"):
        kernel(a)
    with pytest.raises(TypeError, match="numpy array"):
        kernel([[1.0] * 4] * 3, b)
    with pytest.raises(TypeError, match="dtype"):
        kernel(a.astype(np.float64), b)
    with pytest.raises(ValueError, match="shape"):
        kernel(rand(4, 3), b)
    with pytest.raises(ValueError, match="ascontiguousarray"):
        kernel(np.asfortranarray(a), b)
    with pytest.raises(ValueError, match="overlap"):
        kernel(a, b, out=b[:3])
    good = kernel(a, b)
    np.testing.assert_allclose(good, a[:, 0] + b[:3])
