"""The training loop: :func:`fit`, and :func:`evaluate` with its block-wise forward.

One training step is the whole story of the package in four lines::

    output = model(x)                     # forward: every layer caches what backward needs
    loss = loss_fn(output, y)             # a scalar where the arrays are (host or GPU)
    model.parameter_backward(loss_fn.backward())  # backward: dL/d(theta) accumulates in p.grad
                                                  # (no dL/dx: the images need no gradient)
    optimizer.step(); optimizer.zero_grad()

:func:`fit` repeats it over the batches of a loader for some epochs, keeps a
:class:`History`, steps a learning-rate scheduler, shows a progress bar,
writes a checkpoint after each epoch when asked, and stops on a non-finite
loss with the weights of the last good epoch put back.

Losses and correct counts stay where the model computed them until they are
read, many batches at once (:class:`_Tally`): on the host every batch (reading
is free there), on a GPU at each progress-bar refresh or else once per epoch,
so a training step never waits for the device to hand a number back.

Docs: docs/training.md
"""
from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from minicnn.backend import device_backend, get_array_module, to_numpy
from minicnn.validate import is_positive_int
from minicnn.nn.grad_mode import no_grad
from minicnn.nn.module import Module

try:
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - tqdm is a declared dependency
    tqdm = None


#: Batches between two readings of the running loss and accuracy on a GPU, when a progress bar shows them.
_REFRESH = 10


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite; the model holds the last good epoch's weights."""

    def __init__(self, message, epoch, batch, history):
        super().__init__(message)
        self.epoch, self.batch, self.history = epoch, batch, history


@dataclass
class History:
    """One record per epoch: train/val loss and accuracy, learning rate, seconds."""

    epochs: list = field(default_factory=list)

    def append(self, record: dict) -> None:
        self.epochs.append(record)

    def __len__(self) -> int:
        return len(self.epochs)

    def __getitem__(self, key):
        """``history["val_accuracy"]`` is that column as a list; ``history[0]`` the first record."""
        if isinstance(key, str):
            return [r.get(key) for r in self.epochs]
        return self.epochs[key]

    def to_dict(self) -> dict:
        keys = list(dict.fromkeys(k for r in self.epochs for k in r))
        return {k: self[k] for k in keys}

    @classmethod
    def from_dict(cls, columns: dict) -> "History":
        n = len(next(iter(columns.values()), []))
        return cls([{k: v[i] for k, v in columns.items()} for i in range(n)])


def _correct_count(output, target):
    """How many rows of ``output`` have their largest score at the target class (an array scalar, not read)."""
    if target.ndim == 2:  # one-hot targets
        target = target.argmax(axis=1)
    return (output.argmax(axis=1) == target).sum()


class _Tally:
    """Per-batch losses and correct counts, kept as arrays of the model's device and read in bulk.

    ``add`` only remembers the batch's two scalars (no transfer); ``read``
    stacks what is pending into one array each and copies those to the host,
    then adds them up in float64, batch by batch: ``loss_sum += loss_b * n_b``,
    ``correct += correct_b``, ``seen += n_b``.
    """

    def __init__(self):
        self.seen, self.correct, self.loss_sum, self.batches_read = 0, 0, 0.0, 0
        self._losses, self._counts, self._sizes = [], [], []

    @property
    def pending(self) -> int:
        return len(self._sizes)

    def add(self, loss, output, target) -> None:
        self._losses.append(loss)
        self._counts.append(_correct_count(output, target))
        self._sizes.append(len(target))

    def read(self) -> np.ndarray:
        """Bring the pending batches to the host and add them in; returns their losses (float64)."""
        if not self._sizes:
            return np.empty(0)
        xp = get_array_module(self._counts[0])
        losses = to_numpy(xp.stack([xp.asarray(v) for v in self._losses])).astype(np.float64)
        counts = to_numpy(xp.stack(self._counts))
        for loss, count, n in zip(losses, counts, self._sizes):
            self.loss_sum += float(loss) * n
            self.correct += int(count)
            self.seen += n
        self.batches_read += len(self._sizes)
        self._losses, self._counts, self._sizes = [], [], []
        return losses


def _check_labels(loader, num_classes: int) -> None:
    """A loader's host labels are class indices below ``num_classes`` (checked once, not per batch)."""
    labels = getattr(loader, "labels", None)
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.size:
        low, high = labels.min(), labels.max()
        if low < 0 or high >= num_classes:
            raise ValueError(f"fit: label {low if low < 0 else high} is out of range; the model's output has "
                             f"{num_classes} classes, so labels must be in [0, {num_classes - 1}]")


#: Samples per block in :func:`forward_in_blocks`.
BLOCK_SIZE = 128


def forward_in_blocks(model: Module, x, block_size: int | None = BLOCK_SIZE):
    """``model(x)`` for inference: under :func:`minicnn.no_grad`, a host batch ``block_size`` samples at a time.

        y = concatenate(model(x[0:B]), model(x[B:2B]), ...)        B = block_size

    The same outputs up to rounding (BLAS may sum a smaller matrix product in
    another order) whenever each output sample depends on its input sample
    alone, which holds for every minicnn layer in eval mode.  A model in
    training mode runs the batch whole (BatchNorm2d normalises by the batch's
    own statistics), and so do GPU arrays (the whole batch keeps the GPU busy,
    and CuPy's memory pool already reuses its arrays); ``block_size=None``
    turns blocking off.  Faster on the host: each layer works on arrays a
    fraction of the size, which the memory allocator hands back from block to
    block, where the whole batch's arrays (hundreds of megabytes for 1000
    MNIST images) are fresh memory that the operating system maps and zeroes.
    """
    if block_size is not None and not is_positive_int(block_size):
        raise ValueError(f"forward_in_blocks: block_size must be a positive int or None, got {block_size!r}")
    with no_grad():
        if (block_size is None or model.training or not isinstance(x, np.ndarray) or x.ndim < 1
                or len(x) <= block_size):
            return model(x)
        return np.concatenate([model(x[i:i + block_size]) for i in range(0, len(x), block_size)])


def evaluate(model: Module, loader, loss_fn=None, return_predictions=False) -> dict:
    """Loss (if ``loss_fn``) and accuracy of ``model`` over ``loader``, batch by batch, in eval mode.

    Runs under :func:`minicnn.no_grad`, each batch by :func:`forward_in_blocks`:
    memory stays bounded by one batch and nothing is kept for a backward pass.  With ``return_predictions`` the dict
    also holds ``predictions`` and ``targets`` (NumPy arrays) and
    ``outputs`` (the model's outputs for every sample, on the host).
    """
    was_training = model.training
    model.eval()
    tally = _Tally()
    preds, targets, outputs = [], [], []
    try:
        with no_grad():
            for x, y in loader:
                out = forward_in_blocks(model, x)
                tally.add(0.0 if loss_fn is None else loss_fn(out, y), out, y)
                if return_predictions:
                    outputs.append(to_numpy(out))
                    preds.append(to_numpy(out.argmax(axis=1)))
                    targets.append(to_numpy(y if y.ndim == 1 else y.argmax(axis=1)))
    finally:
        model.train(was_training)
    tally.read()
    if tally.seen == 0:
        raise ValueError("evaluate: the loader yielded no samples")
    result = {"accuracy": tally.correct / tally.seen, "samples": tally.seen}
    if loss_fn is not None:
        result["loss"] = tally.loss_sum / tally.seen
    if return_predictions:
        result.update(predictions=np.concatenate(preds), targets=np.concatenate(targets),
                      outputs=np.concatenate(outputs))
    return result


def _current_lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _rng_owners(model, loader):
    """Named random generators whose state a checkpoint must carry for an exact resume."""
    owners = {}
    if isinstance(getattr(loader, "generator", None), np.random.Generator):
        owners["loader"] = loader.generator
    for name, m in model.named_modules():
        if isinstance(getattr(m, "generator", None), np.random.Generator):
            owners[f"model.{name}"] = m.generator
    return owners


def fit(model: Module, loss_fn, optimizer, train_loader, epochs: int, *, val_loader=None,
        scheduler=None, scheduler_interval: str = "epoch", progress=None, log=print,
        checkpoint_path=None, resume_from=None, checkpoint_extra=None, plateau_metric=None,
        on_epoch=None) -> History:
    """Train ``model`` for ``epochs`` epochs and return the :class:`History`.

    scheduler           stepped once per epoch (``scheduler_interval="epoch"``) or
                        once per batch (``"batch"``, e.g. OneCycleLR);
                        ReduceLROnPlateau is stepped with the validation loss
                        (the training loss when there is no ``val_loader``),
                        or with the column ``plateau_metric`` names
                        (``"val_accuracy"`` with ``mode="max"``, say).
    progress            a tqdm bar per epoch; ``None`` shows it only when stderr
                        is a terminal, ``False`` never.
    log                 called with one summary line per epoch (``None``: silent).
    checkpoint_path     write model, optimizer, scheduler, history and random
                        states there after every epoch (atomically).
    resume_from         a checkpoint to continue from: training resumes at the
                        epoch after the one it recorded.
    checkpoint_extra    a dict of more entries for every checkpoint (``minicnn train``
                        keeps its settings there); see :func:`minicnn.save_checkpoint`.
    on_epoch            called with each epoch's record (a dict, as in the
                        History) once the epoch is logged and checkpointed; an
                        exception it raises ends the training there (a search
                        stops a hopeless trial so).
    """
    from minicnn.serialization import CheckpointError, load_checkpoint, save_checkpoint

    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"fit: epochs must be a non-negative int, got {epochs!r}")
    if scheduler_interval not in ("epoch", "batch"):
        raise ValueError(f"fit: scheduler_interval must be 'epoch' or 'batch', got {scheduler_interval!r}")
    columns = ("train_loss", "train_accuracy") + (("val_loss", "val_accuracy") if val_loader is not None else ())
    if plateau_metric is not None and plateau_metric not in columns:
        raise ValueError(f"fit: plateau_metric must be one of {', '.join(columns)}"
                         f"{'' if val_loader is not None else ' (no val_loader)'}, got {plateau_metric!r}")
    history, start_epoch = History(), 0
    owners = _rng_owners(model, train_loader)
    if resume_from is not None:
        extra = load_checkpoint(resume_from, model, optimizer, scheduler)
        try:
            history = History.from_dict(extra.get("history", {}))
            start_epoch = int(extra.get("epoch", len(history)))
            for name, state in extra.get("rng_states", {}).items():
                if name in owners:
                    owners[name].bit_generator.state = state
        except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:
            raise CheckpointError(f"{resume_from}: its epoch, history or random-generator states cannot be "
                                  f"resumed from ({type(exc).__name__}: {exc})") from None
    show = progress if progress is not None else sys.stderr.isatty()
    last_good = copy.deepcopy(model.state_dict())

    for epoch in range(start_epoch + 1, epochs + 1):
        model.train()
        lr_at_start = _current_lr(optimizer)
        t0 = time.perf_counter()
        tally, read_every = _Tally(), 1
        bar = None
        if show and tqdm is not None:
            bar = tqdm(total=len(train_loader), desc=f"Epoch {epoch}/{epochs}", unit="batch",
                       leave=False, file=sys.stderr, dynamic_ncols=True)
        for batch, (x, y) in enumerate(train_loader, start=1):
            output = model(x)
            if batch == 1:
                _check_labels(train_loader, output.shape[-1])
                if device_backend(output) is not None:  # reading waits for the GPU: at a refresh, or at the end
                    read_every = _REFRESH if bar is not None else len(train_loader)
            tally.add(loss_fn(output, y), output, y)
            if tally.pending >= read_every or batch == len(train_loader):
                first = tally.batches_read
                losses = tally.read()
                bad = [i for i, v in enumerate(losses) if not math.isfinite(v)]
                if bad:
                    model.load_state_dict(last_good)
                    if bar is not None:
                        bar.close()
                    batch_bad = first + bad[0] + 1
                    raise TrainingDivergedError(
                        f"loss became {float(losses[bad[0]])} at epoch {epoch}, batch {batch_bad}; the model "
                        f"holds the weights from the end of epoch {epoch - 1} (try a lower learning rate)",
                        epoch, batch_bad, history)
                if bar is not None:
                    rate = tally.seen / max(time.perf_counter() - t0, 1e-9)
                    bar.set_postfix(loss=f"{tally.loss_sum / tally.seen:.4f}", acc=f"{tally.correct / tally.seen:.4f}",
                                    img_s=f"{rate:.0f}", refresh=False)
            model.parameter_backward(loss_fn.backward())  # the images need no gradient
            optimizer.step()
            optimizer.zero_grad()
            if scheduler is not None and scheduler_interval == "batch":
                scheduler.step()
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        tally.read()  # a loader whose len() was short leaves batches pending
        if tally.seen == 0:
            raise ValueError("fit: the training loader yielded no samples")
        record = {"epoch": epoch, "train_loss": tally.loss_sum / tally.seen,
                  "train_accuracy": tally.correct / tally.seen, "lr": lr_at_start}
        if val_loader is not None:
            val = evaluate(model, val_loader, loss_fn)
            record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
        record["seconds"] = time.perf_counter() - t0
        history.append(record)
        if scheduler is not None and scheduler_interval == "epoch":
            # The epoch's metric, for ReduceLROnPlateau (plateau_metric, else the validation or training
            # loss); the other schedules ignore it.
            scheduler.step(record[plateau_metric] if plateau_metric else record.get("val_loss", record["train_loss"]))
        last_good = copy.deepcopy(model.state_dict())
        if log is not None:
            line = (f"Epoch [{epoch}/{epochs}] Loss: {record['train_loss']:.4f} "
                    f"Acc: {record['train_accuracy']:.4f}")
            if val_loader is not None:
                line += f" Val loss: {record['val_loss']:.4f} Val acc: {record['val_accuracy']:.4f}"
            line += f" LR: {record['lr']:.2e} Time: {record['seconds']:.1f}s"
            log(line)
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, model, optimizer, scheduler, **(checkpoint_extra or {}), epoch=epoch,
                            history=history.to_dict(),
                            rng_states={k: g.bit_generator.state for k, g in owners.items()})
        if on_epoch is not None:
            on_epoch(record)
    return history
