"""Classification losses with mean reduction over the batch.

``loss = criterion(output, target)`` returns a Python float and remembers what
``criterion.backward()`` needs to return dL/d(output).

NLLLoss, on log-probabilities z (N, C) and class indices t (N,)
    L = -(1/N) sum_n z[n, t_n]
    dz[n, c] = -(1/N) [c == t_n]

CrossEntropyLoss, on logits x (N, C): LogSoftmax then NLL, fused
    L = -(1/N) sum_n log softmax(x[n])_{t_n}
    dx = (softmax(x) - onehot(t)) / N
    One-hot (or any probability) targets T (N, C), as Keras's categorical
    cross-entropy takes them:
    L = -(1/N) sum_n sum_c T[n, c] log softmax(x[n])_c
    dx = (softmax(x) * sum_c T[n, c] - T) / N

Docs: docs/losses.md
"""
from __future__ import annotations

import numpy as np

from minicnn.backend import get_array_module
from minicnn.nn import functional as F
from minicnn.nn.module import Module


def _check_scores(name, x):
    if not hasattr(x, "ndim") or x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name}: expected a floating-point input of shape (N, C), got "
                         f"{getattr(x, 'dtype', type(x).__name__)} of shape {getattr(x, 'shape', None)}")
    N, C = x.shape
    if N == 0 or C == 0:
        raise ValueError(f"{name}: expected at least one sample and one class, got input of shape {(N, C)} "
                         f"(the mean over an empty batch is undefined)")


def _check_class_indices(name, x, target):
    if not hasattr(target, "ndim"):
        raise ValueError(f"{name}: target must be an array, got {type(target).__name__}")
    N, C = x.shape
    if target.shape != (N,):
        raise ValueError(f"{name}: expected target of shape ({N},) for input of shape {tuple(x.shape)}, "
                         f"got {tuple(target.shape)}")
    if not np.issubdtype(target.dtype, np.integer):
        raise ValueError(f"{name}: class-index targets must have an integer dtype, got {target.dtype}")
    if int(target.min()) < 0 or int(target.max()) >= C:
        bad = int(target.min()) if int(target.min()) < 0 else int(target.max())
        raise ValueError(f"{name}: target value {bad} is out of range; expected class indices in [0, {C - 1}]")


class NLLLoss(Module):
    """Negative log-likelihood of class indices under log-probabilities (N, C)."""

    def forward(self, log_probs, target) -> float:
        _check_scores("NLLLoss", log_probs)
        _check_class_indices("NLLLoss", log_probs, target)
        xp = get_array_module(log_probs)
        N = log_probs.shape[0]
        rows = xp.arange(N)
        # A copy: a caller reusing its target array must not change what backward returns.
        self.save_for_backward(log_probs.shape, log_probs.dtype, rows, target.copy())
        return float(-log_probs[rows, target].sum() / N)                    # L = -(1/N) sum_n z[n, t_n]

    def backward(self, grad_output=1.0):
        shape, dtype, rows, target = self.saved_tensors()
        xp = get_array_module(rows)
        grad = xp.zeros(shape, dtype=dtype)
        grad[rows, target] = -grad_output / shape[0]                        # dz[n, t_n] = -1/N
        return grad


class CrossEntropyLoss(Module):
    """Softmax cross-entropy on logits, with class-index (N,) or one-hot (N, C) targets."""

    def forward(self, logits, target) -> float:
        _check_scores("CrossEntropyLoss", logits)
        xp = get_array_module(logits)
        N, C = logits.shape
        log_probs = F.log_softmax(logits, 1)
        if hasattr(target, "ndim") and target.ndim == 2:
            if target.shape != logits.shape:
                raise ValueError(f"CrossEntropyLoss: one-hot target shape {tuple(target.shape)} does not "
                                 f"match the input shape {tuple(logits.shape)}")
            if not np.issubdtype(target.dtype, np.floating) and not np.issubdtype(target.dtype, np.integer):
                raise ValueError(f"CrossEntropyLoss: one-hot targets must be numeric, got {target.dtype}")
            if bool((target < 0).any()):
                raise ValueError("CrossEntropyLoss: one-hot (probability) targets must be non-negative")
            t = target.astype(logits.dtype)
            self.save_for_backward(log_probs, t)
            return float(-(t * log_probs).sum() / N)
        _check_class_indices("CrossEntropyLoss", logits, target)
        t = xp.zeros_like(logits)
        t[xp.arange(N), target] = 1
        self.save_for_backward(log_probs, t)
        return float(-log_probs[xp.arange(N), target].sum() / N)

    def backward(self, grad_output=1.0):
        log_probs, t = self.saved_tensors()
        xp = get_array_module(log_probs)
        N = log_probs.shape[0]
        probs = xp.exp(log_probs)
        grad = probs * t.sum(axis=1, keepdims=True) - t                    # dx = (softmax(x) * sum_c T - T) / N
        return grad * log_probs.dtype.type(grad_output / N)
