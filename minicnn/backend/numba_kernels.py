"""The Numba backend's overrides: im2col, col2im, max-pooling, the axis swap, ReLU and Adam as fast CPU loops.

Each public function is an override (see :mod:`minicnn.backend`): it has the
signature, the output values and the dtype of its readable reference in
:mod:`minicnn.nn.functional` (Adam's in :mod:`minicnn.optim.adam`; the tests
check every one against it).  Where the reference moves whole strided
slices of a padded copy, these kernels walk the same indices without making
the padded copy.

Notation
--------
N, C, H, W      input batch, channels, height, width
KH, KW          window size          SH, SW   stride         PH, PW   padding
OH, OW          output height and width; P = OH*OW; K = C*KH*KW
plane           the (H, W) image x[n, c] of one sample n and channel c

How each kernel maps onto the reference
---------------------------------------
``im2col``
    Reference: for each window offset (i, j), copy the strided slice
    ``img[:, :, i:i+SH*OH:SH, j:j+SW*OW:SW]`` of the padded image into ``col``
    (OH rows and OW columns: ``i::SH`` would take one more where the last
    window stops short of the border, docs/convolution.md explains).
    Here: for each plane, offset (i, j) and output row ``oh``, copy input row
    ``ih = oh*SH - PH + i`` into positions ``oh*OW .. oh*OW + OW`` of row
    ``(c, i, j)``; positions whose ``ih`` or ``iw = ow*SW - PW + j`` fall in
    the border get ``pad_value``.  The result is stored K-major, as a
    (K, N, P) array seen through a transposed (N, K, P) view, so that
    Conv2d's ``col.transpose(1, 0, 2).reshape(K, N*P)`` costs no copy.

``col2im``
    Reference: ``img[:, :, i:i+SH*OH:SH, j:j+SW*OW:SW] += col[:, :, i, j]``
    into a zero padded image, then cut the border off.
    Here: the same sums in the same (i, j) order, skipping the terms whose
    destination lies in the border.  Each parallel iteration owns one plane,
    so no two threads ever add into the same element and results are
    deterministic.

``maxpool2d_forward``
    Reference: im2col with ``pad_value=-inf``, then ``argmax`` over each
    column and ``take_along_axis``.
    Here: one pass over each window in the order ``k = i*KW + j``, keeping the
    first maximum (a later value must be strictly larger; a NaN wins and then
    stays, as with ``np.argmax``); border positions count as -inf.  Windows of
    2x2 with stride 2 and no padding (the usual case) take a loop with no
    border tests.  Without argmax (an empty ``argmax`` array) only the maxima
    are stored.

``maxpool2d_backward``
    Reference: ``put_along_axis`` of the gradient into a zero column array at
    ``argmax``, then col2im.
    Here: per plane, add each output gradient straight onto the input element
    its argmax names (skipped when that element is border padding, which the
    reference cuts away).  Non-overlapping 2x2 windows write each input once.

``transpose01``
    Reference: ``ascontiguousarray(a.transpose(1, 0, 2))``, then ``+= bias``.
    Here: one pass; each parallel iteration copies one row ``a[i, b, :]`` to
    ``out[b, i, :]``, adding ``bias[i]`` when there is a bias.

``relu_forward``, ``relu_backward``
    Reference: ``np.maximum(x, 0)`` and ``grad * (y > 0)``.
    Here: one pass over the flat arrays in parallel chunks of ``_CHUNK``
    elements, with the reference's exact results (NaN, -0.0, inf * 0).
    Arrays smaller than two chunks, strided views and other dtypes go to the
    reference.

``adam_update``
    Reference: five in-place array operations (m, v, the two bias
    corrections, the step).
    Here: one parallel pass, the same float operations per element in the
    same order, so the results are equal to the last bit.

The first four kernels are each a loop over one plane (``_*_plane``) and a
``prange`` loop over the N*C planes that runs it; the planes' outputs are disjoint, so the
parallel iterations never write to the same element.  The plane loops index
the whole arrays (``x[n, c, h, w]``) and are inlined into the parallel loop,
which lets LLVM optimise them as one function.  Every constant stored into an
array (padding value, -inf, zero) is first cast to the array's dtype, so
float32 stays float32.  The kernels are compiled for float32 and float64
(``DTYPES``); the backend's rule sends arrays of any other floating dtype
(float16, longdouble, big-endian) to the reference, so this backend accepts
every input the NumPy backend does.
"""
from __future__ import annotations

import sys

import numba
import numpy as np
from numba import prange
from numba.core import event

from minicnn import threads
from minicnn.nn import functional
from minicnn.nn.unfold import window
from minicnn.tracing import note
from minicnn.optim import adam


# The threading layer of the parallel loops, by minicnn's thread policy (minicnn/threads.py: GNU OpenMP with
# sleeping threads where that can be set up, else workqueue); None where Numba's own choice stands
# (MINICNN_THREADS=leave, or a layer chosen by the user with NUMBA_THREADING_LAYER).
_layer = threads.numba_threading_layer()
if _layer is not None:
    numba.config.THREADING_LAYER = _layer

__all__ = ["im2col", "col2im", "maxpool2d_forward", "maxpool2d_backward", "transpose01", "relu_forward",
           "relu_backward", "adam_update", "adam_update_many"]

_inline = numba.njit(cache=True, inline="always")


@_inline
def _inside(offset, stride, size, out_len):
    """The range [lo, hi) of o in [0, out_len) with 0 <= o*stride + offset < size."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    last = size - 1 - offset  # o*stride <= last
    hi = last // stride + 1 if last >= 0 else 0
    hi = min(hi, out_len)
    lo = min(lo, hi)
    return lo, hi


# The three row loops below index with unsigned integers: Numba then emits no
# negative-index wrap-around test, and LLVM turns each loop into vector code.

@_inline
def _fill(dst, start, count, value):
    """dst[start : start + count] = value"""
    start = np.uint64(start)
    for k in range(np.uint64(count)):
        dst[start + k] = value


@_inline
def _gather(dst, start, src, src_start, src_step, count):
    """dst[start + k] = src[src_start + k*src_step] for k < count"""
    start, src_start, src_step = np.uint64(start), np.uint64(src_start), np.uint64(src_step)
    if src_step == 1:  # the usual stride 1: a contiguous copy
        for k in range(np.uint64(count)):
            dst[start + k] = src[src_start + k]
    else:
        for k in range(np.uint64(count)):
            dst[start + k] = src[src_start + k * src_step]


@_inline
def _scatter_add(dst, start, step, src, src_start, count):
    """dst[start + k*step] += src[src_start + k] for k < count"""
    start, step, src_start = np.uint64(start), np.uint64(step), np.uint64(src_start)
    if step == 1:
        for k in range(np.uint64(count)):
            dst[start + k] += src[src_start + k]
    else:
        for k in range(np.uint64(count)):
            dst[start + k * step] += src[src_start + k]


# --- im2col and col2im ------------------------------------------------------------------------

@_inline
def _im2col_plane(x, n, c, KH, KW, SH, SW, PH, PW, OH, OW, pad, col_t):
    """col_t[(c, i, j), n, (oh, ow)] = x_padded[n, c, oh*SH + i, ow*SW + j]"""
    H, W = x.shape[2], x.shape[3]
    for i in range(KH):
        oh_lo, oh_hi = _inside(i - PH, SH, H, OH)
        for j in range(KW):
            ow_lo, ow_hi = _inside(j - PW, SW, W, OW)
            dst = col_t[(c * KH + i) * KW + j, n]
            _fill(dst, 0, oh_lo * OW, pad)  # windows above the image
            for oh in range(oh_lo, oh_hi):
                src = x[n, c, oh * SH - PH + i]
                _fill(dst, oh * OW, ow_lo, pad)
                _gather(dst, oh * OW + ow_lo, src, ow_lo * SW - PW + j, SW, ow_hi - ow_lo)
                _fill(dst, oh * OW + ow_hi, OW - ow_hi, pad)
            _fill(dst, oh_hi * OW, (OH - oh_hi) * OW, pad)  # windows below it


@numba.njit(parallel=True, cache=True)
def _im2col(x, KH, KW, SH, SW, PH, PW, OH, OW, pad, col_t):
    N, C = x.shape[0], x.shape[1]
    for nc in prange(N * C):
        _im2col_plane(x, nc // C, nc % C, KH, KW, SH, SW, PH, PW, OH, OW, pad, col_t)


@_inline
def _col2im_plane(col_t, n, c, KH, KW, SH, SW, PH, PW, OH, OW, zero, img):
    """img[n, c] = the columns col_t[(c, i, j), n] added back onto their windows, in (i, j) order."""
    H, W = img.shape[2], img.shape[3]
    for h in range(H):
        _fill(img[n, c, h], 0, W, zero)
    for i in range(KH):
        oh_lo, oh_hi = _inside(i - PH, SH, H, OH)
        for j in range(KW):
            ow_lo, ow_hi = _inside(j - PW, SW, W, OW)
            src = col_t[(c * KH + i) * KW + j, n]
            for oh in range(oh_lo, oh_hi):
                _scatter_add(img[n, c, oh * SH - PH + i], ow_lo * SW - PW + j, SW, src, oh * OW + ow_lo, ow_hi - ow_lo)


@numba.njit(parallel=True, cache=True)
def _col2im(col_t, KH, KW, SH, SW, PH, PW, OH, OW, zero, img):
    N, C = img.shape[0], img.shape[1]
    for nc in prange(N * C):
        _col2im_plane(col_t, nc // C, nc % C, KH, KW, SH, SW, PH, PW, OH, OW, zero, img)


# --- max-pooling ------------------------------------------------------------------------------

@_inline
def _maxpool_plane(x, n, c, KH, KW, SH, SW, PH, PW, neg_inf, out, argmax):
    """out[n, c, oh, ow] = the first maximum of its window; argmax[n*C + c, oh*OW + ow] = its offset
    i*KW + j, unless ``argmax`` is empty (inference: nothing to store)."""
    H, W = x.shape[2], x.shape[3]
    C, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    for oh in range(OH):
        for ow in range(OW):
            best, best_k = neg_inf, 0
            for i in range(KH):
                ih = oh * SH - PH + i
                for j in range(KW):
                    iw = ow * SW - PW + j
                    v = x[n, c, ih, iw] if 0 <= ih < H and 0 <= iw < W else neg_inf
                    # A later value wins only if strictly larger; a NaN wins once and then stays.
                    if not v <= best and best == best:
                        best, best_k = v, i * KW + j
            out[n, c, oh, ow] = best
            if argmax.shape[0] != 0:
                argmax[n * C + c, oh * OW + ow] = best_k


@_inline
def _maxpool2x2_plane(x, n, c, out, argmax):
    """KH = KW = SH = SW = 2, no padding: the window of (oh, ow) is x[n, c, 2oh:2oh+2, 2ow:2ow+2]."""
    C, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    for oh in range(OH):
        for ow in range(OW):
            h, w = 2 * oh, 2 * ow
            best, best_k = x[n, c, h, w], 0
            v = x[n, c, h, w + 1]
            if not v <= best and best == best:
                best, best_k = v, 1
            v = x[n, c, h + 1, w]
            if not v <= best and best == best:
                best, best_k = v, 2
            v = x[n, c, h + 1, w + 1]
            if not v <= best and best == best:
                best, best_k = v, 3
            out[n, c, oh, ow] = best
            if argmax.shape[0] != 0:
                argmax[n * C + c, oh * OW + ow] = best_k


@numba.njit(cache=True, inline="always")
def _later_wins(v, best, k, kv):
    """(v, kv) if v beats ``best`` (strictly larger, or a NaN over a number), else (best, k).  Written
    without a branch (``&`` of two tests, then selects), so a loop of these compiles to vector code."""
    wins = (not v <= best) & (best == best)
    return (v if wins else best), (kv if wins else k)


@numba.njit(cache=True, inline="always")
def _first_max4(a, b, c, d):
    """(the first maximum of a, b, c, d, its index 0-3 as int8): a later value wins only if strictly
    larger, a NaN wins once and then stays, as maxpool2d_forward's argmax."""
    best, k = _later_wins(b, a, np.int8(0), np.int8(1))
    best, k = _later_wins(c, best, k, np.int8(2))
    return _later_wins(d, best, k, np.int8(3))


@numba.njit(parallel=True, cache=True)
def _maxpool_forward(x, KH, KW, SH, SW, PH, PW, neg_inf, out, argmax):
    N, C = x.shape[0], x.shape[1]
    two_by_two = KH == KW == SH == SW == 2 and PH == PW == 0
    for nc in prange(N * C):
        if two_by_two:
            _maxpool2x2_plane(x, nc // C, nc % C, out, argmax)
        else:
            _maxpool_plane(x, nc // C, nc % C, KH, KW, SH, SW, PH, PW, neg_inf, out, argmax)


@_inline
def _maxpool_backward_plane(grad, argmax, n, c, KW, SH, SW, PH, PW, zero, dx):
    """dx[n, c] = 0, then each grad[n, c, oh, ow] added onto the input its argmax names (unless border)."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    OH, OW = grad.shape[2], grad.shape[3]
    for h in range(H):
        _fill(dx[n, c, h], 0, W, zero)
    for oh in range(OH):
        for ow in range(OW):
            k = argmax[n * C + c, oh * OW + ow]
            ih, iw = oh * SH - PH + k // KW, ow * SW - PW + k % KW
            if 0 <= ih < H and 0 <= iw < W:
                dx[n, c, ih, iw] += grad[n, c, oh, ow]


@_inline
def _maxpool2x2_backward_plane(grad, argmax, n, c, zero, dx):
    """KH = KW = SH = SW = 2, no padding: windows do not overlap, so each input element
    is written once (its window's gradient, or zero) and nothing is added."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    OH, OW = grad.shape[2], grad.shape[3]
    for oh in range(OH):
        for ow in range(OW):
            k, g = argmax[n * C + c, oh * OW + ow], grad[n, c, oh, ow]
            h, w = 2 * oh, 2 * ow
            dx[n, c, h, w] = g if k == 0 else zero
            dx[n, c, h, w + 1] = g if k == 1 else zero
            dx[n, c, h + 1, w] = g if k == 2 else zero
            dx[n, c, h + 1, w + 1] = g if k == 3 else zero
    # An odd height or width leaves a last row or column that no window covers.
    for h in range(2 * OH, H):
        _fill(dx[n, c, h], 0, W, zero)
    for h in range(2 * OH):
        _fill(dx[n, c, h], 2 * OW, W - 2 * OW, zero)


@numba.njit(parallel=True, cache=True)
def _maxpool_backward(grad, argmax, KH, KW, SH, SW, PH, PW, zero, dx):
    N, C = dx.shape[0], dx.shape[1]
    two_by_two = KH == KW == SH == SW == 2 and PH == PW == 0
    for nc in prange(N * C):
        if two_by_two:
            _maxpool2x2_backward_plane(grad, argmax, nc // C, nc % C, zero, dx)
        else:
            _maxpool_backward_plane(grad, argmax, nc // C, nc % C, KW, SH, SW, PH, PW, zero, dx)


# --- transposing the first two axes ---------------------------------------------------------

@numba.njit(parallel=True, cache=True)
def _transpose01(a, bias, out):
    """out[b, i, :] = a[i, b, :] + bias[i]; an empty ``bias`` means no bias."""
    A, B = a.shape[0], a.shape[1]
    for row in prange(A * B):
        i, b = row // B, row % B
        src, dst = a[i, b], out[b, i]
        if bias.shape[0] == 0:
            for p in range(np.uint64(src.shape[0])):
                dst[p] = src[p]
        else:
            add = bias[i]
            for p in range(np.uint64(src.shape[0])):
                dst[p] = src[p] + add


# --- ReLU ------------------------------------------------------------------------------------

# Element-wise loops in parallel chunks of this many elements (64 KB of float32).  Each
# chunk is a slice, so the inner loop has no bounds arithmetic and LLVM vectorises it;
# indexing the whole arrays from a prange loop directly ran several times slower.
_CHUNK = 16384


@numba.njit(parallel=True, cache=True)
def _relu_forward(x, out):
    zero = x.dtype.type(0)
    n = x.shape[0]
    for chunk in prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = chunk * _CHUNK, min(n, (chunk + 1) * _CHUNK)
        src, dst = x[lo:hi], out[lo:hi]
        for i in range(hi - lo):
            v = src[i]
            dst[i] = v if v > zero or v != v else zero  # as np.maximum(x, 0): NaN stays, -0.0 gives 0.0


@numba.njit(parallel=True, cache=True)
def _relu_backward(grad, y, out):
    zero, one = grad.dtype.type(0), grad.dtype.type(1)
    n = grad.shape[0]
    for chunk in prange((n + _CHUNK - 1) // _CHUNK):
        lo, hi = chunk * _CHUNK, min(n, (chunk + 1) * _CHUNK)
        g, yy, dst = grad[lo:hi], y[lo:hi], out[lo:hi]
        for i in range(hi - lo):
            dst[i] = g[i] * (one if yy[i] > zero else zero)  # a product, as the reference: -g*0 is -0.0


# --- the Adam update -------------------------------------------------------------------------

@_inline
def _adam_element(param, grad, m, v, i, lr, b1, one_minus_b1, b2, one_minus_b2, eps, c1, c2):
    """Element i of the step: m, v and param read once and written once."""
    g = grad[i]
    m_i = b1 * m[i] + one_minus_b1 * g
    v_i = b2 * v[i] + one_minus_b2 * g * g
    m[i] = m_i
    v[i] = v_i
    param[i] -= lr * (m_i / c1) / (np.sqrt(v_i / c2) + eps)


@numba.njit(parallel=True, cache=True)
def _adam_update(param, grad, m, v, lr, b1, one_minus_b1, b2, one_minus_b2, eps, c1, c2):
    """The reference's five array passes as one: each element read and written once."""
    for i in prange(param.shape[0]):
        _adam_element(param, grad, m, v, i, lr, b1, one_minus_b1, b2, one_minus_b2, eps, c1, c2)


@numba.njit(parallel=True, cache=True)
def _adam_update_many(params, grads, ms, vs, starts, lr, b1, one_minus_b1, b2, one_minus_b2, eps, c1, c2):
    """:func:`_adam_update` over tuples of flat tensors, all in one parallel loop over their chunks of
    ``_CHUNK`` elements: chunk ``starts[k] + j`` is elements ``j*_CHUNK ...`` of tensor k."""
    for chunk in prange(starts[-1]):
        k = np.searchsorted(starts, chunk, side="right") - 1
        lo = (chunk - starts[k]) * _CHUNK
        hi = min(lo + _CHUNK, params[k].shape[0])
        # The chunk's slices, indexed from 0 with unsigned integers: no wrap-around tests, vector code.
        param, grad, m, v = params[k][lo:hi], grads[k][lo:hi], ms[k][lo:hi], vs[k][lo:hi]
        for i in range(np.uint64(hi - lo)):
            _adam_element(param, grad, m, v, i, lr, b1, one_minus_b1, b2, one_minus_b2, eps, c1, c2)


# --- the kernels, with the reference's signatures ---------------------------------------------

class CompileNotice(event.Listener):
    """Says once, on standard error when it is a terminal, that minicnn's kernels are compiling now
    and that this happens once: from an empty cache the first training step of MnistCNN spends some
    20 s compiling (docs/backends.md#compiling).  A listener of Numba's ``numba:compile`` events."""

    LINE = ("minicnn: compiling the Numba kernels for this machine, once (they are cached on disk); "
            "the first steps take longer")

    def __init__(self, stream=None):
        self.stream, self.said = stream, False

    def on_start(self, event) -> None:
        dispatcher = event.data.get("dispatcher") if isinstance(event.data, dict) else None
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
        stream = self.stream or sys.stderr
        if not self.said and module.startswith("minicnn.") and stream.isatty():
            self.said = True
            print(self.LINE, file=stream, flush=True)

    def on_end(self, event) -> None:
        pass


#: The dtypes the kernels are compiled for (native byte order); the backend sends others to the reference.
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def im2col(x, kernel_size, stride, padding, pad_value=0.0):
    """(N, C, H, W) -> (N, C*KH*KW, OH*OW), stored K-major; see :func:`functional.im2col`."""
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(x.shape, kernel_size, stride, padding)
    col_t = np.empty((C * KH * KW, N, OH * OW), dtype=x.dtype)
    _im2col(np.ascontiguousarray(x), KH, KW, SH, SW, PH, PW, OH, OW, x.dtype.type(pad_value), col_t)
    return col_t.transpose(1, 0, 2)


def col2im(col, x_shape, kernel_size, stride, padding):
    """(N, C*KH*KW, OH*OW) -> (N, C, H, W), overlaps summed; see :func:`functional.col2im`.

    Fastest when ``col`` is a K-major view, as im2col and Conv2d's backward pass make it.
    """
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(x_shape, kernel_size, stride, padding)
    col_t = np.ascontiguousarray(col.reshape(N, C * KH * KW, OH * OW).transpose(1, 0, 2))
    img = np.empty((N, C, H, W), dtype=col.dtype)
    _col2im(col_t, KH, KW, SH, SW, PH, PW, OH, OW, col.dtype.type(0), img)
    return img


def maxpool2d_forward(x, kernel_size, stride, padding, with_argmax=True):
    """(N, C, H, W) -> out (N, C, OH, OW), argmax (N*C, OH*OW) or None; see
    :func:`functional.maxpool2d_forward`.  Without argmax the loop only
    stores the maxima, which takes less than half the time."""
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(x.shape, kernel_size, stride, padding)
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = np.empty((N * C, OH * OW) if with_argmax else (0, 0), dtype=np.intp)
    _maxpool_forward(np.ascontiguousarray(x), KH, KW, SH, SW, PH, PW, x.dtype.type(-np.inf), out, argmax)
    return out, (argmax if with_argmax else None)


def maxpool2d_backward(grad_output, argmax, x_shape, kernel_size, stride, padding):
    """Each gradient routed to its window's argmax, overlaps summed; see :func:`functional.maxpool2d_backward`.

    The kernel indexes by the shapes, so they are checked first: a wrong one is an error, never a
    read or write outside the arrays."""
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(x_shape, kernel_size, stride, padding)
    if tuple(grad_output.shape) != (N, C, OH, OW) or tuple(argmax.shape) != (N * C, OH * OW):
        raise ValueError(f"maxpool2d_backward: for an input of shape {tuple(x_shape)} expected grad_output "
                         f"of shape {(N, C, OH, OW)} and argmax of shape {(N * C, OH * OW)}, got "
                         f"{tuple(grad_output.shape)} and {tuple(argmax.shape)}")
    dx = np.empty(tuple(x_shape), dtype=grad_output.dtype)
    _maxpool_backward(np.ascontiguousarray(grad_output), np.ascontiguousarray(argmax, dtype=np.intp),
                      KH, KW, SH, SW, PH, PW, grad_output.dtype.type(0), dx)
    return dx


def transpose01(a, bias=None):
    """(A, B, P) -> (B, A, P), C-contiguous, plus ``bias[i]`` on ``a[i]``; see :func:`functional.transpose01`."""
    A, B, P = a.shape
    if bias is None:
        bias = np.empty(0, dtype=a.dtype)
    out = np.empty((B, A, P), dtype=a.dtype)
    _transpose01(np.ascontiguousarray(a), np.ascontiguousarray(bias, dtype=a.dtype), out)
    return out


def _parallel_float(*arrays) -> bool:
    """True if the arrays are C-contiguous float32 or float64 arrays of one shape and dtype, large
    enough for two parallel chunks (below that, starting the threads costs more than NumPy's loop)."""
    first = arrays[0]
    return first.dtype in DTYPES and first.size >= 2 * _CHUNK and all(
        a.flags.c_contiguous and a.dtype == first.dtype and a.shape == first.shape for a in arrays)


def _why_not_parallel(*arrays) -> str:
    """Why :func:`_parallel_float` said no, in the trace's words."""
    first = arrays[0]
    if first.size < 2 * _CHUNK:
        return f"reference: {first.size:,} elements, under the {2 * _CHUNK:,} worth two threads"
    return "reference: not C-contiguous float32/float64 arrays of one shape"


def relu_forward(x):
    """``max(x, 0)`` in parallel chunks; see :func:`functional.relu_forward`."""
    if not _parallel_float(x):  # small, another dtype or a strided view: the reference
        note(_why_not_parallel(x))
        return functional.relu_forward.reference(x)
    out = np.empty_like(x)
    _relu_forward(x.reshape(-1), out.reshape(-1))
    return out


def relu_backward(grad_output, y):
    """``grad_output * [y > 0]`` in parallel chunks; see :func:`functional.relu_backward`."""
    if not _parallel_float(grad_output, y):
        note(_why_not_parallel(grad_output, y))
        return functional.relu_backward.reference(grad_output, y)
    out = np.empty_like(grad_output)
    _relu_backward(grad_output.reshape(-1), y.reshape(-1), out.reshape(-1))
    return out

def adam_update(param, grad, exp_avg, exp_avg_sq, lr, beta1, one_minus_beta1, beta2, one_minus_beta2,
                eps, correction1, correction2):
    """One Adam step in place, in one pass; see :func:`minicnn.optim.adam.adam_update`."""
    arrays = (param, grad, exp_avg, exp_avg_sq)
    if len({a.shape for a in arrays}) > 1:  # the kernel indexes all four by param's index
        raise ValueError(f"adam_update: param, grad, exp_avg and exp_avg_sq must have one shape, got "
                         f"{', '.join(str(tuple(a.shape)) for a in arrays)}")
    if not all(a.flags.c_contiguous for a in arrays):  # a flat view would be a copy: use the reference
        note("reference: an array is not C-contiguous")
        return adam.adam_update.reference(param, grad, exp_avg, exp_avg_sq, lr, beta1, one_minus_beta1,
                                          beta2, one_minus_beta2, eps, correction1, correction2)
    _adam_update(*(a.reshape(-1) for a in arrays), lr, beta1, one_minus_beta1, beta2, one_minus_beta2,
                 eps, correction1, correction2)


def adam_update_many(params, grads, exp_avgs, exp_avg_sqs, lr, beta1, one_minus_beta1, beta2, one_minus_beta2,
                     eps, correction1, correction2, weight_decay):
    """Adam's step for a whole parameter group in one parallel pass; see
    :func:`minicnn.optim.adam.adam_update_many`.  The same float operations per element as
    :func:`adam_update`, so the same results to the last bit.  With weight decay, or any tensor
    that is not contiguous, each tensor takes :func:`adam_update` in turn (the reference's loop)."""
    groups = [tuple(group) for group in (params, grads, exp_avgs, exp_avg_sqs)]
    if len({len(group) for group in groups}) > 1:
        raise ValueError(f"adam_update_many: expected as many gradients and states as parameters, got "
                         f"{', '.join(str(len(group)) for group in groups)}")
    for arrays in zip(*groups):
        if len({a.shape for a in arrays}) > 1:
            raise ValueError(f"adam_update_many: each param, grad, exp_avg and exp_avg_sq must have one shape, "
                             f"got {', '.join(str(tuple(a.shape)) for a in arrays)}")
    flat = [a for group in groups for a in group]
    if (not params or weight_decay != 0 or not all(a.flags.c_contiguous for a in flat)
            or len({a.dtype for a in flat}) > 1):
        note("reference: each tensor's adam_update (weight decay, a strided array or mixed dtypes)")
        return adam.adam_update_many.reference(params, grads, exp_avgs, exp_avg_sqs, lr, beta1, one_minus_beta1,
                                               beta2, one_minus_beta2, eps, correction1, correction2, weight_decay)
    chunks = [-(-p.size // _CHUNK) for p in groups[0]]
    starts = np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)
    _adam_update_many(*(tuple(a.reshape(-1) for a in group) for group in groups), starts, lr, beta1,
                      one_minus_beta1, beta2, one_minus_beta2, eps, correction1, correction2)

