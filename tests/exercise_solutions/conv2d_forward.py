import numpy as np

from im2col import im2col


def conv2d(x, weight, bias, stride, padding):
    N, C, H, W = x.shape
    OC, _, KH, KW = weight.shape
    col = im2col(x, (KH, KW), stride, padding)
    K, P = col.shape[1:]
    cols = col.transpose(1, 0, 2).reshape(K, N * P)                    # the whole batch: one product
    y = (weight.reshape(OC, K) @ cols).reshape(OC, N, P).transpose(1, 0, 2) + bias[:, None]
    OH = (H + 2 * padding[0] - KH) // stride[0] + 1
    OW = (W + 2 * padding[1] - KW) // stride[1] + 1
    return y.reshape(N, OC, OH, OW), col
