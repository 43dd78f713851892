"""The training loop: :func:`fit`, and :func:`evaluate` with its block-wise forward.

One training step is the whole story of the package in four lines::

    output = model(x)                     # forward: every layer caches what backward needs
    loss = loss_fn(output, y)             # a Python float
    model.backward(loss_fn.backward())    # backward: dL/d(theta) accumulates in p.grad
    optimizer.step(); optimizer.zero_grad()

:func:`fit` repeats it over the batches of a loader for some epochs, keeps a
:class:`History`, steps a learning-rate scheduler, shows a progress bar,
writes a checkpoint after each epoch when asked, and stops on a non-finite
loss with the weights of the last good epoch put back.

Docs: docs/data.md#the-training-loop
"""
from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from minicnn.backend import to_numpy
from minicnn.validate import is_positive_int
from minicnn.nn.grad_mode import no_grad
from minicnn.nn.module import Module

try:
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - tqdm is a declared dependency
    tqdm = None


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


def _accuracy_count(output, target) -> int:
    if target.ndim == 2:  # one-hot targets
        target = target.argmax(axis=1)
    return int((output.argmax(axis=1) == target).sum())


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
    total, correct, loss_sum = 0, 0, 0.0
    preds, targets, outputs = [], [], []
    try:
        with no_grad():
            for x, y in loader:
                out = forward_in_blocks(model, x)
                n = len(y)
                if loss_fn is not None:
                    loss_sum += loss_fn(out, y) * n
                correct += _accuracy_count(out, y)
                total += n
                if return_predictions:
                    outputs.append(to_numpy(out))
                    preds.append(to_numpy(out.argmax(axis=1)))
                    targets.append(to_numpy(y if y.ndim == 1 else y.argmax(axis=1)))
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("evaluate: the loader yielded no samples")
    result = {"accuracy": correct / total, "samples": total}
    if loss_fn is not None:
        result["loss"] = loss_sum / total
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
        checkpoint_path=None, resume_from=None, checkpoint_extra=None) -> History:
    """Train ``model`` for ``epochs`` epochs and return the :class:`History`.

    scheduler           stepped once per epoch (``scheduler_interval="epoch"``) or
                        once per batch (``"batch"``, e.g. OneCycleLR);
                        ReduceLROnPlateau is stepped with the validation loss
                        (the training loss when there is no ``val_loader``).
    progress            a tqdm bar per epoch; ``None`` shows it only when stderr
                        is a terminal, ``False`` never.
    log                 called with one summary line per epoch (``None``: silent).
    checkpoint_path     write model, optimizer, scheduler, history and random
                        states there after every epoch (atomically).
    resume_from         a checkpoint to continue from: training resumes at the
                        epoch after the one it recorded.
    checkpoint_extra    a dict of more entries for every checkpoint (``minicnn train``
                        keeps its settings there); see :func:`minicnn.save_checkpoint`.
    """
    from minicnn.serialization import CheckpointError, load_checkpoint, save_checkpoint

    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"fit: epochs must be a non-negative int, got {epochs!r}")
    if scheduler_interval not in ("epoch", "batch"):
        raise ValueError(f"fit: scheduler_interval must be 'epoch' or 'batch', got {scheduler_interval!r}")
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
        seen, correct, loss_sum = 0, 0, 0.0
        bar = None
        if show and tqdm is not None:
            bar = tqdm(total=len(train_loader), desc=f"Epoch {epoch}/{epochs}", unit="batch",
                       leave=False, file=sys.stderr, dynamic_ncols=True)
        for batch, (x, y) in enumerate(train_loader, start=1):
            output = model(x)
            loss = loss_fn(output, y)
            if not math.isfinite(loss):
                model.load_state_dict(last_good)
                if bar is not None:
                    bar.close()
                raise TrainingDivergedError(
                    f"loss became {loss} at epoch {epoch}, batch {batch}; the model holds the weights "
                    f"from the end of epoch {epoch - 1} (try a lower learning rate)",
                    epoch, batch, history)
            model.backward(loss_fn.backward())
            optimizer.step()
            optimizer.zero_grad()
            if scheduler is not None and scheduler_interval == "batch":
                scheduler.step()
            n = len(y)
            seen += n
            loss_sum += loss * n
            correct += _accuracy_count(output, y)
            if bar is not None:
                bar.update(1)
                if batch % 10 == 0 or batch == len(train_loader):
                    rate = seen / max(time.perf_counter() - t0, 1e-9)
                    bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}",
                                    img_s=f"{rate:.0f}", refresh=False)
        if bar is not None:
            bar.close()
        if seen == 0:
            raise ValueError("fit: the training loader yielded no samples")
        record = {"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                  "lr": lr_at_start}
        if val_loader is not None:
            val = evaluate(model, val_loader, loss_fn)
            record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
        record["seconds"] = time.perf_counter() - t0
        history.append(record)
        if scheduler is not None and scheduler_interval == "epoch":
            # The epoch's loss, for ReduceLROnPlateau; the other schedules ignore it.
            scheduler.step(record.get("val_loss", record["train_loss"]))
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
    return history
