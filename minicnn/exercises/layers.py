"""The layers and optimizers of a network whose math is the learner's: each calls the functions it is given.

Each class is the reference layer with its ``forward`` and ``backward`` (or an optimizer's update)
replaced by calls of the learner's functions, with the reference's parameters, buffers and
``state_dict`` keys.  What each keeps for its backward pass is what the learner's forward returned
(``col``, ``argmax``, ``cache``, ``mask``), so the learner's backward gets the learner's own record.
``print(model)`` names the class and, after a semicolon, whose functions run:

    (conv1): YourConv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1); forward: conv2d_forward.py, ...)

A function given here is one of the learner's, wrapped by :func:`minicnn.exercises.calls.wrap`, or
the reference's own where the learner wrote only half of a layer (a convolution's forward pass
without its backward).

Docs: docs/exercises.md
"""
from __future__ import annotations

import numpy as np

from minicnn import nn, optim
from minicnn.nn.module import Module


class YourReLU(nn.ReLU):
    def __init__(self, f, source):
        Module.__init__(self)
        self.f, self.source = f, source

    def forward(self, x):
        y = self.f.relu_forward(x)
        self.save_for_backward(y, output=y)
        return y

    def backward(self, grad_output):
        (y,) = self.saved_tensors(grad_output)
        return self.f.relu_backward(grad_output, y)

    def extra_repr(self) -> str:
        return self.source


class YourLinear(nn.Linear):
    def __init__(self, layer: nn.Linear, f, source):
        Module.__init__(self)
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.weight, self.bias = layer.weight, layer.bias
        self.f, self.source = f, source

    def forward(self, x):
        y = self.f.linear_forward(x, self.weight.data, self.bias.data)
        self.save_for_backward(x, output=y)
        return y

    def backward(self, grad_output):
        (x,) = self.saved_tensors(grad_output)
        dx, dweight, dbias = self.f.linear_backward(grad_output, x, self.weight.data)
        self.weight.accumulate_grad(dweight)
        self.bias.accumulate_grad(dbias)
        return dx

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}; {self.source}"


class YourConv2d(nn.Conv2d):
    """``conv2d(x, weight, bias, stride, padding) -> (y, col)`` and
    ``conv2d_backward(grad_output, col, weight, x_shape, stride, padding) -> (dx, dweight, dbias)``."""

    def __init__(self, layer: nn.Conv2d, conv2d, conv2d_backward, source):
        Module.__init__(self)
        self.in_channels, self.out_channels = layer.in_channels, layer.out_channels
        self.kernel_size, self.stride, self.padding = layer.kernel_size, layer.stride, layer.padding
        self.weight, self.bias = layer.weight, layer.bias
        self.conv2d, self.conv2d_backward, self.source = conv2d, conv2d_backward, source

    def forward(self, x):
        self._check(x)
        y, col = self.conv2d(x, self.weight.data, self.bias.data, self.stride, self.padding)
        self.save_for_backward(col, x.shape, output=y)
        return y

    def _backward(self, grad_output, input_grad):
        col, x_shape = self.saved_tensors(grad_output)
        dx, dweight, dbias = self.conv2d_backward(grad_output, col, self.weight.data, x_shape,
                                                  self.stride, self.padding)
        self.weight.accumulate_grad(dweight)
        self.bias.accumulate_grad(dbias)
        return dx if input_grad else None

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}; {self.source}"


class YourMaxPool2d(nn.MaxPool2d):
    def __init__(self, layer: nn.MaxPool2d, f, source):
        Module.__init__(self)
        self.kernel_size, self.stride, self.padding = layer.kernel_size, layer.stride, layer.padding
        self.f, self.source = f, source

    def forward(self, x):
        y, argmax = self.f.maxpool2d_forward(x, self.kernel_size, self.stride, self.padding)
        self.save_for_backward(argmax, x.shape, output=y)
        return y

    def backward(self, grad_output):
        argmax, x_shape = self.saved_tensors(grad_output)
        return self.f.maxpool2d_backward(grad_output, argmax, x_shape, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}; {self.source}"


class YourLogSoftmax(nn.LogSoftmax):
    def __init__(self, layer: nn.LogSoftmax, f, source):
        Module.__init__(self)
        self.dim, self.f, self.source = layer.dim, f, source

    def forward(self, x):
        y = self.f.log_softmax(x, self.dim)
        self.save_for_backward(y, output=y)
        return y

    def backward(self, grad_output):
        (y,) = self.saved_tensors(grad_output)
        return self.f.log_softmax_backward(grad_output, y, self.dim)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}; {self.source}"


class YourNLLLoss(nn.NLLLoss):
    def __init__(self, f, source):
        Module.__init__(self)
        self.f, self.source = f, source

    def forward(self, log_probs, target):
        self.save_for_backward(log_probs, target.copy())
        return float(self.f.nll_loss(log_probs, target))

    def backward(self, grad_output=1.0):
        log_probs, target = self.saved_tensors()
        grad = self.f.nll_loss_backward(log_probs, target)
        return grad if grad_output == 1.0 else grad * log_probs.dtype.type(grad_output)

    def extra_repr(self) -> str:
        return self.source


class YourDropout(nn.Dropout):
    def __init__(self, layer: nn.Dropout, f, source):
        Module.__init__(self)
        self.p, self.generator = layer.p, layer.generator  # the same generator: the same masks as the reference
        self.f, self.source = f, source

    def forward(self, x):
        y, mask = self.f.dropout_forward(x, self.p, self.generator, self.training)
        self.save_for_backward(mask, output=y)
        return y

    def backward(self, grad_output):
        (mask,) = self.saved_tensors(grad_output)
        return self.f.dropout_backward(grad_output, mask)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}; {self.source}"


class YourBatchNorm2d(nn.BatchNorm2d):
    def __init__(self, layer: nn.BatchNorm2d, f, source):
        Module.__init__(self)
        self.num_features, self.eps, self.momentum = layer.num_features, layer.eps, layer.momentum
        self.weight, self.bias = layer.weight, layer.bias
        for name, buffer in layer.named_buffers():
            self.register_buffer(name, buffer.copy())  # written in place by the learner's forward
        self.f, self.source = f, source

    def forward(self, x):
        y, cache = self.f.batchnorm2d_forward(x, self.weight.data, self.bias.data, self.running_mean,
                                              self.running_var, self.training, self.momentum, self.eps)
        if self.training:
            self.num_batches_tracked = np.asarray(self.num_batches_tracked + 1)
        self.save_for_backward(cache, output=y)
        return y

    def backward(self, grad_output):
        (cache,) = self.saved_tensors(grad_output)
        dx, dgamma, dbeta = self.f.batchnorm2d_backward(grad_output, cache, self.weight.data)
        self.weight.accumulate_grad(dgamma)
        self.bias.accumulate_grad(dbeta)
        return dx

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}; {self.source}"


class YourAdam(optim.Adam):
    """Adam whose update of each parameter is the learner's ``adam_step``, one parameter at a time."""

    def __init__(self, params, f, source, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, lr=lr, betas=betas, eps=eps)
        self.f, self.source = f, source

    def _update(self, p, group, state):
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(p.data), exp_avg_sq=np.zeros_like(p.data))
        state["step"] += 1
        beta1, beta2 = group["betas"]
        self.f.adam_step(p.data, p.grad, state["exp_avg"], state["exp_avg_sq"], state["step"],
                         group["lr"], beta1, beta2, group["eps"])

    def _update_group(self, params, group):
        optim.Optimizer._update_group(self, params, group)  # one parameter at a time, by _update


class YourSGD(optim.SGD):
    """SGD with momentum whose update of each parameter is the learner's ``sgd_momentum_step``."""

    def __init__(self, params, f, source, lr, momentum):
        super().__init__(params, lr=lr, momentum=momentum)
        self.f, self.source = f, source

    def _update(self, p, group, state):
        state["momentum_buffer"] = self.f.sgd_momentum_step(p.data, p.grad, state.get("momentum_buffer"),
                                                            group["lr"], group["momentum"])
