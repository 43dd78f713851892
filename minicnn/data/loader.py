"""Mini-batches: shuffle, slice, move to the device, transform.

One pass over a :class:`DataLoader` is one epoch::

    order = generator.permutation(N)          (or 0, 1, ..., N-1 without shuffle)
    for each run of batch_size indices idx in order:
        x = images[idx]  (uint8)          ->  on the device, as uint8
        x = transform(x, generator)       ->  float (B, 1, 28, 28) on the device
        y = labels[idx]                   ->  int64 (B,) on the device

On the host each batch is sliced from the arrays as they are.  On a GPU the
whole set is copied to the device once, as uint8 (MNIST's 60,000 training
images are 47 MB) with int64 labels, and kept there while the loader lives;
each epoch copies up only its order and, for a transform with ``draw`` and
``apply`` (:class:`~minicnn.data.transforms.MnistTransform`), the random
augmentation matrices of all its batches, drawn at the start of the epoch.
Every batch is then sliced, converted and augmented on the device, with no
copy between host and device.  All randomness (the order, and the
augmentation) comes from the one seeded ``generator``, in the same order on
every device, so a seed fixes a whole training run.

Docs: docs/data.md#dataloader
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from minicnn.backend import Backend, get_backend
from minicnn.data.transforms import to_float

__all__ = ["DataLoader", "train_val_split"]


class DataLoader:
    """Iterate over ``(x, y)`` mini-batches of a labelled image set.

    ``images``: (N, H, W) or (N, C, H, W), usually uint8; ``labels``: (N,)
    class indices (integers, or floats that are whole numbers); both arrays.
    ``shuffle``: a new random order each epoch, drawn from ``generator`` (a
    ``numpy.random.Generator``, required then); ``transform(x, generator)``
    maps a uint8 batch on the device to the float network input (default:
    :func:`~minicnn.data.transforms.to_float`, pixels scaled to [0, 1]);
    ``drop_last`` skips a final batch smaller than ``batch_size``;
    ``device``: the :class:`~minicnn.backend.Backend` whose device receives
    the batches, by default the one active when iteration starts.
    """

    def __init__(self, images, labels, batch_size: int = 64, shuffle: bool = False,
                 generator: np.random.Generator | None = None,
                 transform: Callable | None = None, drop_last: bool = False,
                 device: Backend | None = None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if generator is not None and not isinstance(generator, np.random.Generator):
            raise TypeError(f"generator must be a numpy.random.Generator (np.random.default_rng(seed)), "
                            f"got {type(generator).__name__}")
        if shuffle and generator is None:
            raise ValueError("shuffle=True needs a generator, e.g. generator=np.random.default_rng(0), "
                             "so that the order is reproducible")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable as transform(x, generator), got {transform!r}")
        if device is not None and not isinstance(device, Backend):
            raise TypeError(f"device must be a minicnn Backend (from set_backend/get_backend) or None, "
                            f"got {device!r}")
        _check_pair(images, labels)
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), shuffle, drop_last
        self.generator, self.transform, self.device = generator, transform, device
        self._resident = None  # (backend, images, labels, their device copies), once copied

    @property
    def num_samples(self) -> int:
        """Images in the dataset (all of them, including any dropped last batch)."""
        return len(self.images)

    def __len__(self) -> int:
        """Batches per epoch."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self):
        backend = self.device or get_backend()
        n = self.num_samples
        order = self.generator.permutation(n) if self.shuffle else np.arange(n)
        bounds = [(b * self.batch_size, min((b + 1) * self.batch_size, n)) for b in range(len(self))]
        transform, matrices = self.transform, None
        if hasattr(transform, "draw") and hasattr(transform, "apply"):
            # The epoch's random draws up front, batch by batch: the numbers per-batch calls would draw.
            drawn = [transform.draw(self.generator, stop - start, *self.images.shape[-2:]) for start, stop in bounds]
            matrices = None if not drawn or drawn[0] is None else np.concatenate(drawn)
        if backend.device == "cpu":
            images, labels = self.images, self.labels
        else:  # everything on the device: the set (once), this epoch's order and matrices (one copy each)
            images, labels = self._on_device(backend)
            order = backend.asarray(order)
            matrices = None if matrices is None else backend.asarray(matrices)
        for start, stop in bounds:
            idx = order[start:stop]
            x = backend.asarray(images[idx])
            y = backend.asarray(labels[idx], dtype=np.int64)
            if transform is None:
                x = to_float(x)
            elif hasattr(transform, "apply"):
                x = transform.apply(x, None if matrices is None else matrices[start:stop])
            else:
                x = transform(x, self.generator)
            yield x, y

    def _on_device(self, backend: Backend):
        """The images (as they are) and labels (int64) on ``backend``'s device, copied there once."""
        cached = self._resident
        if cached is None or cached[0] is not backend or cached[1] is not self.images or cached[2] is not self.labels:
            cached = (backend, self.images, self.labels, backend.asarray(self.images),
                      backend.asarray(self.labels, dtype=np.int64))
            self._resident = cached
        return cached[3], cached[4]

    def __repr__(self) -> str:
        return (f"DataLoader(num_samples={self.num_samples}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, transform={self.transform!r})")


def train_val_split(images, labels, val_fraction: float, seed):
    """Split a labelled set at random into a training and a validation part.

    ``round(val_fraction * N)`` samples, chosen by ``seed`` (an int or a
    ``numpy.random.Generator``), go to validation; the rest to training.
    Each part keeps the original order. Returns
    ``(train_images, train_labels), (val_images, val_labels)``.
    """
    _check_pair(images, labels)
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(images)
    n_val = round(val_fraction * n)
    order = np.random.default_rng(seed).permutation(n)
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return (images[train], labels[train]), (images[val], labels[val])


def _check_pair(images, labels) -> None:
    for name, value, convert in (("images", images, "np.asarray(images, dtype=np.uint8)"),
                                 ("labels", labels, "np.asarray(labels)")):
        if not hasattr(value, "shape"):
            raise TypeError(f"{name} must be an array (NumPy or CuPy), got {type(value).__name__}; "
                            f"convert it first, e.g. {convert}")
    if np.ndim(images) not in (3, 4):
        raise ValueError(f"expected images of shape (N, H, W) or (N, C, H, W), found {np.shape(images)}")
    if np.ndim(labels) != 1:
        raise ValueError(f"expected labels of shape (N,), found {np.shape(labels)}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels; expected one label per image")
    if labels.dtype.kind == "f":
        fractional = ~np.isfinite(labels) | (labels != np.round(labels))
        if fractional.any():
            raise ValueError(f"labels must be whole numbers (class indices), found {labels[fractional][0]}")
    elif labels.dtype.kind not in "iub":
        raise TypeError(f"labels must be integer class indices, found dtype {labels.dtype}")
