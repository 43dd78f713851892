"""The hot kernels on the GPU, as complete CUDA functions (one ``cupy.RawModule`` per dtype).

Each kernel runs one CUDA thread per *output* element ``i`` (a grid-stride
loop covers any size) and computes it from the inputs it needs (a gather),
so no two threads ever write the same element: no atomics, and results are
bit-for-bit deterministic.  The kernels compute exactly the values of the
readable reference in :mod:`minicnn.nn.functional` (the tests check
it on a GPU where there is one; everywhere, they compile the CUDA source with
NVRTC, NVIDIA's runtime compiler, which needs no GPU, and run the kernel
bodies as C on the CPU).

Notation: N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW as in the reference;
``P = OH*OW``, ``K = C*KH*KW``.  All index arithmetic is 64-bit
(``long long``), so arrays past 2**31 elements index correctly.

``im2col``      i -> element (k, n, p) of a K-major (K, N, P) array
                (returned as an (N, K, P) view, so Conv2d's one big matrix
                product needs no copy): reads input pixel
                (n, c, oh*SH - PH + ii, ow*SW - PW + j), or ``pad`` outside.
``col2im``      i -> input pixel (n, c, h, w): sums the column entries
                of every window that covers it, i.e. every (ii, j) with
                h + PH - ii = oh*SH (0 <= oh < OH) and likewise for w.  This is
                the *gather* form of the reference's scatter-add.
``maxpool_fwd`` i -> output (n, c, oh, ow): scans its window in the order
                k = ii*KW + j, keeps the first maximum; border = -inf.
``maxpool_bwd`` i -> input pixel: sums the gradients of the windows
                covering it whose argmax is this pixel.
``transpose01`` i -> out[b, a, p] = x[a, b, p] + bias[a]: Conv2d's axis swap
                and its bias in one pass instead of a copy and an addition.
``relu_bwd``    i -> dx = y > 0 ? g : 0 * g, one pass instead of a comparison
                and a product (0 * g keeps the reference's -0 and NaN).
``adam``        i -> one element of every parameter of an optimizer step:
                the Adam rule (see :mod:`minicnn.optim.adam`) for all of a
                model's parameters in one launch, through tables of their
                addresses, where the reference takes about ten array
                operations per parameter.

:func:`cuda_source` is the whole program for one element type ``T``; it is
compiled once per process and dtype (CuPy also caches the binary on disk).
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from minicnn.nn.unfold import window

__all__ = ["im2col", "col2im", "maxpool2d_forward", "maxpool2d_backward", "transpose01", "relu_backward",
           "adam_update_many"]

#: The element types the kernels are compiled for, and their C names.
CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
#: Threads per block; a block count of at most MAX_BLOCKS, the grid-stride loop does the rest.
THREADS, MAX_BLOCKS = 256, 65535


@dataclass(frozen=True)
class KernelSource:
    """One kernel: its C parameters and the body that computes output element ``i``.

    The body runs once for every ``i`` in ``0 .. n_threads-1`` (``n_threads`` is
    the kernel's first parameter, added by :func:`kernel_function`); ``T`` is the
    element type.
    """

    name: str
    params: tuple  # C declarations: ("const T* x", "long long N", ..., "T* col")
    body: str


_GEOMETRY = ("long long N", "long long C", "long long H", "long long W", "long long KH", "long long KW",
             "long long SH", "long long SW", "long long PH", "long long PW", "long long OH", "long long OW")

_IM2COL = KernelSource(
    name="minicnn_im2col",
    params=("const T* x", *_GEOMETRY, "T pad", "T* col"),
    body="""
    const long long P = OH * OW;
    const long long p = i % P;
    const long long n = (i / P) % N;
    const long long k = i / (P * N);
    const long long j = k % KW;
    const long long ii = (k / KW) % KH;
    const long long c = k / (KW * KH);
    const long long ih = (p / OW) * SH - PH + ii;
    const long long iw = (p % OW) * SW - PW + j;
    if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
        col[i] = x[((n * C + c) * H + ih) * W + iw];
    } else {
        col[i] = pad;
    }
    """,
)

_COL2IM = KernelSource(
    name="minicnn_col2im",
    params=("const T* col", *_GEOMETRY, "T* img"),
    body="""
    const long long w = i % W;
    const long long h = (i / W) % H;
    const long long c = (i / (W * H)) % C;
    const long long n = i / (W * H * C);
    const long long P = OH * OW;
    T acc = 0;
    for (long long ii = 0; ii < KH; ++ii) {
        const long long dh = h + PH - ii;          /* = oh * SH for the window oh covering h */
        if (dh < 0 || dh % SH != 0) continue;
        const long long oh = dh / SH;
        if (oh >= OH) continue;
        for (long long j = 0; j < KW; ++j) {
            const long long dw = w + PW - j;
            if (dw < 0 || dw % SW != 0) continue;
            const long long ow = dw / SW;
            if (ow >= OW) continue;
            const long long k = (c * KH + ii) * KW + j;
            acc += col[(k * N + n) * P + oh * OW + ow];
        }
    }
    img[i] = acc;
    """,
)

_MAXPOOL_FWD = KernelSource(
    name="minicnn_maxpool_fwd",
    params=("const T* x", "long long* argmax", "long long H", "long long W", "long long KH", "long long KW",
            "long long SH", "long long SW", "long long PH", "long long PW", "long long OH", "long long OW",
            "T neg_inf", "T* out"),
    body="""
    const long long P = OH * OW;                    /* i = plane * P + p */
    const long long p = i % P;
    const long long plane = i / P;
    const long long h0 = (p / OW) * SH - PH;
    const long long w0 = (p % OW) * SW - PW;
    T best = neg_inf;
    long long best_k = 0;
    bool best_nan = false;
    for (long long ii = 0; ii < KH; ++ii) {
        for (long long j = 0; j < KW; ++j) {
            const long long h = h0 + ii, w = w0 + j;
            if (h < 0 || h >= H || w < 0 || w >= W) continue;   /* border: -inf never wins */
            const T v = x[(plane * H + h) * W + w];
            const bool v_nan = isnan(v);
            if (!best_nan && (v > best || v_nan)) {  /* first maximum; a NaN wins, as np.argmax */
                best = v; best_k = ii * KW + j; best_nan = v_nan;
            }
        }
    }
    out[i] = best;
    argmax[i] = best_k;
    """,
)

_MAXPOOL_BWD = KernelSource(
    name="minicnn_maxpool_bwd",
    params=("const T* grad", "const long long* argmax", "long long H", "long long W", "long long KH",
            "long long KW", "long long SH", "long long SW", "long long PH", "long long PW", "long long OH",
            "long long OW", "T* dx"),
    body="""
    const long long w = i % W;                      /* i = (plane * H + h) * W + w */
    const long long h = (i / W) % H;
    const long long plane = i / (W * H);
    const long long P = OH * OW;
    T acc = 0;
    for (long long ii = 0; ii < KH; ++ii) {
        const long long dh = h + PH - ii;
        if (dh < 0 || dh % SH != 0) continue;
        const long long oh = dh / SH;
        if (oh >= OH) continue;
        for (long long j = 0; j < KW; ++j) {
            const long long dw = w + PW - j;
            if (dw < 0 || dw % SW != 0) continue;
            const long long ow = dw / SW;
            if (ow >= OW) continue;
            const long long q = plane * P + oh * OW + ow;
            if (argmax[q] == ii * KW + j) acc += grad[q];
        }
    }
    dx[i] = acc;
    """,
)

_TRANSPOSE01_BIAS = KernelSource(
    name="minicnn_transpose01_bias",
    params=("const T* x", "const T* bias", "long long A", "long long B", "long long P", "T* out"),
    body="""
    const long long p = i % P;                      /* i = (b * A + a) * P + p */
    const long long a = (i / P) % A;
    const long long b = i / (P * A);
    out[i] = x[(a * B + b) * P + p] + bias[a];
    """,
)

_RELU_BWD = KernelSource(
    name="minicnn_relu_bwd",
    params=("const T* grad", "const T* y", "T* dx"),
    body="""
    dx[i] = y[i] > 0 ? grad[i] : grad[i] * (T)0;   /* = grad * (y > 0), -0 and NaN as the reference */
    """,
)

_ADAM = KernelSource(
    name="minicnn_adam",
    params=("long long n_tensors", "const long long* starts", "T* const* params", "const T* const* grads",
            "T* const* exp_avgs", "T* const* exp_avg_sqs", "T lr", "T beta1", "T one_minus_beta1", "T beta2",
            "T one_minus_beta2", "T eps", "T correction1", "T correction2", "T weight_decay"),
    body="""
    /* Element i of the concatenation of all tensors: tensor t holds i in [starts[t], starts[t+1]). */
    long long t = 0;
    while (t + 1 < n_tensors && starts[t + 1] <= i) ++t;
    const long long e = i - starts[t];
    T* p = params[t];
    T g = grads[t][e];
    if (weight_decay != 0) g = g + weight_decay * p[e];
    const T m = beta1 * exp_avgs[t][e] + one_minus_beta1 * g;
    const T v = beta2 * exp_avg_sqs[t][e] + one_minus_beta2 * g * g;
    exp_avgs[t][e] = m;
    exp_avg_sqs[t][e] = v;
    p[e] = p[e] - lr * (m / correction1) / (sqrt(v / correction2) + eps);
    """,
)

SOURCES = (_IM2COL, _COL2IM, _MAXPOOL_FWD, _MAXPOOL_BWD, _TRANSPOSE01_BIAS, _RELU_BWD, _ADAM)


def kernel_function(src: KernelSource) -> str:
    """``src`` as a complete CUDA kernel: its body for every ``i < n_threads``, in a grid-stride loop."""
    lines = [[]]
    for param in ("long long n_threads",) + src.params:  # as many parameters on a line as fit
        if lines[-1] and len(", ".join(lines[-1] + [param])) > 90:
            lines.append([])
        lines[-1].append(param)
    params = ",\n".join("    " + ", ".join(line) for line in lines)
    body = textwrap.indent(textwrap.dedent(src.body).strip("\n"), "        ")
    return (f'extern "C" __global__ void {src.name}(\n{params})\n{{\n'
            f"    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n_threads;\n"
            f"         i += (long long)blockDim.x * gridDim.x) {{\n{body}\n    }}\n}}\n")


def cuda_source(ctype: str) -> str:
    """The whole CUDA program for element type ``ctype`` ("float" or "double"): every kernel of SOURCES."""
    return f"typedef {ctype} T;\n\n" + "\n".join(kernel_function(s) for s in SOURCES)


@lru_cache(maxsize=None)
def _module(dtype):
    import cupy

    if dtype not in CTYPES:
        raise TypeError(f"the CuPy kernels are compiled for float32 and float64, got {dtype}")
    return cupy.RawModule(code=cuda_source(CTYPES[dtype]))


def launch(src: KernelSource, dtype, n: int, *args) -> None:
    """Run kernel ``src`` (compiled for ``dtype``) over ``n`` threads; ints go as ``long long``."""
    if n == 0:
        return
    kernel = _module(np.dtype(dtype)).get_function(src.name)
    blocks = min((n + THREADS - 1) // THREADS, MAX_BLOCKS)
    args = tuple(np.int64(a) if isinstance(a, (int, np.integer)) else a for a in args)
    kernel((blocks,), (THREADS,), (np.int64(n),) + args)


# --- the overrides of the CuPy backend ---------------------------------------

def im2col(x, kernel_size, stride, padding, pad_value=0.0):
    """As :func:`minicnn.nn.functional.im2col`: an (N, C*KH*KW, OH*OW) view of K-major memory."""
    import cupy

    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(x.shape, kernel_size, stride, padding)
    col_t = cupy.empty((C * KH * KW, N, OH * OW), dtype=x.dtype)
    launch(_IM2COL, x.dtype, col_t.size, cupy.ascontiguousarray(x), N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW,
           x.dtype.type(pad_value), col_t)
    return col_t.transpose(1, 0, 2)


def col2im(col, x_shape, kernel_size, stride, padding):
    """As :func:`minicnn.nn.functional.col2im`, computed as a gather (one thread per input pixel)."""
    import cupy

    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(x_shape, kernel_size, stride, padding)
    col_t = cupy.ascontiguousarray(col.transpose(1, 0, 2))  # free when col is already a K-major view
    img = cupy.empty((N, C, H, W), dtype=col.dtype)
    launch(_COL2IM, col.dtype, img.size, col_t, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW, img)
    return img


def maxpool2d_forward(x, kernel_size, stride, padding, with_argmax=True):
    """As :func:`minicnn.nn.functional.maxpool2d_forward`: ``(out, argmax (N*C, OH*OW))``.

    The kernel always writes ``argmax``; ``with_argmax=False`` only returns ``None`` for it.
    """
    import cupy

    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(x.shape, kernel_size, stride, padding)
    out = cupy.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = cupy.empty((N * C, OH * OW), dtype=np.int64)
    launch(_MAXPOOL_FWD, x.dtype, out.size, cupy.ascontiguousarray(x), argmax, H, W, KH, KW, SH, SW, PH, PW,
           OH, OW, x.dtype.type(-np.inf), out)
    return out, (argmax if with_argmax else None)


def maxpool2d_backward(grad_output, argmax, x_shape, kernel_size, stride, padding):
    """As :func:`minicnn.nn.functional.maxpool2d_backward`, as a gather."""
    import cupy

    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(x_shape, kernel_size, stride, padding)
    dx = cupy.empty((N, C, H, W), dtype=grad_output.dtype)
    launch(_MAXPOOL_BWD, grad_output.dtype, dx.size, cupy.ascontiguousarray(grad_output),
           cupy.ascontiguousarray(argmax), H, W, KH, KW, SH, SW, PH, PW, OH, OW, dx)
    return dx


def transpose01(a, bias=None):
    """As :func:`minicnn.nn.unfold.transpose01`; with a bias, one kernel does both."""
    import cupy

    if bias is None:
        return cupy.ascontiguousarray(a.transpose(1, 0, 2))
    A, B, P = a.shape
    out = cupy.empty((B, A, P), dtype=a.dtype)
    launch(_TRANSPOSE01_BIAS, a.dtype, out.size, cupy.ascontiguousarray(a),
           cupy.ascontiguousarray(bias, dtype=a.dtype), A, B, P, out)
    return out


def relu_backward(grad_output, y):
    """As :func:`minicnn.nn.functional.relu_backward`, in one kernel."""
    import cupy

    if grad_output.shape != y.shape or grad_output.dtype != y.dtype or y.dtype not in CTYPES:
        from minicnn.nn.functional import relu_backward as reference

        return reference.reference(grad_output, y)
    dx = cupy.empty_like(grad_output, order="C")
    launch(_RELU_BWD, y.dtype, dx.size, cupy.ascontiguousarray(grad_output), cupy.ascontiguousarray(y), dx)
    return dx


class _AdamTables:
    """The device tables of one list of same-dtype tensors for :data:`_ADAM`: offsets and addresses.

    ``starts`` (n+1 offsets into the concatenation) and the address tables of
    the parameters and moments are copied up once and kept while those arrays
    stay the same; the gradients' table is copied up again only when their
    addresses change (a backward pass allocates new gradient arrays, which
    CuPy's memory pool mostly hands out at the same addresses step after step).
    """

    def __init__(self, params, exp_avgs, exp_avg_sqs):
        import cupy

        sizes = [p.size for p in params]
        self.total = int(sum(sizes))
        self.starts = cupy.asarray(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
        self.tables = [cupy.asarray(np.array([a.data.ptr for a in arrays], dtype=np.uint64))
                       for arrays in (params, exp_avgs, exp_avg_sqs)]
        self.grads = cupy.zeros(len(params), dtype=np.uint64)
        self.grads_key = None
        self.alive = (list(params), list(exp_avgs), list(exp_avg_sqs), [])  # the addresses stay valid

    def grad_table(self, grads):
        key = tuple(g.data.ptr for g in grads)
        if key != self.grads_key:
            self.grads.set(np.array(key, dtype=np.uint64))
            self.grads_key, self.alive = key, self.alive[:3] + (list(grads),)
        return self.grads


_adam_tables: dict = {}


def adam_update_many(params, grads, exp_avgs, exp_avg_sqs, lr, beta1, one_minus_beta1, beta2, one_minus_beta2,
                     eps, correction1, correction2, weight_decay):
    """One Adam step of every tensor in the lists, in one launch (see :data:`_ADAM`), in place.

    The lists hold same-dtype CuPy arrays, each tensor's four of one shape;
    the scalars are those of :func:`minicnn.optim.adam.adam_update`
    plus ``weight_decay`` (added to the gradient).  Arrays that are not
    C-contiguous take the reference, tensor by tensor.
    """
    if not all(a.flags.c_contiguous for arrays in (params, grads, exp_avgs, exp_avg_sqs) for a in arrays):
        from minicnn.optim.adam import adam_update_many as reference

        return reference.reference(params, grads, exp_avgs, exp_avg_sqs, lr, beta1, one_minus_beta1, beta2,
                                   one_minus_beta2, eps, correction1, correction2, weight_decay)
    key = tuple(a.data.ptr for arrays in (params, exp_avgs, exp_avg_sqs) for a in arrays)
    tables = _adam_tables.get(key)
    if tables is None:
        if len(_adam_tables) >= 16:  # optimizers come and go: keep the tables of the latest few
            _adam_tables.pop(next(iter(_adam_tables)))
        tables = _adam_tables[key] = _AdamTables(params, exp_avgs, exp_avg_sqs)
    dtype = params[0].dtype
    p_table, m_table, v_table = tables.tables
    launch(_ADAM, dtype, tables.total, len(params), tables.starts, p_table, tables.grad_table(grads), m_table,
           v_table, *(dtype.type(v) for v in (lr, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
                                              correction1, correction2, weight_decay)))
