import numpy as np


def col2im(col, x_shape, kernel_size, stride, padding):
    N, C, H, W = x_shape
    (KH, KW), (SH, SW), (PH, PW) = kernel_size, stride, padding
    OH = (H + 2 * PH - KH) // SH + 1
    OW = (W + 2 * PW - KW) // SW + 1
    col = col.reshape(N, C, KH, KW, OH, OW)
    image = np.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=col.dtype)
    for i in range(KH):
        for j in range(KW):
            image[:, :, i:i + SH * OH:SH, j:j + SW * OW:SW] += col[:, :, i, j]
    return image[:, :, PH:PH + H, PW:PW + W]
