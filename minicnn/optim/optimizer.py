"""``Optimizer``: what every update rule (SGD, Adam, RMSprop) shares.

An optimizer holds a model's parameters in *parameter groups*: lists of
parameters that share hyperparameters such as the learning rate ``lr``.  One
call of :meth:`Optimizer.step` moves each parameter against its gradient:

    for every group, for every parameter p of it whose p.grad is not None:
        p.data <- p.data - (a step made from p.grad, the group's
                            hyperparameters and p's state)

A parameter's *state* is what its rule remembers from one step to the next:
a momentum buffer, Adam's moment estimates, a step count t.  Parameters with
``grad is None`` took no part in the loss and are left alone.

One training step:

    optimizer.zero_grad()                   # p.grad = None everywhere
    loss = criterion(model(x), y)           # forward
    model.backward(criterion.backward())    # backward fills every p.grad
    optimizer.step()                        # p.data changes in place

Updates happen in place on ``p.data``, so arrays stay on their device and the
model keeps pointing at them; every constant is cast to ``p.data``'s dtype
first, so float32 parameters stay float32.

State dict (the layout of PyTorch's)
    {"state":        {i: {"step": t, "exp_avg": array, ...}, ...},
     "param_groups": [{"lr": ..., <other hyperparameters>, "params": [i, ...]}, ...]}
Parameters are numbered 0, 1, 2, ... through the groups in order, so the
state dict of one optimizer loads into a new one built over the same
parameters.  Arrays are copies: saving and training on leaves the saved state
as it was.

Docs: docs/optimizers.md#optimizer
"""
from __future__ import annotations

from collections.abc import Iterable

from minicnn.backend import get_array_module, to_numpy
from minicnn.nn.module import Module
from minicnn.nn.parameter import Parameter
from minicnn.validate import is_finite_real, is_int, satisfies


def check_argument(owner, name: str, value, rule: str) -> None:
    """``ValueError("SGD: momentum must be a number >= 0, got -0.5")`` unless ``value`` obeys ``rule``."""
    if not (is_finite_real(value) and satisfies(value, rule)):
        raise ValueError(f"{type(owner).__name__}: {name} must be a number {rule}, got {value!r}")


def check_int(owner, name: str, value, minimum: int) -> None:
    """``ValueError("StepLR: step_size must be an int >= 1, got 0")`` unless ``value`` is such an int."""
    if not is_int(value, minimum):
        raise ValueError(f"{type(owner).__name__}: {name} must be an int >= {minimum}, got {value!r}")


def _as_list(owner, params, what: str) -> list:
    """``list(params)``; ``TypeError`` naming ``what`` when ``params`` is a Module or not iterable."""
    name = type(owner).__name__
    if isinstance(params, Module):
        raise TypeError(f"{name}: {what} must be an iterable of Parameters, got a {type(params).__name__} "
                        f"(a Module); pass model.parameters()")
    if not isinstance(params, Iterable):
        got = "None" if params is None else f"an object of type {type(params).__name__}"
        raise TypeError(f"{name}: {what} must be an iterable of Parameters, e.g. model.parameters(); got {got}")
    return list(params)


def _library(x) -> str:
    """The package an array type comes from: 'numpy', 'cupy' ('builtins' for a list)."""
    return type(x).__module__.split(".")[0]


def _kind(x) -> str:
    """``numpy.ndarray``, ``cupy.ndarray``, ``list``: what ``x`` is, for error messages."""
    library = _library(x)
    return type(x).__name__ if library == "builtins" else f"{library}.{type(x).__name__}"


def cast_to(like, *values):
    """``values`` as scalars of ``like``'s dtype: float32 arithmetic stays float32."""
    scalar = like.dtype.type
    return [scalar(v) for v in values]


class Optimizer:
    """Base class: parameter groups, ``zero_grad``, ``step`` and state dicts.

    ``params`` is an iterable of :class:`~minicnn.nn.Parameter` (a generator
    such as ``model.parameters()`` is fine) or of dicts, each a group
    ``{"params": [...], "lr": ...}`` whose missing hyperparameters are taken
    from ``defaults``.  A subclass implements :meth:`_check_hyperparameters`
    and :meth:`_update`, the rule for one parameter.
    """

    def __init__(self, params, defaults: dict):
        if isinstance(params, (Parameter, dict)):
            raise TypeError(
                f"{type(self).__name__}: params must be an iterable of Parameters or of parameter "
                f"groups (dicts), e.g. model.parameters(); got a single {type(params).__name__}")
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self.state: dict[Parameter, dict] = {}
        groups = _as_list(self, params, "params")
        if not groups:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict) -> None:
        """Append a group; hyperparameters it does not name come from ``defaults``."""
        name = type(self).__name__
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{name}: a parameter group is a dict with a 'params' entry, got {group!r}")
        params = group["params"]
        where = f"the 'params' of parameter group {len(self.param_groups)}"
        params = [params] if isinstance(params, Parameter) else _as_list(self, params, where)
        if not params:
            raise ValueError(f"{name}: parameter group {len(self.param_groups)} has no parameters")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"{name}: expected Parameters, got a {type(p).__name__}")
            if id(p) in seen:
                raise ValueError(f"{name}: {p!r} appears more than once; each parameter may be in one group only")
            seen.add(id(p))
        group = {**self.defaults, **group, "params": params}
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group: dict) -> None:
        unknown = sorted(set(group) - set(self.defaults) - {"params"})
        if unknown:
            raise ValueError(
                f"{type(self).__name__}: unknown hyperparameter(s) {', '.join(map(repr, unknown))}; "
                f"the hyperparameters are {', '.join(self.defaults)}")
        self._check_hyperparameters(group)

    def _check_hyperparameters(self, group: dict) -> None:
        """Raise ``ValueError`` naming the first hyperparameter of ``group`` out of range."""
        raise NotImplementedError

    def _update(self, p: Parameter, group: dict, state: dict) -> None:
        """Change ``p.data`` in place from ``p.grad``; ``state`` is ``p``'s own (empty at first)."""
        raise NotImplementedError

    # --- the two calls of a training step ------------------------------
    def zero_grad(self) -> None:
        """Forget every gradient (``p.grad = None``, as PyTorch's default)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient.

        Each gradient must be an array like its parameter (the same kind of
        array, NumPy or CuPy, shape and dtype), as backward writes it; when one
        is not, the error names the parameter by its index in
        :meth:`state_dict` and no parameter is changed.
        """
        for index, p in enumerate(self._params()):
            if p.grad is not None:
                self._check_grad(index, p)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                self._update(p, group, self.state.setdefault(p, {}))

    def _check_grad(self, index: int, p: Parameter) -> None:
        """Raise unless ``p.grad`` is an array of ``p``'s kind, shape and dtype.

        A gradient of the wrong shape would be broadcast, or read past its end
        by a compiled kernel; one of another dtype would leak into the state
        (a float64 momentum buffer for a float32 parameter).
        """
        name, g = type(self).__name__, p.grad
        if _library(g) != _library(p.data) or not hasattr(g, "dtype"):
            raise TypeError(f"{name}: parameter {index} is a {_kind(p.data)} but its gradient is a {_kind(g)}")
        if g.shape != p.data.shape:
            raise ValueError(f"{name}: parameter {index} has shape {tuple(p.shape)} but its gradient has shape "
                             f"{tuple(g.shape)}")
        if g.dtype != p.data.dtype:
            raise TypeError(f"{name}: parameter {index} has dtype {p.dtype} but its gradient has dtype {g.dtype}")

    # --- state ---------------------------------------------------------
    def _params(self) -> list[Parameter]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict:
        """``{"state": {index: {...}}, "param_groups": [...]}``, arrays copied (see the module docstring)."""
        state = {}
        for index, p in enumerate(self._params()):
            if self.state.get(p):
                state[index] = {key: value.copy() if hasattr(value, "shape") else value
                                for key, value in self.state[p].items()}
        groups, index = [], 0
        for group in self.param_groups:
            saved = {key: value for key, value in group.items() if key != "params"}
            saved["params"] = list(range(index, index + len(group["params"])))
            index += len(group["params"])
            groups.append(saved)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Resume from :meth:`state_dict`: hyperparameters per group and each parameter's state.

        Arrays are copied in the dtype and onto the device of the parameter
        they belong to.  Raises ``ValueError`` naming what does not fit (the
        number of groups, of parameters in a group, a shape, a
        hyperparameter); nothing is changed then.
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"{name}.load_state_dict: expected a dict with keys 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the state dict has {len(saved_groups)} parameter "
                             f"group(s), this optimizer has {len(self.param_groups)}")
        index_to_param = {}
        new_groups = []
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: parameter group {i} has {len(saved['params'])} "
                                 f"parameter(s) in the state dict, {len(group['params'])} here")
            index_to_param.update(zip(map(int, saved["params"]), group["params"]))
            new_group = {**group, **saved, "params": group["params"]}
            self._check_group(new_group)
            new_groups.append(new_group)

        new_state = {}
        for key, saved in state_dict["state"].items():
            index = int(key)  # a checkpoint stored as JSON brings the indices back as strings
            if index not in index_to_param:
                raise ValueError(f"{name}.load_state_dict: state for parameter {index}, which no "
                                 f"parameter group lists")
            p = index_to_param[index]
            xp = get_array_module(p.data)
            new_state[p] = {}
            for key, value in saved.items():
                if not hasattr(value, "shape"):
                    new_state[p][key] = value  # a step count
                    continue
                if tuple(value.shape) != tuple(p.shape):
                    raise ValueError(f"{name}.load_state_dict: parameter {index}: {key!r} has shape "
                                     f"{tuple(value.shape)}, the parameter has shape {tuple(p.shape)}")
                # xp.array copies, so this optimizer never shares a buffer with the state dict.
                new_state[p][key] = xp.array(to_numpy(value), dtype=p.data.dtype)

        self.param_groups = new_groups
        self.state = new_state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {value}" for key, value in group.items() if key != "params"]
        return "\n".join(lines + [")"])
