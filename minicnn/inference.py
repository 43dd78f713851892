"""Running a trained model on images: the digits it reads and how sure it is.

    p     = softmax(model(x))          (N, K) probabilities; exp(log-probabilities) is the same thing
    digit = argmax_k p[n, k]           confidence = p[n, digit]

Photos become network inputs in :mod:`minicnn.imaging`; this module runs the
model over them, in eval mode under :func:`minicnn.no_grad`.
"""
from __future__ import annotations

import numpy as np

import os
from pathlib import Path

from minicnn import models
from minicnn.backend import get_backend, to_numpy
from minicnn.imaging import as_network_input
from minicnn.validate import is_positive_int
from minicnn.serialization import CheckpointError, load, stored_names
from minicnn.training import forward_in_blocks

__all__ = ["predict"]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)   # exp never overflows; the result is unchanged
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict(model, images, batch_size: int = 256, return_all_probs: bool = False):
    """The digits ``model`` reads in ``images`` and how sure it is.

    ``images``: anything :func:`as_network_input` takes. Runs in eval mode
    (restoring the model's mode afterwards) under :func:`minicnn.no_grad`,
    ``batch_size`` images at a time, on the current backend. Returns ``(digits, confidence)``: int64 (N,) and
    the probability of each chosen digit, float (N,); with
    ``return_all_probs=True`` also the (N, K) probability matrix.

    minicnn's models end in LogSoftmax, so ``p = exp(output)``. This computes
    ``softmax(output)`` instead, which is the same thing for log-probabilities
    (their exponentials already sum to 1) and also right for raw logits.
    """
    if not is_positive_int(batch_size):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    x = as_network_input(images)
    if len(x) == 0:
        raise ValueError("predict: there are no images to read")
    first = next(model.parameters(), None)
    dtype = first.dtype if first is not None else np.float32
    backend = get_backend()
    was_training = model.training
    model.eval()
    try:
        outputs = [to_numpy(forward_in_blocks(model, backend.asarray(x[i:i + batch_size], dtype=dtype)))
                   for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    probs = _softmax(np.concatenate(outputs).astype(np.float64))
    digits = probs.argmax(axis=1).astype(np.int64)
    confidence = probs[np.arange(len(digits)), digits]
    return (digits, confidence, probs) if return_all_probs else (digits, confidence)


def model_for_weights(weights, name: str | None = None):
    """A model of the named kind, or of the kind whose keys the weights file holds, with finite weights."""
    weights = Path(weights)
    if weights.is_dir():
        raise CheckpointError(f"{weights} is a folder; expected a weights file such as "
                              f"{os.path.join(weights, 'model.npz')}")
    if name is None:
        keys = stored_names(weights)
        name = ("MnistDeepCNN" if any(k.startswith(("conv4.", "model/conv4.")) for k in keys) else
                "MnistBNCNN" if any(k.startswith(("bn1.", "model/bn1.")) for k in keys) else "MnistCNN")
    model = load(models.get_model(name, seed=0), weights)
    broken = [k for k, v in model.state_dict().items() if not np.all(np.isfinite(to_numpy(v)))]
    if broken:
        raise CheckpointError(f"{weights}: NaN or infinite values in {', '.join(broken)}; every "
                              f"prediction would be meaningless (did the training diverge?)")
    return model
