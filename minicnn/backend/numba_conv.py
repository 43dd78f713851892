"""The Numba backend's convolution: ``conv2d``, ``conv2d_backward``, training's fused
``conv2d_relu``, ``conv2d_relu_maxpool2d_train`` and their backward passes, and inference's fused
``conv2d_relu_maxpool2d`` as overrides.

Notation: that of :mod:`minicnn.backend.numba_kernels` (N, C, H, W, OC, KH,
KW, SH, SW, PH, PW, OH, OW; ``P = OH*OW``, ``K = C*KH*KW``).

The reference (:func:`minicnn.nn.functional.conv2d`) unfolds the whole batch
with im2col, multiplies once, and keeps the columns for backward.  Here the
convolution runs in one of four ways, chosen by the shapes and by whether
gradients are on (each override names the way it took in :func:`minicnn.trace`);
each is tested against the reference (values to rounding, the same dtype):

Rows (training: every convolution with ``K > _DIRECT_MAX_K`` or a stride)
    The reference's whole-batch product with the columns laid out the other
    way round: one row per window, channels last,

        rows[n*P + p, (i*KW + j)*C + c] = x_padded[n, c, oh*SH + i, ow*SW + j]     (N*P, K)

    so that unfolding copies runs of C contiguous values (from a channels-last
    copy of x) instead of runs of OW, and folding back in backward adds them.
    The products are the reference's, transposed: ``y = rows @ w_rows^T`` (N*P,
    OC), ``dW = dY @ rows`` and ``drows = dY^T @ w_rows`` with ``w_rows`` the
    weight with its K axis in the same (i, j, c) order.  The rows are kept for
    backward.  (Two other layouts were measured and removed: the reference's
    K-major columns, and the blocked path below in training too; the figures
    are in docs/backends.md.)

Blocked rows (the same convolutions in inference, under no_grad)
    The same steps one block of images at a time: as many images as fit
    ``_BLOCK_BYTES`` with their product are unfolded into one reused buffer
    as rows, multiplied while the buffer is still in the cache, and stored
    into the output with the bias added (and, for ``conv2d_relu_maxpool2d``,
    ReLU and a 2 x 2 max-pool).  conv2 of MnistCNN at batch 64 unfolds into a
    12,544 x 288 float32 matrix (14.4 MB, seven times a core's L2):
    unblocked, it is written to memory and read back by the product.  It
    keeps nothing for a backward pass.

Direct (stride 1 and ``K <= _DIRECT_MAX_K``, such as conv1: one channel, K = 9)
    With few rows the product ``w_mat @ cols`` is a thin, memory-bound pass:
    im2col writes K copies of the image for a product that does only K
    multiply-adds per output.  The direct kernel does those multiply-adds
    from a zero-padded copy of each image instead:

        y[n, oc, oh, ow] = bias[oc] + sum over (c, i, j) of w[oc, c, i, j] * xpad[n, c, oh + i, ow + j]

    The padded image is stored flat with row length ``Wp = W + 2*PW``, so for
    one tap (c, i, j) all the outputs of a plane are one contiguous loop
    ``acc[t] += w * xpad_flat[i*Wp + j + t]`` over ``t < OH*Wp`` (``t = oh*Wp
    + ow``; the ``Wp - OW`` positions past each row's end are computed and
    dropped), which LLVM turns into vector code.  The weight gradient is the
    same sum the other way round, ``dW[oc, c, i, j] = sum over n, t of
    dY_wide[n, oc, t] * xpad_flat[n, c, i*Wp + j + t]`` (dY widened to rows of
    Wp with zeros), and the input gradient adds ``w * dY_wide`` back onto the
    padded image, which is then cropped.

ReLU fused (``conv2d_relu``, training's Conv2d -> ReLU pairs)
    On the rows and direct paths the output is clipped at 0 as it is stored,
    and the backward multiplies dY by ``[y > 0]`` as it reads it (in the axis
    swap of the rows path, in the widening of each plane on the direct one),
    so ReLU makes no pass of its own; the other paths run conv2d and ReLU one
    after the other.

Winograd (training's Conv2d -> ReLU -> MaxPool2d runs with a 3 x 3 convolution of stride 1)
    Where the output is even in both directions, so that each 2 x 2 output tile is one pool
    window, :mod:`minicnn.backend.numba_winograd` computes the convolution and both gradients
    by Winograd's F(2 x 2, 3 x 3): 16 products of the whole batch's transformed tiles, each
    with 16/36 of the rows' multiply-adds, the bias, ReLU and the pool taken as the tiles are
    transformed back.  It keeps the transformed input (a ``numba_winograd.Tiles``) instead of
    the rows.  ``_WINOGRAD = False`` sends these runs to the rows.

Docs: docs/backends.md#numba
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from minicnn.backend import numba_winograd as winograd
from minicnn.backend.numba_kernels import DTYPES, _first_max4, _transpose01
from minicnn.nn import functional, fused
from minicnn.nn.grad_mode import is_grad_enabled
from minicnn.nn.unfold import window
from minicnn.tracing import note

__all__ = ["conv2d", "conv2d_backward", "conv2d_relu", "conv2d_relu_backward", "conv2d_relu_maxpool2d",
           "conv2d_relu_maxpool2d_train", "conv2d_relu_maxpool2d_backward"]

#: The working set of one block of images in the blocked path: its rows and its product.  Sized
#: to stay in the two cores' L2 caches together (2 MB each on the machines measured), so the product
#: reads the rows just unfolded from the cache instead of memory.  Smaller blocks
#: (1 MB: conv2 of MnistCNN in 22 blocks of 3 images) ran slower: each block starts three parallel
#: loops and a product, and a thin product of 3 images is far below BLAS's speed.
_BLOCK_BYTES = 4 << 20

#: Convolutions of stride 1 with at most this many rows in their columns (K = C*KH*KW) take the
#: direct kernels: a one-channel first layer (K = 9 for 3 x 3, 25 for 5 x 5) or a 3 x 3 one on RGB
#: images (K = 27).  A direct kernel does K multiply-adds per output from the cache, where the
#: product would do the same K with BLAS after im2col has written K copies of the image; with more
#: rows the product's register blocking wins.  benchmarks/bench_numba_levers.py measures what
#: the direct kernels buy in a training step and in inference.
_DIRECT_MAX_K = 32

#: Whether training's Conv2d -> ReLU -> MaxPool2d runs whose convolution is 3 x 3 of stride 1 with an
#: even output (numba_winograd.fits: conv2 of MnistCNN) take Winograd's F(2 x 2, 3 x 3) (see
#: :mod:`minicnn.backend.numba_winograd`) instead of the rows; wide convolutions only (the direct
#: kernels keep theirs).  bench_numba_levers.py turns it off to measure what it buys.
_WINOGRAD = True

_SUMS = {"reassoc", "contract"}  # lets LLVM vectorise a sum (it reorders it, as BLAS does)
_NO_ARGMAX = np.empty((0, 0, 0, 0), dtype=np.int8)  # an empty argmax: the pooling kernels store none


def _uses_direct(K, stride) -> bool:
    return K <= _DIRECT_MAX_K and tuple(stride) == (1, 1)


# --- blocks of images (inference) ---------------------------------------------------------------

def _images_per_block(K, OC, P, itemsize, N) -> int:
    """How many images' rows (P, K) and products (P, OC) fit ``_BLOCK_BYTES`` together (at least one)."""
    return max(1, min(N, _BLOCK_BYTES // ((K + OC) * P * itemsize)))


def _blocks(N, per_block):
    """(first image, image count) of each block of ``per_block`` images (the last one may be smaller)."""
    return [(n0, min(per_block, N - n0)) for n0 in range(0, N, per_block)]


# --- rows: one window per row, channels last -----------------------------------------------------

@numba.njit(parallel=True, cache=True)
def _channels_last(x, xh):
    """xh[n, h, w, c] = x[n, c, h, w]"""
    N, C, H, W = x.shape
    for task in prange(N * H):
        n, h = task // H, task % H
        for w in range(W):
            dst = xh[n, h, w]
            for c in range(C):
                dst[c] = x[n, c, h, w]


@numba.njit(parallel=True, cache=True)
def _im2rows(xh, KH, KW, SH, SW, PH, PW, rows):
    """rows[n, oh, ow, (i*KW + j)*C : +C] = xh_padded[n, oh*SH + i, ow*SW + j, :]: KH*KW runs of C values."""
    N, H, W, C = xh.shape
    OH, OW = rows.shape[1], rows.shape[2]
    zero, uC = rows.dtype.type(0), np.uint64(C)
    for task in prange(N * OH):
        n, oh = task // OH, task % OH
        for ow in range(OW):
            dst = rows[n, oh, ow]
            for i in range(KH):
                ih = oh * SH - PH + i
                for j in range(KW):
                    iw, base = ow * SW - PW + j, np.uint64((i * KW + j) * C)
                    if 0 <= ih < H and 0 <= iw < W:
                        src = xh[n, ih, iw]
                        for c in range(uC):
                            dst[base + c] = src[c]
                    else:
                        for c in range(uC):
                            dst[base + c] = zero


@numba.njit(parallel=True, cache=True)
def _rows_to_planes(prod, bias, relu, y):
    """y[n, oc, p] = prod[n, p, oc] + bias[oc], and with ``relu`` max(that, 0) (NaN stays NaN)."""
    N, P, OC = prod.shape
    zero = y.dtype.type(0)
    for n in prange(N):
        src, dst = prod[n], y[n]
        for p in range(P):
            row = src[p]
            for oc in range(OC):
                v = row[oc] + bias[oc]
                dst[oc, p] = zero if relu and v < zero else v


@numba.njit(parallel=True, cache=True)
def _swap_masked(g, y, out):
    """out[i, b, :] = g[b, i, :] where y[b, i, :] > 0, else 0: ReLU's backward in the axis swap
    that the convolution's backward makes anyway (without a mask, numba_kernels._transpose01)."""
    B, A = g.shape[0], g.shape[1]
    zero = out.dtype.type(0)
    for row in prange(A * B):
        i, b = row // B, row % B
        src, dst, mask = g[b, i], out[i, b], y[b, i]
        for p in range(np.uint64(src.shape[0])):
            dst[p] = src[p] if mask[p] > zero else zero


@numba.njit(parallel=True, cache=True)
def _rows2im(drows, KH, KW, SH, SW, PH, PW, dx):
    """dx[n] = each row's KH*KW runs added back onto their pixels (channels last in a local image),
    then stored channels first; one image per parallel iteration, so no two threads add into one pixel."""
    N, C, H, W = dx.shape
    OH, OW = drows.shape[1], drows.shape[2]
    uC = np.uint64(C)
    for n in prange(N):
        acc = np.zeros((H, W, C), dtype=dx.dtype)
        for oh in range(OH):
            for ow in range(OW):
                src = drows[n, oh, ow]
                for i in range(KH):
                    ih = oh * SH - PH + i
                    if 0 <= ih < H:
                        for j in range(KW):
                            iw, base = ow * SW - PW + j, np.uint64((i * KW + j) * C)
                            if 0 <= iw < W:
                                dst = acc[ih, iw]
                                for c in range(uC):
                                    dst[c] += src[base + c]
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    dx[n, c, h, w] = acc[h, w, c]


def _weight_rows(weight, dtype):
    """The weight as (OC, K) with K in the rows' (i, j, c) order."""
    OC = weight.shape[0]
    return np.ascontiguousarray(weight.transpose(0, 2, 3, 1).reshape(OC, -1), dtype=dtype)


def _unfold_rows(x, dims):
    """rows (N*P, K): x unfolded, one window per row, channels last."""
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    xh = np.empty((N, H, W, C), dtype=x.dtype)
    _channels_last(x, xh)
    rows = np.empty((N, OH, OW, C * KH * KW), dtype=x.dtype)
    _im2rows(xh, KH, KW, SH, SW, PH, PW, rows)
    return rows.reshape(N * OH * OW, C * KH * KW)


def _rows_forward(x, weight, bias, dims, relu=False):
    """(y, rows): the convolution as ``rows @ w_rows^T`` (with ``relu``, clipped at 0 as it is stored),
    rows (N*P, K) kept for backward."""
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    OC, P = weight.shape[0], OH * OW
    rows = _unfold_rows(x, dims)
    prod = rows @ _weight_rows(weight, x.dtype).T                                    # (N*P, OC)
    y = np.empty((N, OC, OH, OW), dtype=x.dtype)
    bias = bias if bias.shape[0] != 0 else np.zeros(OC, dtype=x.dtype)
    _rows_to_planes(prod.reshape(N, P, OC), bias, relu, y.reshape(N, OC, P))
    return y, rows


def _rows_backward(grad_output, rows, weight, dims, input_grad, relu_out):
    """The backward of :func:`_rows_forward`; ``relu_out``, the clipped output (empty: none), masks dY."""
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    OC, P, dtype = weight.shape[0], OH * OW, grad_output.dtype
    dy = np.empty((OC, N, P), dtype=dtype)
    if relu_out.shape[0] == 0:  # no ReLU: the plain swap
        _transpose01(grad_output.reshape(N, OC, P), np.empty(0, dtype=dtype), dy)
    else:
        _swap_masked(grad_output.reshape(N, OC, P), relu_out.reshape(N, OC, P), dy)
    return _rows_products(dy.reshape(OC, N * P), rows, weight, dims, input_grad)


def _rows_products(dy, rows, weight, dims, input_grad):
    """``(dx, dweight, dbias)`` from dY as (OC, N*P) and the rows: ``dW = dY @ rows``, ``drows = dY^T @
    w_rows`` folded back onto the image."""
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    OC, dtype = weight.shape[0], dy.dtype
    dweight = np.ascontiguousarray((dy @ rows).reshape(OC, KH, KW, C).transpose(0, 3, 1, 2))
    dx = None
    if input_grad:
        drows = dy.T @ _weight_rows(weight, dtype)                                  # (N*P, K)
        dx = np.empty((N, C, H, W), dtype=dtype)
        _rows2im(drows.reshape(N, OH, OW, C * KH * KW), KH, KW, SH, SW, PH, PW, dx)
    return dx, dweight, dy.sum(axis=1)


def _blocked_rows_forward(x, weight, bias, dims, y, relu_pool2=False):
    """y (N, OC, OH, OW) one block of images at a time, each block unfolded into rows (channels last) and
    multiplied as ``rows @ w_rows^T`` while in the cache; with ``relu_pool2``, y (N, OC, OH // 2, OW // 2)
    receives its 2 x 2 max-pool and ReLU instead."""
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    OC, K, P = weight.shape[0], C * KH * KW, OH * OW
    per_block = _images_per_block(K, OC, P, x.dtype.itemsize, N)
    w_t = np.ascontiguousarray(_weight_rows(weight, x.dtype).T)                      # (K, OC)
    xh_buf = np.empty(per_block * H * W * C, dtype=x.dtype)
    rows_buf = np.empty(per_block * P * K, dtype=x.dtype)
    prod_buf = np.empty(per_block * P * OC, dtype=x.dtype)
    bias = bias if bias.shape[0] != 0 else np.zeros(OC, dtype=x.dtype)
    for n0, m in _blocks(N, per_block):
        xh = xh_buf[:m * H * W * C].reshape(m, H, W, C)
        _channels_last(x[n0:n0 + m], xh)
        rows = rows_buf[:m * P * K].reshape(m, OH, OW, K)
        _im2rows(xh, KH, KW, SH, SW, PH, PW, rows)
        prod = prod_buf[:m * P * OC].reshape(m * P, OC)
        np.matmul(rows.reshape(m * P, K), w_t, out=prod)                             # (m*P, OC)
        if relu_pool2:
            _rows_relu_pool2(prod.reshape(m, P, OC), bias, OW, y[n0:n0 + m], _NO_ARGMAX)
        else:
            _rows_to_planes(prod.reshape(m, P, OC), bias, False, y[n0:n0 + m].reshape(m, OC, P))


@numba.njit(parallel=True, cache=True)
def _rows_relu_pool2(prod, bias, OW, z, argmax):
    """z[n, oc, ph, pw] = max(0, the first maximum of the window's four rows' prod[n, p, oc] + bias[oc]):
    a 2 x 2 max-pool of stride 2 over whole rows of OC values (rows and columns past 2*ZH, 2*ZW left
    out; NaN stays NaN), and argmax[n, oc, ph, pw] its offset 2a + b in the window (a, b in {0, 1}),
    unless ``argmax`` is empty (inference)."""
    m, OC = prod.shape[0], prod.shape[2]
    ZH, ZW = z.shape[2], z.shape[3]
    zero = z.dtype.type(0)
    for task in prange(m * ZH):
        n, ph = task // ZH, task % ZH
        for pw in range(ZW):
            k = 2 * ph * OW + 2 * pw
            r0, r1, r2, r3 = prod[n, k], prod[n, k + 1], prod[n, k + OW], prod[n, k + OW + 1]
            for oc in range(OC):
                add = bias[oc]
                best, at = _first_max4(r0[oc] + add, r1[oc] + add, r2[oc] + add, r3[oc] + add)
                z[n, oc, ph, pw] = best if not best < zero else zero
                if argmax.shape[0] != 0:
                    argmax[n, oc, ph, pw] = at


@numba.njit(parallel=True, cache=True)
def _unpool2_masked(dz, z, argmax, OW, swapped, dst):
    """Max-pool's and ReLU's backward together: plane (n, oc) of dst (P = OH*OW values, all 0 but these)
    receives each dz[n, oc, ph, pw] whose z > 0 at its window's argmax; dst is (OC, N, P) with
    ``swapped`` (the layout the rows' products take), else (N, OC, P)."""
    N, OC, ZH, ZW = dz.shape
    zero = dst.dtype.type(0)
    for task in prange(N * OC):
        n, oc = task // OC, task % OC
        d = dst[oc, n] if swapped else dst[n, oc]
        for p in range(np.uint64(d.shape[0])):
            d[p] = zero
        for ph in range(ZH):
            for pw in range(ZW):
                if z[n, oc, ph, pw] > zero:
                    k = argmax[n, oc, ph, pw]
                    d[(2 * ph + k // 2) * OW + 2 * pw + k % 2] = dz[n, oc, ph, pw]


# --- direct (stride 1, few rows) ----------------------------------------------------------------
# A padded plane is stored flat: xpad[n, c, (h + PH)*Wp + (w + PW)] = x[n, c, h, w], zeros
# around, and KW - 1 more zeros at the end so that the last tap's loop stays inside.
# The loops index with unsigned integers, as in numba_kernels: no wrap-around tests, vector code.

@numba.njit(parallel=True, cache=True)
def _pad_planes(x, PH, PW, xpad):
    """xpad[n, c] = x[n, c] zero-padded by (PH, PW), rows of Wp = W + 2*PW, flat."""
    N, C, H, W = x.shape
    Wp = W + 2 * PW
    zero = xpad.dtype.type(0)
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        dst = xpad[n, c]
        for t in range(np.uint64(dst.shape[0])):
            dst[t] = zero
        for h in range(H):
            src, base = x[n, c, h], np.uint64((h + PH) * Wp + PW)
            for w in range(np.uint64(W)):
                dst[base + w] = src[w]


@numba.njit(cache=True, inline="always")
def _direct_plane(xpad, w, bias, Wp, n, oc, acc):
    """acc[oh*Wp + ow] = bias[oc] + sum over (c, i, j) of w[oc, c, i, j] * xpad[n, c, (oh + i)*Wp + ow + j]"""
    C, KH, KW = xpad.shape[1], w.shape[2], w.shape[3]
    L = np.uint64(acc.shape[0])
    b = bias[oc] if bias.shape[0] != 0 else acc.dtype.type(0)
    for t in range(L):
        acc[t] = b
    for c in range(C):
        src = xpad[n, c]
        for i in range(KH):
            for j in range(KW):
                wv, off = w[oc, c, i, j], np.uint64(i * Wp + j)
                for t in range(L):
                    acc[t] += wv * src[off + t]


@numba.njit(parallel=True, cache=True)
def _direct_forward(xpad, w, bias, Wp, relu, y):
    """y[n, oc, oh, ow] = bias[oc] + sum over (c, i, j) of w[oc, c, i, j] * xpad[n, c, (oh + i)*Wp + ow + j],
    with ``relu`` clipped at 0 (NaN stays NaN)."""
    N, OC, OH, OW = y.shape
    zero = y.dtype.type(0)
    for plane in prange(N * OC):
        n, oc = plane // OC, plane % OC
        acc = np.empty(OH * Wp, dtype=y.dtype)     # the plane's outputs, rows of Wp
        _direct_plane(xpad, w, bias, Wp, n, oc, acc)
        for oh in range(OH):
            dst, base = y[n, oc, oh], np.uint64(oh * Wp)
            if relu:
                for ow in range(np.uint64(OW)):
                    v = acc[base + ow]
                    dst[ow] = zero if v < zero else v
            else:
                for ow in range(np.uint64(OW)):
                    dst[ow] = acc[base + ow]


@numba.njit(parallel=True, cache=True)
def _direct_forward_relu_pool2(xpad, w, bias, Wp, OH, z):
    """z[n, oc] = relu of the 2 x 2 maxima of the direct convolution's plane (OH rows of Wp)."""
    N, OC = z.shape[0], z.shape[1]
    for plane in prange(N * OC):
        n, oc = plane // OC, plane % OC
        acc = np.empty(OH * Wp, dtype=z.dtype)
        _direct_plane(xpad, w, bias, Wp, n, oc, acc)               # the bias is in acc already
        _relu_pool2(acc, Wp, z.dtype.type(0), z[n, oc])


@numba.njit(parallel=True, cache=True)
def _direct_forward_relu_pool2_argmax(xpad, w, bias, Wp, OH, z, argmax):
    """Training's _direct_forward_relu_pool2: also argmax[n, oc, ph, pw], the window offset 2a + b of
    each first maximum."""
    N, OC, ZH, ZW = z.shape
    zero = z.dtype.type(0)
    for plane in prange(N * OC):
        n, oc = plane // OC, plane % OC
        acc = np.empty(OH * Wp, dtype=z.dtype)
        _direct_plane(xpad, w, bias, Wp, n, oc, acc)               # the bias is in acc already
        for ph in range(ZH):
            top = 2 * ph * Wp
            r0, r1 = acc[top:top + Wp], acc[top + Wp:top + 2 * Wp]   # the window rows, as slices
            dst, arg = z[n, oc, ph], argmax[n, oc, ph]
            for pw in range(ZW):
                best, at = _first_max4(r0[2 * pw], r0[2 * pw + 1], r1[2 * pw], r1[2 * pw + 1])
                dst[pw] = best if not best < zero else zero
                arg[pw] = at


@numba.njit(cache=True, inline="always")
def _relu_pool2(src, row, add, dst):
    """dst[ph, pw] = max(0, add + the largest of src[(2ph + a)*row + 2pw + b] for a, b in {0, 1}): a
    flat plane of rows ``row`` long, max-pooled 2 x 2 with stride 2 (rows and columns past 2*ZH, 2*ZW
    left out, as pooling's floor does), the bias ``add`` added, then ReLU.  NaN stays NaN."""
    zero = dst.dtype.type(0)
    for ph in range(dst.shape[0]):
        top, out = 2 * ph * row, dst[ph]
        r0, r1 = src[top:top + row], src[top + row:top + 2 * row]   # the window rows, as slices
        for pw in range(dst.shape[1]):
            m = _first_max4(r0[2 * pw], r0[2 * pw + 1], r1[2 * pw], r1[2 * pw + 1])[0] + add
            out[pw] = m if not m < zero else zero     # relu; a NaN fails both tests and stays


@numba.njit(cache=True, inline="always")
def _widen(dy, mask, n, oc, Wp, g):
    """g[oh*Wp + ow] = dy[n, oc, oh, ow] for ow < OW (g's other entries are left as they are: zero), or 0
    where ``mask[n, oc, oh, ow] <= 0`` (ReLU's backward, from its output; an empty ``mask``: none)."""
    zero = g.dtype.type(0)
    for oh in range(dy.shape[2]):
        row, base = dy[n, oc, oh], np.uint64(oh * Wp)
        if mask.shape[0] == 0:
            for ow in range(np.uint64(dy.shape[3])):
                g[base + ow] = row[ow]
        else:
            keep = mask[n, oc, oh]
            for ow in range(np.uint64(dy.shape[3])):
                g[base + ow] = row[ow] if keep[ow] > zero else zero


@numba.njit(parallel=True, cache=True, fastmath=_SUMS)
def _direct_weight_grad(xpad, dy, mask, Wp, dw, db):
    """dw[oc, c, i, j] = sum over n, t of dY_wide[n, oc, t] * xpad[n, c, i*Wp + j + t]; db[oc] = sum of dY[:, oc]
    (dY masked by ReLU's output ``mask``, unless empty; see _widen).  Each plane's sums are added into
    float64 totals, so a large batch loses no precision."""
    N, C = xpad.shape[0], xpad.shape[1]
    OC, KH, KW = dw.shape[0], dw.shape[2], dw.shape[3]
    OH, OW = dy.shape[2], dy.shape[3]
    L = np.uint64(OH * Wp)
    for oc in prange(OC):
        acc = np.zeros((C, KH, KW), dtype=np.float64)
        bias_acc = 0.0
        g = np.zeros(OH * Wp, dtype=dy.dtype)
        for n in range(N):
            _widen(dy, mask, n, oc, Wp, g)
            s = dy.dtype.type(0)
            for t in range(L):
                s += g[t]
            bias_acc += s
            for c in range(C):
                src = xpad[n, c]
                for i in range(KH):
                    for j in range(KW):
                        off, s = np.uint64(i * Wp + j), dy.dtype.type(0)
                        for t in range(L):
                            s += g[t] * src[off + t]
                        acc[c, i, j] += s
        for c in range(C):
            for i in range(KH):
                for j in range(KW):
                    dw[oc, c, i, j] = acc[c, i, j]
        db[oc] = bias_acc


@numba.njit(parallel=True, cache=True)
def _direct_input_grad(dy, mask, w, PH, PW, Wp, dx):
    """dx[n, c] = the crop of sum over (oc, i, j) of w[oc, c, i, j] * dY_wide[n, oc] added at offset i*Wp + j
    (dY masked by ``mask`` unless empty, as in _direct_weight_grad)."""
    N, C, H, W = dx.shape
    OC, KH, KW = w.shape[0], w.shape[2], w.shape[3]
    OH = dy.shape[2]
    L = np.uint64(OH * Wp)
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        dxp = np.zeros((H + 2 * PH) * Wp + KW, dtype=dx.dtype)
        g = np.zeros(OH * Wp, dtype=dx.dtype)
        for oc in range(OC):
            _widen(dy, mask, n, oc, Wp, g)
            for i in range(KH):
                for j in range(KW):
                    wv, off = w[oc, c, i, j], np.uint64(i * Wp + j)
                    for t in range(L):
                        dxp[off + t] += wv * g[t]
        for h in range(H):
            dst, base = dx[n, c, h], np.uint64((h + PH) * Wp + PW)
            for ww in range(np.uint64(W)):
                dst[ww] = dxp[base + ww]


def _padded(x, dims):
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    Wp = W + 2 * PW
    xpad = np.empty((N, C, (H + 2 * PH) * Wp + KW - 1), dtype=x.dtype)
    _pad_planes(x, PH, PW, xpad)
    return xpad, Wp


# --- the overrides ------------------------------------------------------------------------------

def _forward_args(x, bias, weight, stride, padding):
    """x contiguous, the bias as an array (empty for none) and the window's dimensions."""
    x = np.ascontiguousarray(x)
    bias = np.empty(0, dtype=x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    return x, bias, window(x.shape, weight.shape[2:], stride, padding)


def conv2d(x, weight, bias, stride, padding):
    """``y = weight * x + bias`` by rows, direct or blocked rows (see the module docstring); returns
    ``(y, saved)``: the rows (N*P, K) in training, the input ``x`` on the direct path (its backward
    rebuilds what it needs from it) and in inference's blocked rows (no backward follows).  Same values as :func:`functional.conv2d` up to
    the rounding of a sum taken in another order."""
    x, bias, dims = _forward_args(x, bias, weight, stride, padding)
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    OC, K = weight.shape[0], C * KH * KW
    if not _uses_direct(K, stride) and is_grad_enabled():
        note("rows")
        return _rows_forward(x, weight, bias, dims)
    y = np.empty((N, OC, OH, OW), dtype=x.dtype)
    if _uses_direct(K, stride):
        note("direct")
        xpad, Wp = _padded(x, dims)
        _direct_forward(xpad, np.ascontiguousarray(weight), bias, Wp, False, y)
    else:
        note("blocked rows")
        _blocked_rows_forward(x, weight, bias, dims, y)
    return y, x


def _fuses_relu(weight, stride) -> bool:
    """Whether a training convolution of this shape takes a path that clips its output as it stores it
    (rows or direct); the others (inference's blocked rows) run :func:`conv2d` and ReLU one after the other."""
    return _uses_direct(int(np.prod(weight.shape[1:])), stride) or is_grad_enabled()


def conv2d_relu(x, weight, bias, stride, padding):
    """Training's ``relu(conv2d(x))`` (see :func:`fused.conv2d_relu`): on the rows and direct
    paths the output is clipped as it is stored, so ReLU makes no pass of its own."""
    if not _fuses_relu(weight, stride):
        note("reference: conv2d, then ReLU")
        return fused.conv2d_relu.reference(x, weight, bias, stride, padding)
    x, bias, dims = _forward_args(x, bias, weight, stride, padding)
    if not _uses_direct(int(np.prod(weight.shape[1:])), stride):
        note("rows, clipped as stored")
        return _rows_forward(x, weight, bias, dims, relu=True)
    note("direct, clipped as stored")
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    y = np.empty((N, weight.shape[0], OH, OW), dtype=x.dtype)
    xpad, Wp = _padded(x, dims)
    _direct_forward(xpad, np.ascontiguousarray(weight), bias, Wp, True, y)
    return y, x


def conv2d_relu_maxpool2d(x, weight, bias, stride, padding, pool_kernel, pool_stride, pool_padding):
    """Inference's ``maxpool2d(relu(conv2d(x)))`` (see :func:`fused.conv2d_relu_maxpool2d`): for a
    2 x 2 pool of stride 2 without padding, the convolution's planes are pooled and clipped as they are
    stored, so its full-size output is never written; any other pool goes to the reference."""
    if not _pool2(pool_kernel, pool_stride, pool_padding):
        note(_not_pool2(pool_kernel, pool_stride, pool_padding))
        return fused.conv2d_relu_maxpool2d.reference(x, weight, bias, stride, padding,
                                                          pool_kernel, pool_stride, pool_padding)
    x, bias, dims = _forward_args(x, bias, weight, stride, padding)
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    OC, K = weight.shape[0], C * KH * KW
    z = np.empty((N, OC, OH // 2, OW // 2), dtype=x.dtype)
    if _uses_direct(K, stride):
        note("direct, pooled as stored")
        xpad, Wp = _padded(x, dims)
        _direct_forward_relu_pool2(xpad, np.ascontiguousarray(weight), bias, Wp, OH, z)
    else:
        note("blocked rows, pooled as stored")
        _blocked_rows_forward(x, weight, bias, dims, z, relu_pool2=True)
    return z


def _pool2(pool_kernel, pool_stride, pool_padding) -> bool:
    return (tuple(pool_kernel), tuple(pool_stride), tuple(pool_padding)) == ((2, 2), (2, 2), (0, 0))


def _not_pool2(pool_kernel, pool_stride, pool_padding) -> str:
    """Why a fused run goes to the reference: its pool, in the trace's words."""
    (KH, KW), (SH, SW), (PH, PW) = pool_kernel, pool_stride, pool_padding
    return f"reference: pool {KH}x{KW} stride {SH}x{SW} padding {PH}x{PW}, not 2x2 stride 2 padding 0"


def conv2d_relu_maxpool2d_train(x, weight, bias, stride, padding, pool_kernel, pool_stride, pool_padding):
    """Training's ``maxpool2d(relu(conv2d(x)))`` (see :func:`fused.conv2d_relu_maxpool2d_train`):
    for a 2 x 2 pool of stride 2 on the rows and direct paths the convolution's output is clipped,
    pooled and its argmax noted as it is stored, so neither it nor ReLU's output is ever written;
    returns ``(z, saved, argmax)``, argmax as int8 window offsets.  Anything else: the reference."""
    direct = _uses_direct(int(np.prod(weight.shape[1:])), stride)
    if not _pool2(pool_kernel, pool_stride, pool_padding):
        note(_not_pool2(pool_kernel, pool_stride, pool_padding))
        return fused.conv2d_relu_maxpool2d_train.reference(x, weight, bias, stride, padding,
                                                                pool_kernel, pool_stride, pool_padding)
    x, bias, dims = _forward_args(x, bias, weight, stride, padding)
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    OC, ZH, ZW = weight.shape[0], OH // 2, OW // 2
    if not direct and _uses_winograd(weight.shape, stride, padding, (OH, OW)):
        note("winograd, pooled as stored")
        bias = bias if bias.shape[0] != 0 else np.zeros(OC, dtype=x.dtype)
        z, tiles, argmax = winograd.relu_pool2_forward(x, np.asarray(weight, dtype=x.dtype), bias, (PH, PW))
        return z, tiles, argmax.reshape(N * OC, ZH * ZW)
    z = np.empty((N, OC, ZH, ZW), dtype=x.dtype)
    argmax = np.empty((N, OC, ZH, ZW), dtype=np.int8)
    if direct:
        note("direct, pooled as stored")
        xpad, Wp = _padded(x, dims)
        _direct_forward_relu_pool2_argmax(xpad, np.ascontiguousarray(weight), bias, Wp, OH, z, argmax)
        saved = x
    else:
        note("rows, pooled as stored")
        saved = _unfold_rows(x, dims)
        prod = saved @ _weight_rows(weight, x.dtype).T                               # (N*P, OC)
        bias = bias if bias.shape[0] != 0 else np.zeros(OC, dtype=x.dtype)
        _rows_relu_pool2(prod.reshape(N, OH * OW, OC), bias, OW, z, argmax)
    return z, saved, argmax.reshape(N * OC, ZH * ZW)


def conv2d_relu_maxpool2d_backward(grad_output, z, argmax, saved, weight, x_shape, stride, padding,
                                   pool_kernel, pool_stride, pool_padding, input_grad=True):
    """``(dx, dweight, dbias)`` of :func:`conv2d_relu_maxpool2d_train` from its ``z``, ``argmax`` and
    ``saved``: dY is built from dz in one pass (each gradient with z > 0 at its window's argmax, zeros
    elsewhere), straight into the layout the convolution's backward reads; see
    :func:`fused.conv2d_relu_maxpool2d_backward`."""
    if isinstance(saved, winograd.Tiles):  # the forward took Winograd's path: so does its backward
        note("winograd")
        return _winograd_backward(grad_output, z, argmax, saved, weight, x_shape, stride, padding, input_grad)
    direct = _uses_direct(int(np.prod(weight.shape[1:])), stride)
    fast = (_pool2(pool_kernel, pool_stride, pool_padding) and argmax.dtype == np.int8
            and saved.dtype in DTYPES and (saved.ndim == 2 or (saved.ndim == 4 and direct)))
    if not fast:  # the forward took the reference: so does its backward
        note("reference: the forward's")
        return fused.conv2d_relu_maxpool2d_backward.reference(
            grad_output, z, argmax, saved, weight, x_shape, stride, padding, pool_kernel, pool_stride,
            pool_padding, input_grad)
    dims = window(x_shape, weight.shape[2:], stride, padding)
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    OC, ZH, ZW, P = weight.shape[0], OH // 2, OW // 2, OH * OW
    if not (tuple(grad_output.shape) == tuple(z.shape) == (N, OC, ZH, ZW)) or argmax.shape != (N * OC, ZH * ZW):
        raise ValueError(f"conv2d_relu_maxpool2d_backward: for an input of shape {(N, C, H, W)} expected "
                         f"grad_output and z of shape {(N, OC, ZH, ZW)} and argmax of shape {(N * OC, ZH * ZW)}, "
                         f"got {tuple(grad_output.shape)}, {tuple(z.shape)} and {tuple(argmax.shape)}")
    dtype = grad_output.dtype
    dz, z = np.ascontiguousarray(grad_output), np.ascontiguousarray(z, dtype=dtype)
    argmax = np.ascontiguousarray(argmax).reshape(N, OC, ZH, ZW)
    if saved.ndim == 2:
        note("rows, dY built from dz")
        dy = np.empty((OC, N, P), dtype=dtype)
        _unpool2_masked(dz, z, argmax, OW, True, dy)
        rows = np.ascontiguousarray(saved, dtype=dtype)
        if rows.shape != (N * P, C * KH * KW):
            raise ValueError(f"conv2d_relu_maxpool2d_backward: expected the forward's saved rows of shape "
                             f"{(N * P, C * KH * KW)}, got {tuple(rows.shape)}")
        return _rows_products(dy.reshape(OC, N * P), rows, weight, dims, input_grad)
    dy = np.empty((N, OC, OH, OW), dtype=dtype)
    _unpool2_masked(dz, z, argmax, OW, False, dy.reshape(N, OC, P))
    return _backward(dy, saved, weight, x_shape, stride, padding, input_grad, None)


def _uses_winograd(weight_shape, stride, padding, out_hw) -> bool:
    return _WINOGRAD and winograd.fits(weight_shape, stride, padding, out_hw)


def _winograd_backward(grad_output, z, argmax, tiles, weight, x_shape, stride, padding, input_grad):
    """The backward of a run that took Winograd's forward, its arguments checked against the tiles."""
    dims = window(x_shape, weight.shape[2:], stride, padding)
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    OC, ZH, ZW = weight.shape[0], OH // 2, OW // 2
    expected = (16, N * ZH * ZW, C)
    if (tuple(tiles.V.shape) != expected or (tiles.TH, tiles.TW) != (ZH, ZW)
            or not (tuple(grad_output.shape) == tuple(z.shape) == (N, OC, ZH, ZW))
            or argmax.shape != (N * OC, ZH * ZW)):
        raise ValueError(f"conv2d_relu_maxpool2d_backward: for an input of shape {(N, C, H, W)} expected "
                         f"the forward's tiles of shape {expected}, grad_output and z of shape {(N, OC, ZH, ZW)} "
                         f"and argmax of shape {(N * OC, ZH * ZW)}, got {tuple(tiles.V.shape)}, "
                         f"{tuple(grad_output.shape)}, {tuple(z.shape)} and {tuple(argmax.shape)}")
    dtype = tiles.dtype
    dz = np.ascontiguousarray(grad_output, dtype=dtype)
    z = np.ascontiguousarray(z, dtype=dtype)
    argmax = np.ascontiguousarray(argmax, dtype=np.int8).reshape(N, OC, ZH, ZW)
    return winograd.relu_pool2_backward(dz, z, argmax, tiles, weight, x_shape, (PH, PW), input_grad)


def conv2d_backward(grad_output, saved, weight, x_shape, stride, padding, input_grad=True):
    """``(dx, dweight, dbias)`` of :func:`conv2d` from what it kept; see :func:`functional.conv2d_backward`.

    ``dx`` is None with ``input_grad=False``.  ``saved`` is the rows (2-d), the input (4-d), or
    columns kept by the reference's forward (3-d), which go to the reference.
    """
    if saved.ndim == 3 or saved.dtype not in DTYPES:  # the reference's columns (or another dtype)
        note("reference: the forward's columns")
        return functional.conv2d_backward.reference(grad_output, saved, weight, x_shape, stride, padding,
                                                    input_grad)
    return _backward(grad_output, saved, weight, x_shape, stride, padding, input_grad, None)


def conv2d_relu_backward(grad_output, y, saved, weight, x_shape, stride, padding, input_grad=True):
    """``(dx, dweight, dbias)`` of :func:`conv2d_relu`, ``y`` its clipped output; see
    :func:`fused.conv2d_relu_backward`.  On the rows and direct paths ReLU's mask is applied as dY
    is read (in the axis swap, or as each plane is widened), so it makes no pass of its own."""
    direct = _uses_direct(int(np.prod(weight.shape[1:])), stride)
    if saved.dtype not in DTYPES or not (saved.ndim == 2 or (saved.ndim == 4 and direct)):
        note("reference: the forward's")
        return fused.conv2d_relu_backward.reference(grad_output, y, saved, weight, x_shape, stride,
                                                         padding, input_grad)
    if getattr(y, "shape", None) != tuple(grad_output.shape):
        raise ValueError(f"conv2d_relu_backward: expected the forward's output y of grad_output's shape "
                         f"{tuple(grad_output.shape)}, got {getattr(y, 'shape', type(y).__name__)}")
    return _backward(grad_output, saved, weight, x_shape, stride, padding, input_grad,
                     np.ascontiguousarray(y, dtype=grad_output.dtype))


def _backward(grad_output, saved, weight, x_shape, stride, padding, input_grad, relu_out):
    """The rows and direct backward passes; ``relu_out`` (or None) masks dY, as ReLU's backward."""
    dims = window(x_shape, weight.shape[2:], stride, padding)
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    OC, K = weight.shape[0], C * KH * KW
    kept = (N * OH * OW, K) if saved.ndim == 2 else (N, C, H, W)
    if tuple(saved.shape) != kept or tuple(grad_output.shape) != (N, OC, OH, OW):
        raise ValueError(f"conv2d_backward: for an input of shape {(N, C, H, W)} expected the forward's "
                         f"saved {'rows' if saved.ndim == 2 else 'input'} of shape {kept} and grad_output "
                         f"of shape {(N, OC, OH, OW)}, got {tuple(saved.shape)} and {tuple(grad_output.shape)}")
    dtype = grad_output.dtype
    grad_output = np.ascontiguousarray(grad_output)
    mask = np.empty((0, 0, 0, 0), dtype=dtype) if relu_out is None else relu_out
    if saved.ndim == 2:
        note("rows")
        rows = np.ascontiguousarray(saved, dtype=dtype)
        return _rows_backward(grad_output, rows, weight, dims, input_grad, mask)
    if not _uses_direct(K, stride):  # the input that inference's blocked rows keep: no backward
        raise ValueError(f"conv2d_backward: the forward of this convolution ran under no_grad and kept only its "
                         f"input; run it with gradients on (it then keeps the rows backward needs)")
    note("direct")
    x = np.ascontiguousarray(saved, dtype=dtype)
    dx = np.empty((N, C, H, W), dtype=dtype) if input_grad else None
    dweight, dbias = np.empty(weight.shape, dtype=dtype), np.empty(OC, dtype=dtype)
    xpad, Wp = _padded(x, dims)
    _direct_weight_grad(xpad, grad_output, mask, Wp, dweight, dbias)
    if input_grad:
        _direct_input_grad(grad_output, mask, np.ascontiguousarray(weight, dtype=dtype), PH, PW, Wp, dx)
    return dx, dweight, dbias
