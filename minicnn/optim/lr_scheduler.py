"""Learning-rate schedules: how each group's ``lr`` changes as training goes on.

A scheduler rewrites ``group["lr"]`` in its optimizer's parameter groups.
The epoch-based ones are functions of the count t of ``step()`` calls
(``last_epoch``) and of base_lr, each group's lr when the scheduler was made:

StepLR(step_size, gamma)
    lr_t = base_lr * gamma ^ floor(t / step_size)

ExponentialLR(gamma)
    lr_t = base_lr * gamma ^ t

CosineAnnealingLR(T_max, eta_min)
    lr_t = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2
    (lr_{T_max} = eta_min; stepping on past T_max, the lr climbs back up.)

OneCycleLR(max_lr, total_steps, pct_start, div_factor, final_div_factor), stepped per batch
    initial_lr = max_lr / div_factor          min_lr = initial_lr / final_div_factor
    T1 = pct_start * total_steps - 1          T2 = total_steps - 1
    lr_t = anneal(initial_lr, max_lr, t / T1)              for t <= T1   (warm up)
           anneal(max_lr, min_lr, (t - T1) / (T2 - T1))    after         (anneal down)
    anneal(a, b, s) = b + (a - b) * (1 + cos(pi * s)) / 2   "cos"
                      a + (b - a) * s                       "linear"

ReduceLROnPlateau(mode, factor, patience, threshold, cooldown, min_lr), stepped with a metric
    better(a, best) = a < best * (1 - threshold)   mode "min", threshold_mode "rel"
                      a < best - threshold         mode "min", threshold_mode "abs"
                      a > best * (1 + threshold)   mode "max", threshold_mode "rel"
                      a > best + threshold         mode "max", threshold_mode "abs"
    on step(metric):
        if better(metric, best): best = metric, bad = 0    else: bad += 1
        if cooling down:          cooldown_left -= 1, bad = 0
        if bad > patience:        lr = max(lr * factor, min_lr)   (unless that changes lr by <= eps)
                                  cooldown_left = cooldown, bad = 0
    so the lr drops after patience + 1 epochs in a row without improvement.

Use, for an epoch-based scheduler (constructed at epoch 0 with lr = base_lr):

    scheduler = StepLR(optimizer, step_size=10, gamma=0.1)
    for epoch in range(epochs):
        train_one_epoch(model, optimizer)     # optimizer.step() per batch
        scheduler.step()                      # t -> t + 1 (OneCycleLR: per batch)

The values are PyTorch's.  PyTorch computes StepLR, ExponentialLR and
CosineAnnealingLR recursively from the current lr, so that several schedulers
can be chained; while one scheduler alone sets the lr, that recursion gives
the closed forms above (to rounding), which is what is computed here.

Docs: docs/optimizers.md#schedulers
"""
from __future__ import annotations

import copy
import math

from minicnn.optim.optimizer import Optimizer, check_argument, check_int
from minicnn.validate import is_real


def _check_optimizer(owner, optimizer) -> Optimizer:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{type(owner).__name__}: expected an Optimizer, got {type(optimizer).__name__}")
    return optimizer


def _check_choice(owner, name: str, value, choices) -> None:
    """``ValueError("OneCycleLR: anneal_strategy must be 'cos' or 'linear', got 'exp'")`` unless in ``choices``."""
    if value not in choices:
        allowed = " or ".join(map(repr, choices))
        raise ValueError(f"{type(owner).__name__}: {name} must be {allowed}, got {value!r}")


class LRScheduler:
    """Base class: sets ``lr = get_lr()`` at epoch 0 and after every :meth:`step`.

    A subclass stores its arguments, then calls ``super().__init__(optimizer)``
    and implements :meth:`get_lr`, the learning rates at ``last_epoch``, and
    :meth:`_check_hyperparameters`, which the constructor and
    :meth:`load_state_dict` share.  ``base_lrs`` are the groups' learning
    rates at epoch 0.
    """

    def __init__(self, optimizer, base_lrs=None):
        self.optimizer = _check_optimizer(self, optimizer)
        if base_lrs is None:
            base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.base_lrs = list(base_lrs)
        self.last_epoch = 0
        self._set_lrs(self.get_lr())

    def get_lr(self) -> list[float]:
        """The learning rate of each group at ``last_epoch``."""
        raise NotImplementedError

    def _check_hyperparameters(self, state: dict) -> None:
        """Raise ``ValueError`` naming the first hyperparameter in ``state`` out of range (as the constructor)."""

    def step(self, metric=None) -> None:
        """Move to the next epoch (batch, for OneCycleLR) and set its learning rates.

        Every scheduler takes ``step(metric)``, so a training loop can step any of
        them the same way; the schedules that follow the step count ignore it,
        :class:`ReduceLROnPlateau` needs it.
        """
        self.last_epoch += 1
        self._set_lrs(self.get_lr())

    def _set_lrs(self, lrs) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The learning rates this scheduler set last, one per group."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Every attribute but the optimizer (which has its own state dict), copied."""
        return copy.deepcopy({key: value for key, value in self.__dict__.items() if key != "optimizer"})

    def load_state_dict(self, state_dict: dict) -> None:
        """Resume from :meth:`state_dict`.

        Raises ``ValueError`` when the state does not fit: another scheduler's
        keys, one learning rate per group of another optimizer, a
        hyperparameter the constructor would refuse; nothing is changed then.
        """
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict):
            got = "None" if state_dict is None else f"an object of type {type(state_dict).__name__}"
            raise TypeError(f"{name}: expected a dict as returned by state_dict(), got {got}")
        expected = {key for key in self.__dict__ if key != "optimizer"}
        missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
        if missing or unexpected:
            raise ValueError(f"{name}: missing keys {missing}, unexpected keys {unexpected}")
        n_groups = len(self.optimizer.param_groups)
        for key in ("base_lrs", "max_lrs", "min_lrs"):  # one value per group; zip would drop the rest
            if key in state_dict and len(state_dict[key]) != n_groups:
                raise ValueError(f"{name}: state has {len(state_dict[key])} {key[:-1]}(s), the optimizer has "
                                 f"{n_groups} parameter group{'s' if n_groups != 1 else ''}")
        check_int(self, "last_epoch", state_dict["last_epoch"], 0)
        self._check_hyperparameters(state_dict)
        self.__dict__.update(copy.deepcopy(state_dict))


class StepLR(LRScheduler):
    """``lr = base_lr * gamma ** (epoch // step_size)``: multiply by gamma every step_size epochs."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size, self.gamma = step_size, gamma
        self._check_hyperparameters(vars(self))
        super().__init__(optimizer)

    def _check_hyperparameters(self, state):
        check_int(self, "step_size", state["step_size"], 1)
        check_argument(self, "gamma", state["gamma"], "> 0")

    def get_lr(self):
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size) for base_lr in self.base_lrs]


class ExponentialLR(LRScheduler):
    """``lr = base_lr * gamma ** epoch``: multiply by gamma every epoch."""

    def __init__(self, optimizer, gamma):
        self.gamma = gamma
        self._check_hyperparameters(vars(self))
        super().__init__(optimizer)

    def _check_hyperparameters(self, state):
        check_argument(self, "gamma", state["gamma"], "> 0")

    def get_lr(self):
        return [base_lr * self.gamma ** self.last_epoch for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Half a cosine from base_lr (epoch 0) down to eta_min (epoch T_max)."""

    def __init__(self, optimizer, T_max, eta_min=0):
        self.T_max, self.eta_min = T_max, eta_min
        self._check_hyperparameters(vars(self))
        super().__init__(optimizer)

    def _check_hyperparameters(self, state):
        check_int(self, "T_max", state["T_max"], 1)
        check_argument(self, "eta_min", state["eta_min"], ">= 0")

    def get_lr(self):
        t = self.last_epoch
        return [self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2
                for base_lr in self.base_lrs]


class OneCycleLR(LRScheduler):
    """The 1cycle policy, stepped once per batch: warm up to ``max_lr``, then anneal far below the start.

    ``total_steps`` is the number of batches of the whole run; stepping past
    it is an error.  ``max_lr`` is one number or one per group.  Momentum is
    left alone: this is PyTorch's OneCycleLR with ``cycle_momentum=False``
    (PyTorch by default also moves SGD's momentum, or Adam's beta1, between
    0.95 and 0.85, against the lr).  With Adam nothing else is needed; its
    betas stay as given.
    """

    def __init__(self, optimizer, max_lr, total_steps, pct_start=0.3, div_factor=25,
                 final_div_factor=1e4, anneal_strategy="cos"):
        _check_optimizer(self, optimizer)
        n_groups = len(optimizer.param_groups)
        max_lrs = list(max_lr) if isinstance(max_lr, (list, tuple)) else [max_lr] * n_groups
        if len(max_lrs) != n_groups:
            raise ValueError(f"OneCycleLR: expected {n_groups} max_lr values (one per group), got {len(max_lrs)}")
        for i, value in enumerate(max_lrs):
            check_argument(self, f"max_lr[{i}]" if isinstance(max_lr, (list, tuple)) else "max_lr", value, "> 0")
        check_int(self, "total_steps", total_steps, 1)
        check_argument(self, "pct_start", pct_start, "in [0, 1]")
        check_argument(self, "div_factor", div_factor, "> 0")
        check_argument(self, "final_div_factor", final_div_factor, "> 0")
        _check_choice(self, "anneal_strategy", anneal_strategy, ("cos", "linear"))
        self.total_steps = total_steps
        self.anneal_strategy = anneal_strategy
        self.warmup_end = pct_start * total_steps - 1  # T1 (a float, as in PyTorch)
        self.max_lrs = max_lrs
        initial_lrs = [m / div_factor for m in max_lrs]
        self.min_lrs = [lr / final_div_factor for lr in initial_lrs]
        super().__init__(optimizer, base_lrs=initial_lrs)

    def _check_hyperparameters(self, state):
        # What the constructor stored, checked as it checked the arguments they come from.
        check_int(self, "total_steps", state["total_steps"], 1)
        _check_choice(self, "anneal_strategy", state["anneal_strategy"], ("cos", "linear"))
        for key in ("max_lrs", "min_lrs"):
            for i, value in enumerate(state[key]):
                check_argument(self, f"{key}[{i}]", value, "> 0")
        if state["last_epoch"] > state["total_steps"]:
            raise ValueError(f"OneCycleLR: last_epoch must be at most total_steps ({state['total_steps']}), "
                             f"got {state['last_epoch']}")

    def step(self, metric=None):
        """Move to the next batch; ``ValueError`` (and no change) past ``total_steps``."""
        if self.last_epoch >= self.total_steps:
            raise ValueError(f"OneCycleLR: cannot step past the end of the cycle: stepped {self.last_epoch} "
                             f"times, and total_steps is {self.total_steps}")
        super().step(metric)

    def _anneal(self, start, end, fraction):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * fraction) + 1)
        return (end - start) * fraction + start

    def get_lr(self):
        t = self.last_epoch
        t1, t2 = self.warmup_end, self.total_steps - 1
        lrs = []
        for initial_lr, max_lr, min_lr in zip(self.base_lrs, self.max_lrs, self.min_lrs):
            if t <= t1:
                lrs.append(self._anneal(initial_lr, max_lr, _fraction(t, t1)))
            else:
                lrs.append(self._anneal(max_lr, min_lr, _fraction(t - t1, t2 - t1)))
        return lrs


def _fraction(done, length):
    """How far through a phase of ``length`` steps; a phase of no length is complete."""
    return done / length if length > 0 else 1.0


class ReduceLROnPlateau(LRScheduler):
    """Divide the lr when a metric stops improving; ``step(metric)`` once per epoch.

    ``mode="min"`` for a loss, ``"max"`` for an accuracy.  ``min_lr`` is one
    number or one per group.  The rule is in the module docstring and is
    PyTorch's, step for step.
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0, eps=1e-8):
        # No super().__init__: there is no get_lr, the lr only changes in step(metric).
        self.optimizer = _check_optimizer(self, optimizer)
        n_groups = len(optimizer.param_groups)
        min_lrs = list(min_lr) if isinstance(min_lr, (list, tuple)) else [min_lr] * n_groups
        if len(min_lrs) != n_groups:
            raise ValueError(f"ReduceLROnPlateau: expected {n_groups} min_lr values (one per group), "
                             f"got {len(min_lrs)}")
        self.mode, self.factor, self.patience = mode, factor, patience
        self.threshold, self.threshold_mode = threshold, threshold_mode
        self.cooldown, self.min_lrs, self.eps = cooldown, min_lrs, eps
        self._check_hyperparameters(vars(self))
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def _check_hyperparameters(self, state):
        _check_choice(self, "mode", state["mode"], ("min", "max"))
        _check_choice(self, "threshold_mode", state["threshold_mode"], ("rel", "abs"))
        check_argument(self, "factor", state["factor"], "in [0, 1)")
        check_int(self, "patience", state["patience"], 0)
        check_argument(self, "threshold", state["threshold"], ">= 0")
        check_int(self, "cooldown", state["cooldown"], 0)
        check_argument(self, "eps", state["eps"], ">= 0")
        for value in state["min_lrs"]:
            check_argument(self, "min_lr", value, ">= 0")

    def _is_better(self, a, best) -> bool:
        """Whether metric ``a`` improves on ``best`` by more than the threshold."""
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def step(self, metric=None) -> None:
        """Record this epoch's ``metric`` (a number, required here) and reduce the lr if it has stalled."""
        if not (is_real(metric) or getattr(metric, "shape", None) == ()):  # a 0-d array, e.g. xp.mean(losses)
            got = f"an array of shape {metric.shape}" if hasattr(metric, "shape") else repr(metric)
            raise TypeError(f"ReduceLROnPlateau.step: the metric must be a number (a scalar such as the "
                            f"epoch's validation loss), got {got}")
        current = float(metric)
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # epochs right after a reduction do not count as bad
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _reduce_lr(self) -> None:
        for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, min_lr)
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr
