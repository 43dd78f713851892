"""The documented networks with the learner's functions in them, and one training step beside the reference.

Which exercise runs where (:func:`assemble`, the classes of layers.py):

    relu             every ReLU                        YourReLU
    linear           every Linear                      YourLinear
    log_softmax_nll  the LogSoftmax and the loss       YourLogSoftmax, YourNLLLoss
    conv2d_forward   every Conv2d's forward pass       YourConv2d
    im2col           every Conv2d's forward pass, as the reference's product around it,
                     while conv2d_forward is not the learner's (:func:`conv2d_with`)
    conv2d_backward  every Conv2d's backward pass      YourConv2d
    col2im           every Conv2d's backward pass, as the reference's products around it,
                     while conv2d_backward is not the learner's (:func:`conv2d_backward_with`)
    maxpool2d        every MaxPool2d                   YourMaxPool2d
    dropout          every Dropout (MnistBNCNN)        YourDropout
    batchnorm2d      every BatchNorm2d (MnistBNCNN)    YourBatchNorm2d
    adam             the optimizer, Adam               YourAdam
    sgd_momentum     the optimizer, SGD with momentum  YourSGD

Everything else is the reference.  The last check of every exercise, :func:`one_step`, builds
the network twice from one seed, once with the exercise's functions in it and once without,
runs one training step on eight MNIST test digits in float64 (three steps for an optimizer, the
learning rate halved at the third, as a schedule would) and compares the loss, every parameter's
gradient, the parameters after the step and the output in eval mode.

Docs: docs/exercises.md
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from minicnn import models, nn, optim
from minicnn.exercises.compare import Tolerance, compare
from minicnn.exercises.layers import (YourAdam, YourBatchNorm2d, YourConv2d, YourDropout, YourLinear,
                                      YourLogSoftmax, YourMaxPool2d, YourNLLLoss, YourReLU, YourSGD)
from minicnn.nn import functional as F
from minicnn.nn.unfold import output_size

#: The learning rates of the networks' optimizers.
LEARNING_RATES = {"adam": 1e-3, "sgd": 0.01}
SGD_MOMENTUM = 0.9
#: The check's networks are float64, so that only rounding tells the learner's math from the reference's
#: (Adam's first step divides a gradient by its own size, which magnifies float32's last bits).
TOLERANCE = Tolerance(tol=1e-6, floor=1e-3, scaled=True)


def conv2d_with(im2col):
    """The reference's convolution (minicnn/nn/functional.py) around the ``im2col`` given.

        col  = im2col(x)                     (N, K, P)
        y[n] = w_mat @ col[n] + bias         w_mat = weight.reshape(OC, K)  ->  (N, OC, OH, OW)

    as one product for the whole batch, w_mat @ (K, N*P): one large product is many times faster than
    N small ones.
    """
    def conv2d(x, weight, bias, stride, padding):
        (N, _, H, W), (OC, _, KH, KW) = x.shape, weight.shape
        col = im2col(x, (KH, KW), stride, padding)                              # (N, K, P)
        K, P = col.shape[1:]
        y = weight.reshape(OC, K) @ col.transpose(1, 0, 2).reshape(K, N * P)   # the batch in one product
        y = y.reshape(OC, N, P).transpose(1, 0, 2) + bias[:, None]
        OH, OW = output_size(H, KH, stride[0], padding[0]), output_size(W, KW, stride[1], padding[1])
        return y.reshape(N, OC, OH, OW), col
    return conv2d


def conv2d_backward_with(col2im):
    """The reference's convolution backward pass around the ``col2im`` given.

        dweight = sum over n of dY[n] @ col[n]^T      dbias = sum over n and p of dY
        dx      = col2im(w_mat^T @ dY[n])

    with dY as (OC, N*P) and col as (K, N*P), so that one product sums over n and p.
    """
    def conv2d_backward(grad_output, col, weight, x_shape, stride, padding):
        (N, K, P), OC = col.shape, weight.shape[0]
        dy = grad_output.reshape(N, OC, P).transpose(1, 0, 2).reshape(OC, N * P)   # the batch side by side
        dweight = (dy @ col.transpose(1, 0, 2).reshape(K, N * P).T).reshape(weight.shape)
        dcol = (weight.reshape(OC, K).T @ dy).reshape(K, N, P).transpose(1, 0, 2)  # (N, K, P)
        return col2im(dcol, x_shape, weight.shape[2:], stride, padding), dweight, dy.sum(axis=1)
    return conv2d_backward


def _conv_functions(yours: dict):
    """(forward, backward, what runs) of every Conv2d, or None when both are the reference's."""
    if "conv2d_forward" in yours:
        forward, said = yours["conv2d_forward"].conv2d, f"forward: {yours['conv2d_forward'].label}"
    elif "im2col" in yours:
        forward, said = conv2d_with(yours["im2col"].im2col), f"forward: reference on {yours['im2col'].label}"
    else:
        forward, said = F.conv2d, "forward: reference"
    if "conv2d_backward" in yours:
        backward, said2 = yours["conv2d_backward"].conv2d_backward, f"backward: {yours['conv2d_backward'].label}"
    elif "col2im" in yours:
        backward, said2 = conv2d_backward_with(yours["col2im"].col2im), f"backward: reference on {yours['col2im'].label}"
    else:
        backward, said2 = F.conv2d_backward, "backward: reference"
    if forward is F.conv2d and backward is F.conv2d_backward:
        return None
    return forward, backward, f"{said}, {said2}"


def assemble(model: nn.Sequential, yours: dict) -> nn.Sequential:
    """Put the learner's functions (``yours``: exercise name -> namespace with a ``label``) into ``model``'s
    layers, in place; the layers of the exercises not in ``yours`` stay the reference's."""
    conv = _conv_functions(yours)
    for name, layer in list(model.named_children()):
        new = None
        if isinstance(layer, nn.Conv2d) and conv:
            new = YourConv2d(layer, *conv)
        elif isinstance(layer, nn.ReLU) and "relu" in yours:
            new = YourReLU(yours["relu"], yours["relu"].label)
        elif isinstance(layer, nn.Linear) and "linear" in yours:
            new = YourLinear(layer, yours["linear"], yours["linear"].label)
        elif isinstance(layer, nn.MaxPool2d) and "maxpool2d" in yours:
            new = YourMaxPool2d(layer, yours["maxpool2d"], yours["maxpool2d"].label)
        elif isinstance(layer, nn.LogSoftmax) and "log_softmax_nll" in yours:
            new = YourLogSoftmax(layer, yours["log_softmax_nll"], yours["log_softmax_nll"].label)
        elif isinstance(layer, nn.Dropout) and "dropout" in yours:
            new = YourDropout(layer, yours["dropout"], yours["dropout"].label)
        elif isinstance(layer, nn.BatchNorm2d) and "batchnorm2d" in yours:
            new = YourBatchNorm2d(layer, yours["batchnorm2d"], yours["batchnorm2d"].label)
        if new is not None:
            setattr(model, name, new)  # a replaced child keeps its place
    return model


def criterion_for(yours: dict):
    """The loss: the learner's NLL (with log_softmax_nll) or the reference's."""
    f = yours.get("log_softmax_nll")
    return YourNLLLoss(f, f.label) if f else nn.NLLLoss()


def optimizer_for(kind: str, params, yours: dict, lr: float | None = None):
    """Adam or SGD with momentum (``kind``), the learner's update where it is in ``yours``."""
    lr = LEARNING_RATES[kind] if lr is None else lr
    if kind == "adam":
        f = yours.get("adam")
        return YourAdam(params, f, f.label, lr=lr) if f else optim.Adam(params, lr=lr)
    f = yours.get("sgd_momentum")
    return YourSGD(params, f, f.label, lr, SGD_MOMENTUM) if f else optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM)


def small_model(name: str, seed: int = 0) -> nn.Sequential:
    """The network of a check, in float64: MnistCNN with 4 filters and 16 units (a second even for loops in
    Python), or MnistBNCNN."""
    if name == "MnistCNN":
        return models.MnistCNN(filters=4, units=16, seed=seed, dtype=np.float64)
    return models.get_model(name, seed=seed, dtype=np.float64)


@lru_cache(maxsize=1)
def digits(n: int = 8):
    """The first ``n`` MNIST test digits, normalised as for training (in float64), and their labels."""
    from minicnn.data import load_mnist, mnist_eval_transform

    images, labels = load_mnist("test")
    return mnist_eval_transform()(images[:n, None]).astype(np.float64), labels[:n].astype(np.int64)


def _steps(model_name: str, optimizer: str, yours: dict, steps: int) -> dict:
    """Loss, gradients (of the first step), parameters (after the last) and eval output, by name."""
    x, target = digits()
    model = assemble(small_model(model_name), yours)
    criterion = criterion_for(yours)
    opt = optimizer_for(optimizer, model.parameters(), yours)
    out = {}
    for step in range(steps):
        if step == 2:
            opt.param_groups[0]["lr"] /= 2  # as a schedule would: SGD's buffer holds gradients, not steps
        loss = criterion(model(x), target)
        model.parameter_backward(criterion.backward())
        if step == 0:
            out["loss"] = np.asarray(loss)
            out.update({f"{name}.grad": p.grad.copy() for name, p in model.named_parameters()})
        opt.step()
        opt.zero_grad()
    out.update({f"{name} after": p.data.copy() for name, p in model.named_parameters()})
    model.eval()
    with nn.no_grad():
        out["output (eval)"] = model(x)
    return out


def one_step(exercise, f) -> tuple[str, list]:
    """(what ran, rows): the exercise's functions ``f`` in the network against the reference alone."""
    optimizer = "sgd" if exercise.name == "sgd_momentum" else "adam"
    steps = 3 if exercise.name in ("adam", "sgd_momentum") else 1
    expected = _steps(exercise.network, optimizer, {}, steps)
    computed = _steps(exercise.network, optimizer, {exercise.name: f}, steps)
    what = (f"{'MnistCNN(filters=4, units=16)' if exercise.network == 'MnistCNN' else exercise.network}, "
            f"{'SGD with momentum' if optimizer == 'sgd' else 'Adam'}, {steps} step{'s' * (steps > 1)} "
            f"on {len(digits()[0])} MNIST digits, float64")
    return what, compare(expected, computed, TOLERANCE)
