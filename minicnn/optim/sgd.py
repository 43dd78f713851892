"""Stochastic gradient descent, with optional momentum and L2 weight decay.

For a parameter p with gradient g at step t (the update rule of torch.optim.SGD):

    g   <- g + weight_decay * p                      (L2 penalty; when weight_decay != 0)
    b_1  = g                                         (momentum buffer; when momentum != 0)
    b_t  = momentum * b_{t-1} + (1 - dampening) * g  (t > 1)
    d    = g + momentum * b_t    if nesterov         (look ahead along the buffer)
           b_t                   otherwise
    p   <- p - lr * d

With momentum = 0 the buffer disappears and the step is plain ``p <- p - lr * g``.
The buffer starts as the first gradient itself, not as zero (so step 1 is a
full gradient step, with no ``(1 - dampening)`` factor).

Docs: docs/optimizers.md#sgd
"""
from __future__ import annotations

from minicnn.optim.optimizer import Optimizer, cast_to, check_argument


class SGD(Optimizer):
    """``SGD(params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False)``, as PyTorch's."""

    def __init__(self, params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        check_argument(self, "lr", group["lr"], ">= 0")
        check_argument(self, "momentum", group["momentum"], ">= 0")
        check_argument(self, "dampening", group["dampening"], "in [0, 1]")
        check_argument(self, "weight_decay", group["weight_decay"], ">= 0")
        if not isinstance(group["nesterov"], bool):
            raise ValueError(f"SGD: nesterov must be True or False, got {group['nesterov']!r}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"SGD: nesterov=True needs momentum > 0 and dampening = 0, got "
                             f"momentum={group['momentum']!r}, dampening={group['dampening']!r}")

    def _update(self, p, group, state):
        lr, momentum, weight_decay = cast_to(p.data, group["lr"], group["momentum"], group["weight_decay"])
        (keep,) = cast_to(p.data, 1 - group["dampening"])

        g = p.grad
        if weight_decay != 0:
            g = g + weight_decay * p.data  # a new array: p.grad itself is not changed
        if momentum != 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = g.copy()  # b_1 = g
            else:
                b = state["momentum_buffer"]
                b *= momentum
                b += keep * g  # b_t = momentum * b_{t-1} + (1 - dampening) * g
            b = state["momentum_buffer"]
            g = g + momentum * b if group["nesterov"] else b
        p.data -= lr * g
