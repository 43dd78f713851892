"""The exercises, in the suggested order: one module each, with its reference, cases, mistakes and hints.

    relu              ReLU forward and backward
    linear            Linear forward and backward
    log_softmax_nll   LogSoftmax and the NLL loss: softmax minus one-hot
    im2col            every window of an image as a column
    conv2d_forward    Conv2d forward: one matrix product over im2col's columns
    col2im            the adjoint of im2col: overlapping windows added back
    conv2d_backward   Conv2d backward: dx, dweight, dbias
    maxpool2d         MaxPool2d forward (with its argmax) and backward (ties, overlapping windows)
    dropout           inverted dropout, training and evaluation
    batchnorm2d       BatchNorm2d forward and backward, training and evaluation
    adam              one Adam step, with bias correction
    sgd_momentum      one SGD step with momentum

Docs: docs/exercises.md
"""
from minicnn.exercises.catalog import (adam, batchnorm2d, col2im, conv2d_backward, conv2d_forward, dropout, im2col,
                                       linear, log_softmax_nll, maxpool2d, relu, sgd_momentum)

EXERCISES = {module.EXERCISE.name: module.EXERCISE for module in (
    relu, linear, log_softmax_nll, im2col, conv2d_forward, col2im, conv2d_backward, maxpool2d, dropout,
    batchnorm2d, adam, sgd_momentum)}
