"""Adam: steps scaled by running estimates of the gradient's first two moments.

For a parameter p with gradient g at step t = 1, 2, ... (the update rule of
torch.optim.Adam, with m_0 = v_0 = 0):

    g     <- g + weight_decay * p                  (L2 penalty added to the gradient,
                                                     as PyTorch's Adam; AdamW decays p instead)
    m_t    = beta1 * m_{t-1} + (1 - beta1) * g      (mean of g)
    v_t    = beta2 * v_{t-1} + (1 - beta2) * g^2    (mean of g^2, elementwise)
    m_hat  = m_t / (1 - beta1^t)                    (bias correction: m and v start at 0,
    v_hat  = v_t / (1 - beta2^t)                     so early averages are too small)
    p     <- p - lr * m_hat / (sqrt(v_hat) + eps)

eps is added to the square root, so it bounds the step where v_hat is ~0.
State per parameter: ``step`` (t), ``exp_avg`` (m), ``exp_avg_sq`` (v).

On a backend with a fused ``adam_update_many`` kernel (Numba, CuPy), the parameters
of a group that share a dtype and a step count are updated by one kernel
launch instead of several array operations per parameter.

Docs: docs/optimizers.md#adam
"""
from __future__ import annotations

from minicnn.backend import get_array_module, kernel
from minicnn.optim.optimizer import Optimizer, cast_to, check_argument


@kernel
def adam_update(param, grad, exp_avg, exp_avg_sq, lr, beta1, one_minus_beta1, beta2, one_minus_beta2,
                eps, correction1, correction2):
    """One Adam step, in place on ``param``, ``exp_avg`` (m) and ``exp_avg_sq`` (v).

    m     <- beta1 * m + (1 - beta1) * g
    v     <- beta2 * v + (1 - beta2) * g^2
    param <- param - lr * (m / correction1) / (sqrt(v / correction2) + eps)

    with ``correction1 = 1 - beta1^t`` and ``correction2 = 1 - beta2^t``; every
    scalar already has ``param``'s dtype.  The arrays share one shape.
    Written with in-place operators only (and the array module's ``sqrt``),
    so this same code runs on the GPU; the Numba backend overrides it with one pass.
    """
    exp_avg *= beta1
    exp_avg += one_minus_beta1 * grad
    exp_avg_sq *= beta2
    exp_avg_sq += one_minus_beta2 * grad * grad
    m_hat = exp_avg / correction1
    v_hat = exp_avg_sq / correction2
    param -= lr * m_hat / (get_array_module(v_hat).sqrt(v_hat) + eps)


@kernel
def adam_update_many(params, grads, exp_avgs, exp_avg_sqs, lr, beta1, one_minus_beta1, beta2, one_minus_beta2,
                     eps, correction1, correction2, weight_decay):
    """:func:`adam_update` for lists of same-dtype tensors, ``weight_decay * param`` added to each gradient.

    The reference for a backend's fused kernel that updates a whole parameter
    group in one launch (:func:`minicnn.backend.cupy_kernels.adam_update_many`).
    """
    for param, grad, exp_avg, exp_avg_sq in zip(params, grads, exp_avgs, exp_avg_sqs):
        if weight_decay != 0:
            grad = grad + weight_decay * param  # a new array: the gradient itself is not changed
        adam_update(param, grad, exp_avg, exp_avg_sq, lr, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
                    correction1, correction2)


class Adam(Optimizer):
    """``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)``, as PyTorch's."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        check_argument(self, "lr", group["lr"], ">= 0")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"Adam: betas must be a pair (beta1, beta2), got {betas!r}")
        check_argument(self, "betas[0]", betas[0], "in [0, 1)")
        check_argument(self, "betas[1]", betas[1], "in [0, 1)")
        check_argument(self, "eps", group["eps"], ">= 0")
        check_argument(self, "weight_decay", group["weight_decay"], ">= 0")

    def _advance(self, p, group, state):
        """Start or advance ``p``'s state to step t; the step's scalars, in p's dtype.

        Returns ``(lr, beta1, 1 - beta1, beta2, 1 - beta2, eps, 1 - beta1^t, 1 - beta2^t, weight_decay)``.
        """
        xp = get_array_module(p.data)
        beta1, beta2 = group["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        # Scalars are worked out in Python floats, then cast to p's dtype.
        return cast_to(p.data, group["lr"], beta1, 1 - beta1, beta2, 1 - beta2, group["eps"],
                       1 - beta1 ** t, 1 - beta2 ** t, group["weight_decay"])

    def _update(self, p, group, state):
        *scalars, weight_decay = self._advance(p, group, state)
        g = p.grad
        if weight_decay != 0:
            g = g + weight_decay * p.data  # a new array: p.grad itself is not changed
        # m, v and p.data in place, by the rule above (adam_update).
        adam_update(p.data, g, state["exp_avg"], state["exp_avg_sq"], *scalars)

    def _update_group(self, params, group):
        states = [self.state.setdefault(p, {}) for p in params]
        if len({s.get("step", 0) for s in states}) > 1 or len({p.dtype for p in params}) > 1:
            return super()._update_group(params, group)  # different bias corrections or dtypes
        scalars = [self._advance(p, group, s) for p, s in zip(params, states)][0]  # one t: equal scalars
        adam_update_many([p.data for p in params], [p.grad for p in params], [s["exp_avg"] for s in states],
                         [s["exp_avg_sq"] for s in states], *scalars)
