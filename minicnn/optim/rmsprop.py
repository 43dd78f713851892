"""RMSprop: steps divided by a running root-mean-square of the gradient.

For a parameter p with gradient g (the update rule of torch.optim.RMSprop with
centered=False, starting from v_0 = 0 and b_0 = 0):

    g    <- g + weight_decay * p                  (L2 penalty; when weight_decay != 0)
    v_t   = alpha * v_{t-1} + (1 - alpha) * g^2   (mean of g^2, elementwise)
    d     = g / (sqrt(v_t) + eps)                 (gradient scaled per element)
    b_t   = momentum * b_{t-1} + d                (when momentum > 0)
    p    <- p - lr * b_t     if momentum > 0
            p - lr * d       otherwise

Unlike Adam there is no bias correction: v starts at 0, so the first steps
are larger than later ones.  State per parameter: ``square_avg`` (v) and,
with momentum, ``momentum_buffer`` (b).

Docs: docs/optimizers.md#rmsprop
"""
from __future__ import annotations

from minicnn.backend import get_array_module
from minicnn.optim.optimizer import Optimizer, cast_to, check_argument


class RMSprop(Optimizer):
    """``RMSprop(params, lr=1e-3, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0)``.

    The rule is PyTorch's; PyTorch's default ``lr`` is 1e-2, this one is 1e-3.
    """

    def __init__(self, params, lr=1e-3, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        check_argument(self, "lr", group["lr"], ">= 0")
        check_argument(self, "alpha", group["alpha"], "in [0, 1)")
        check_argument(self, "eps", group["eps"], ">= 0")
        check_argument(self, "weight_decay", group["weight_decay"], ">= 0")
        check_argument(self, "momentum", group["momentum"], ">= 0")

    def _update(self, p, group, state):
        xp = get_array_module(p.data)
        if "square_avg" not in state:
            state["square_avg"] = xp.zeros_like(p.data)
        if group["momentum"] > 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = xp.zeros_like(p.data)
        lr, eps, weight_decay, momentum = cast_to(
            p.data, group["lr"], group["eps"], group["weight_decay"], group["momentum"])
        alpha, one_minus_alpha = cast_to(p.data, group["alpha"], 1 - group["alpha"])

        g = p.grad
        if weight_decay != 0:
            g = g + weight_decay * p.data  # a new array: p.grad itself is not changed
        v = state["square_avg"]
        v *= alpha
        v += one_minus_alpha * g * g
        d = g / (xp.sqrt(v) + eps)
        if momentum > 0:
            b = state["momentum_buffer"]
            b *= momentum
            b += d
            p.data -= lr * b
        else:
            p.data -= lr * d
