import numpy as np

from col2im import col2im


def conv2d_backward(grad_output, col, weight, x_shape, stride, padding):
    N, OC = grad_output.shape[:2]
    K, P = col.shape[1:]
    dy = grad_output.reshape(N, OC, P)
    dweight = np.zeros((OC, K), dtype=grad_output.dtype)
    for n in range(N):
        dweight += dy[n] @ col[n].T
    dbias = dy.sum(axis=(0, 2))
    dys = dy.transpose(1, 0, 2).reshape(OC, N * P)                     # the whole batch: one product
    dcol = (weight.reshape(OC, K).T @ dys).reshape(K, N, P).transpose(1, 0, 2)
    dx = col2im(dcol, x_shape, weight.shape[2:], stride, padding)
    return dx, dweight.reshape(weight.shape), dbias
