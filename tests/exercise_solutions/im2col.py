import numpy as np


def im2col(x, kernel_size, stride, padding, pad_value=0.0):
    N, C, H, W = x.shape
    (KH, KW), (SH, SW), (PH, PW) = kernel_size, stride, padding
    OH = (H + 2 * PH - KH) // SH + 1
    OW = (W + 2 * PW - KW) // SW + 1
    x_pad = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), constant_values=pad_value)
    col = np.empty((N, C, KH, KW, OH, OW), dtype=x.dtype)
    for i in range(KH):
        for j in range(KW):
            col[:, :, i, j] = x_pad[:, :, i:i + SH * OH:SH, j:j + SW * OW:SW]
    return col.reshape(N, C * KH * KW, OH * OW)
