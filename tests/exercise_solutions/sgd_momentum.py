import numpy as np


def sgd_momentum_step(param, grad, momentum_buffer, lr, momentum):
    if momentum_buffer is None:
        buffer = grad.copy()
    else:
        buffer = momentum * momentum_buffer + grad
    param -= lr * buffer
    return buffer
