"""Winograd's F(2 x 2, 3 x 3): the Numba backend's training path for a 3 x 3 convolution of stride 1
followed by ReLU and a 2 x 2 max-pool (conv2 of MnistCNN), forward and both gradients.

The reference convolution multiplies every output by all K = 9*C weights of its
window.  Winograd's minimal filtering algorithm (Lavin and Gray, "Fast Algorithms
for Convolutional Neural Networks", 2015) computes a 2 x 2 tile of outputs from
the 4 x 4 input tile d it reads with 16 multiplies per channel instead of 36:

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise, one 4 x 4 product per channel pair)

    B^T = [[1,  0, -1,  0],      G = [[1,    0,   0],      A^T = [[1, 1,  1,  0],
           [0,  1,  1,  0],           [1/2, 1/2, 1/2],            [0, 1, -1, -1]]
           [0, -1,  1,  0],           [1/2,-1/2, 1/2],
           [0,  1,  0, -1]]           [0,    0,   1]]

with g the 3 x 3 kernel of one (oc, c) pair; Y[i, j] = sum over (u, v) of
d[i + u, j + v] g[u, v], the correlation the layers compute.  Summed over the
input channels, each of the 16 positions xi of the transformed tile is a
matrix product over all tiles t at once:

    V[xi, t, c]  = (B^T d_{t,c} B)[xi]          the input transform      (16, T, C)
    U[xi, c, oc] = (G g_{oc,c} G^T)[xi]         the weight transform     (16, C, OC)
    M[xi]        = V[xi] @ U[xi]                16 products              (16, T, OC)
    y_tile       = A^T M[:, t, oc] A + bias     the output transform

so the three products of the convolution do 16/36 = 1/2.25 of the im2col
product's multiply-adds, at the cost of the transforms (additions only).
Because everything after the input transform is linear, the gradients follow by
the chain rule through the same maps, with no approximation:

    dM[xi, t, oc] = (A dY_tile A^T)[xi]          dY's tile transformed   (16, T, OC)
    dU[xi]        = V[xi]^T @ dM[xi]  ->  dW[oc, c] = G^T dU[:, c, oc] G
    dV[xi]        = dM[xi] @ U[xi]^T  ->  dx tile   = B dV[:, t, c] B^T, added where d was read

Tile t = (n*TH + th)*TW + tw reads input rows 2*th - PH .. 2*th - PH + 3 (and
columns alike; outside the image: zero padding).  Its 2 x 2 outputs are exactly
one 2 x 2 max-pool window when the output's height and width are even, so the
output transform adds the bias, pools, clips at 0 and notes the argmax (int8
offset 2a + b, the first maximum) in one pass, and in backward each window's one
gradient (if its z > 0) becomes its tile's dM directly: ``dY_tile`` has a
single nonzero entry g at (a, b), so ``dM = g * outer(A[:, a], A[:, b])``.
The transformed input V (16 x T x C, 16/9 of the im2col rows' size divided by 4
outputs per tile: 64 % of them for conv2 of MnistCNN) is what the backward keeps.

Float32 rounding: the transforms add and subtract (G's halves are exact), so
the results match the reference's to the rounding of sums taken in another
order, as every fast path here; tests/test_numba_backend.py checks them.

Docs: docs/backends.md#numba
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from minicnn.backend.numba_kernels import _first_max4

#: G of F(2 x 2, 3 x 3), and the (16, 9) matrix kron(G, G) that maps a flattened 3 x 3 kernel to its
#: flattened 4 x 4 transform: (G g G^T)[a, b] = sum over (i, j) of G[a, i] G[b, j] g[i, j].
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
_GG = np.kron(G, G)


@numba.njit(parallel=True, cache=True)
def input_transform(x, PH, PW, TH, TW, V):
    """V[xi, t, c] = (B^T d B)[xi], d = the 4 x 4 window of channel c of image n at (2th - PH, 2tw - PW)."""
    N, C, H, W = x.shape
    uC = np.uint64(C)
    for task in prange(N * TH):
        n, th = task // TH, task % TH
        d = np.empty((4, 4, C), dtype=V.dtype)         # the tile, channels last
        for tw in range(TW):
            t = (n * TH + th) * TW + tw
            for a in range(4):
                ih = 2 * th - PH + a
                for b in range(4):
                    iw, dst = 2 * tw - PW + b, d[a, b]
                    if 0 <= ih < H and 0 <= iw < W:
                        for c in range(C):
                            dst[c] = x[n, c, ih, iw]
                    else:
                        for c in range(uC):
                            dst[c] = 0
            for a in range(4):                           # d B along each row: (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
                d0, d1, d2, d3 = d[a, 0], d[a, 1], d[a, 2], d[a, 3]
                for c in range(uC):
                    e0, e1, e2, e3 = d0[c], d1[c], d2[c], d3[c]
                    d0[c], d1[c], d2[c], d3[c] = e0 - e2, e1 + e2, e2 - e1, e1 - e3
            for b in range(4):                           # B^T (d B) down each column, into V
                d0, d1, d2, d3 = d[0, b], d[1, b], d[2, b], d[3, b]
                v0, v1, v2, v3 = V[b, t], V[4 + b, t], V[8 + b, t], V[12 + b, t]
                for c in range(uC):
                    e0, e1, e2, e3 = d0[c], d1[c], d2[c], d3[c]
                    v0[c], v1[c], v2[c], v3[c] = e0 - e2, e1 + e2, e2 - e1, e1 - e3


def weight_transform(weight):
    """U[xi, c, oc] = (G g G^T)[xi] for g = weight[oc, c] (OC, C, 3, 3): one (16, 9) @ (9, C*OC) product."""
    OC, C = weight.shape[:2]
    g = np.ascontiguousarray(weight.reshape(OC, C, 9).transpose(2, 1, 0)).reshape(9, C * OC)
    return (_GG.astype(weight.dtype) @ g).reshape(16, C, OC)


def weight_grad(dU):
    """dW[oc, c] = G^T dU[:, c, oc] G (OC, C, 3, 3) from dU (16, C, OC): the weight transform's adjoint."""
    _, C, OC = dU.shape
    dg = _GG.T.astype(dU.dtype) @ dU.reshape(16, C * OC)                      # (9, C*OC)
    return np.ascontiguousarray(dg.reshape(3, 3, C, OC).transpose(3, 2, 0, 1))


@numba.njit(parallel=True, cache=True)
def output_relu_pool2(M, bias, TH, TW, z, argmax):
    """z[n, oc, th, tw] = max(0, the first maximum of the tile A^T M[:, t, oc] A + bias[oc]) and argmax its
    offset 2a + b: the output transform, the bias, a 2 x 2 max-pool of stride 2 and ReLU in one pass."""
    N, OC = z.shape[0], z.shape[1]
    zero = z.dtype.type(0)
    for task in prange(N * TH):
        n, th = task // TH, task % TH
        for tw in range(TW):
            t = (n * TH + th) * TW + tw
            for oc in range(np.uint64(OC)):
                m0, m1, m2, m3 = M[0, t, oc], M[1, t, oc], M[2, t, oc], M[3, t, oc]
                m4, m5, m6, m7 = M[4, t, oc], M[5, t, oc], M[6, t, oc], M[7, t, oc]
                m8, m9, m10, m11 = M[8, t, oc], M[9, t, oc], M[10, t, oc], M[11, t, oc]
                m12, m13, m14, m15 = M[12, t, oc], M[13, t, oc], M[14, t, oc], M[15, t, oc]
                r0, r1, r2, r3 = m0 + m4 + m8, m1 + m5 + m9, m2 + m6 + m10, m3 + m7 + m11       # A^T's row 0
                s0, s1, s2, s3 = m4 - m8 - m12, m5 - m9 - m13, m6 - m10 - m14, m7 - m11 - m15   # A^T's row 1
                b = bias[oc]
                best, at = _first_max4(r0 + r1 + r2 + b, r1 - r2 - r3 + b, s0 + s1 + s2 + b, s1 - s2 - s3 + b)
                z[n, oc, th, tw] = best if not best < zero else zero     # relu; a NaN stays
                argmax[n, oc, th, tw] = at


@numba.njit(parallel=True, cache=True)
def unpool2_transform(dz, z, argmax, TH, TW, dM, sums):
    """dM[:, t, oc] = A dY_tile A^T, dY_tile all zero but g = dz[n, oc, th, tw] (where z > 0) at its argmax
    (a, b): g * outer(A[:, a], A[:, b]), A's columns (1, 1, 1, 0) and (0, 1, -1, -1); and sums[n*TH + th,
    oc] = the sum of a row of tiles' g (the bias gradient's parts).  For each tile the factors g * A[:, a]
    and A[:, b] are laid out for all OC channels first, so the 16 stores are runs of OC contiguous values
    (vector code) instead of 16 scattered ones per channel."""
    N, OC = dz.shape[0], dz.shape[1]
    zero, one = dz.dtype.type(0), dz.dtype.type(1)
    uOC = np.uint64(OC)
    for task in prange(N * TH):
        n, th = task // TH, task % TH
        row_sums = sums[task]
        p = np.empty((4, OC), dtype=dM.dtype)        # g * A[:, a], for each channel
        q = np.empty((4, OC), dtype=dM.dtype)        # A[:, b]
        for oc in range(OC):
            row_sums[oc] = zero
        for tw in range(TW):
            t = (n * TH + th) * TW + tw
            for oc in range(OC):
                g = dz[n, oc, th, tw] if z[n, oc, th, tw] > zero else zero
                k = argmax[n, oc, th, tw]
                row_sums[oc] += g
                top, left = k // 2 == 0, k % 2 == 0
                p[0, oc], p[1, oc] = (g if top else zero), g
                p[2, oc], p[3, oc] = (g if top else -g), (zero if top else -g)
                q[0, oc], q[1, oc] = (one if left else zero), one
                q[2, oc], q[3, oc] = (one if left else -one), (zero if left else -one)
            for a in range(4):
                pa = p[a]
                for b in range(4):
                    qb, dst = q[b], dM[4 * a + b, t]
                    for oc in range(uOC):
                        dst[oc] = pa[oc] * qb[oc]


@numba.njit(parallel=True, cache=True)
def input_grad(dV, PH, PW, TH, TW, dx):
    """dx[n] = the sum of the tiles' B dV[:, t, c] B^T, each added where its window was read, cropped to
    the image; one image per parallel iteration (tiles overlap), channels last in a local buffer."""
    N, C, H, W = dx.shape
    uC = np.uint64(C)
    for n in prange(N):
        acc = np.zeros((2 * TH + 2, 2 * TW + 2, C), dtype=dx.dtype)    # the padded image's gradient
        e = np.empty((4, 4, C), dtype=dx.dtype)
        for th in range(TH):
            for tw in range(TW):
                t = (n * TH + th) * TW + tw
                for a in range(4):   # dV B^T along each row: (v0, v1 - v2 + v3, v1 + v2 - v0, -v3)
                    v0, v1, v2, v3 = dV[4 * a, t], dV[4 * a + 1, t], dV[4 * a + 2, t], dV[4 * a + 3, t]
                    e0, e1, e2, e3 = e[a, 0], e[a, 1], e[a, 2], e[a, 3]
                    for c in range(uC):
                        f0, f1, f2, f3 = v0[c], v1[c], v2[c], v3[c]
                        e0[c], e1[c], e2[c], e3[c] = f0, f1 - f2 + f3, f1 + f2 - f0, -f3
                for b in range(4):   # B (dV B^T) down each column, added onto the window
                    e0, e1, e2, e3 = e[0, b], e[1, b], e[2, b], e[3, b]
                    a0, a1 = acc[2 * th, 2 * tw + b], acc[2 * th + 1, 2 * tw + b]
                    a2, a3 = acc[2 * th + 2, 2 * tw + b], acc[2 * th + 3, 2 * tw + b]
                    for c in range(uC):
                        f0, f1, f2, f3 = e0[c], e1[c], e2[c], e3[c]
                        a0[c] += f0
                        a1[c] += f1 - f2 + f3
                        a2[c] += f1 + f2 - f0
                        a3[c] -= f3
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    dx[n, c, h, w] = acc[h + PH, w + PW, c]


def fits(weight_shape, stride, padding, out_hw) -> bool:
    """Whether this path computes the convolution: a 3 x 3 kernel, stride 1, padding of at most 2 (a
    tile then always reads the image), and an even output height and width, at least 2 (whole pool
    windows, one per tile)."""
    OH, OW = out_hw
    return (tuple(weight_shape[2:]) == (3, 3) and tuple(stride) == (1, 1) and max(padding) <= 2
            and OH >= 2 and OW >= 2 and OH % 2 == 0 and OW % 2 == 0)


class Tiles:
    """What the forward keeps for backward: the transformed input V (16, T, C) and the tile grid."""

    __slots__ = ("V", "TH", "TW")

    def __init__(self, V, TH, TW):
        self.V, self.TH, self.TW = V, TH, TW

    @property
    def dtype(self):
        return self.V.dtype


def relu_pool2_forward(x, weight, bias, padding):
    """``(z, Tiles, argmax)``: maxpool2d(relu(conv2d(x))) for a 2 x 2 pool of stride 2, argmax (N, OC,
    ZH, ZW) int8; x contiguous, bias an array of OC values (zeros for none), :func:`fits` true."""
    N, C, H, W = x.shape
    OC, (PH, PW) = weight.shape[0], padding
    TH, TW = (H + 2 * PH - 2) // 2, (W + 2 * PW - 2) // 2
    V = np.empty((16, N * TH * TW, C), dtype=x.dtype)
    input_transform(x, PH, PW, TH, TW, V)
    M = np.matmul(V, weight_transform(weight))                                  # (16, T, OC)
    z = np.empty((N, OC, TH, TW), dtype=x.dtype)
    argmax = np.empty((N, OC, TH, TW), dtype=np.int8)
    output_relu_pool2(M, bias, TH, TW, z, argmax)
    return z, Tiles(V, TH, TW), argmax


def relu_pool2_backward(dz, z, argmax, tiles, weight, x_shape, padding, input_grad_wanted):
    """``(dx, dweight, dbias)`` of :func:`relu_pool2_forward` (dx None unless ``input_grad_wanted``);
    dz, z (N, OC, ZH, ZW) contiguous of the gradient's dtype, argmax (N, OC, ZH, ZW) int8."""
    V, TH, TW = tiles.V, tiles.TH, tiles.TW
    OC, dtype = weight.shape[0], dz.dtype
    dM = np.empty((16, V.shape[1], OC), dtype=dtype)
    sums = np.empty((dz.shape[0] * TH, OC), dtype=dtype)
    unpool2_transform(dz, z, argmax, TH, TW, dM, sums)
    dweight = weight_grad(np.matmul(V.transpose(0, 2, 1), dM))                 # (16, C, OC) -> (OC, C, 3, 3)
    dbias = sums.sum(axis=0)                                                    # each window's one dY, summed
    dx = None
    if input_grad_wanted:
        U = weight_transform(np.asarray(weight, dtype=dtype))
        dV = np.matmul(dM, U.transpose(0, 2, 1))                                # (16, T, C)
        dx = np.empty(tuple(x_shape), dtype=dtype)
        input_grad(dV, padding[0], padding[1], TH, TW, dx)
    return dx, dweight, dbias
