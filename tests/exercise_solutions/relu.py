import numpy as np


def relu_forward(x):
    return np.maximum(x, 0)


def relu_backward(grad_output, y):
    return grad_output * (y > 0)
