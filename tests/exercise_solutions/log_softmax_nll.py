import numpy as np


def log_softmax(x, dim):
    m = x.max(axis=dim, keepdims=True)
    shifted = x - m
    return shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))


def log_softmax_backward(grad_output, y, dim):
    return grad_output - np.exp(y) * grad_output.sum(axis=dim, keepdims=True)


def nll_loss(log_probs, target):
    N = len(target)
    return -log_probs[np.arange(N), target].sum() / N


def nll_loss_backward(log_probs, target):
    N = len(target)
    grad = np.zeros_like(log_probs)
    grad[np.arange(N), target] = -1.0 / N
    return grad
