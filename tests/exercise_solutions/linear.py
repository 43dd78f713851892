import numpy as np


def linear_forward(x, weight, bias):
    return x @ weight.T + bias


def linear_backward(grad_output, x, weight):
    dx = grad_output @ weight
    dweight = grad_output.T @ x
    dbias = grad_output.sum(axis=0)
    return dx, dweight, dbias
