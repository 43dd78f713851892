"""Adam on a parameter group whose tensors are at different steps.

A parameter with no gradient at a step is skipped (its step count t stays), so one group can
hold tensors at different t; each must get the bias corrections 1 - beta^t of its *own* t.
Adam sends such a group past the one-kernel update (``adam_update_many``, fused on Numba),
which uses one t for all.  Expected values: the update rule in the test (float64 NumPy, for
each tensor alone), an optimizer per parameter, and torch.optim.Adam where PyTorch is installed.
"""
import numpy as np
import pytest

import minicnn
from minicnn.nn import Parameter
from minicnn.optim import Adam
from strategies import using

HYPER = dict(lr=0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.0)  # no decay: Numba's fused kernel runs
TOLERANCE = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}

# Gradients per step for three tensors; None: no gradient at that step (the tensor is skipped).
# "b" misses step 1 (one step behind from then on), "c" misses steps 1-3 (joins late) and step 5.
SHAPES = {"a": (3, 2), "b": (4,), "c": (2, 2)}
SCHEDULE = {"a": [1, 1, 1, 1, 1, 1], "b": [0, 1, 1, 1, 1, 1], "c": [0, 0, 0, 1, 0, 1]}
STEPS = 6


def _gradients(seed=7):
    rng = np.random.default_rng(seed)
    return {name: [rng.standard_normal(shape) if SCHEDULE[name][t] else None for t in range(STEPS)]
            for name, shape in SHAPES.items()}


def _initial(seed=3):
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape) for name, shape in SHAPES.items()}


def adam_by_hand(w, grads, lr, betas, eps, weight_decay):
    """One tensor alone, by the formulas of minicnn/optim/adam.py (PyTorch's); a None gradient: no step."""
    (beta1, beta2), w = betas, np.array(w, dtype=np.float64)
    m, v, t = np.zeros_like(w), np.zeros_like(w), 0
    for g in grads:
        if g is None:
            continue
        t += 1
        d = g + weight_decay * w
        m = beta1 * m + (1 - beta1) * d
        v = beta2 * v + (1 - beta2) * d * d
        w = w - lr * (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps)
    return w, t


def _run_group(order, dtype, grads, init, **hyper):
    """One Adam over one group holding the tensors in ``order``; returns {name: Parameter} and the optimizer."""
    params = {name: Parameter(init[name].astype(dtype)) for name in order}
    opt = Adam([params[name] for name in order], **{**HYPER, **hyper})
    for t in range(STEPS):
        for name in order:
            g = grads[name][t]
            params[name].grad = None if g is None else g.astype(dtype)
        opt.step()
    return params, opt


@pytest.fixture(params=["numpy", "numba"])
def cpu_backend(request):
    if request.param not in minicnn.available_backends():
        pytest.skip(f"the {request.param} backend does not load here")
    with using(request.param):
        yield minicnn.get_backend()


@pytest.fixture
def fused_calls(monkeypatch):
    """The number of calls of the Numba backend's one-kernel group update, counted (when Numba loads)."""
    calls = []
    try:
        from minicnn.backend import numba_kernels
    except ImportError:
        return calls
    kernel = numba_kernels._adam_update_many

    def counting(*args):
        calls.append(len(args[0]))
        return kernel(*args)
    monkeypatch.setattr(numba_kernels, "_adam_update_many", counting)
    return calls


@pytest.mark.parametrize("weight_decay", [0.0, 0.01], ids=["no-decay", "decay"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("order", ["abc", "cba", "bac"], ids=["ahead-first", "late-first", "behind-first"])
def test_each_tensor_of_a_group_gets_the_bias_correction_of_its_own_step(cpu_backend, fused_calls, order, dtype,
                                                                         weight_decay):
    grads, init = _gradients(), _initial()
    params, opt = _run_group(order, dtype, grads, init, weight_decay=weight_decay)
    for name in order:
        want, steps = adam_by_hand(init[name].astype(dtype), grads[name], **{**HYPER, "weight_decay": weight_decay})
        assert opt.state[params[name]]["step"] == steps == sum(SCHEDULE[name])
        assert params[name].data.dtype == dtype
        np.testing.assert_allclose(params[name].data, want, **TOLERANCE[dtype],
                                   err_msg=f"tensor {name!r}, at step {steps} of {STEPS}")
    if cpu_backend.name == "numba" and weight_decay == 0:
        # The fused kernel did run (at step 1, "a" alone is the group): this is the path the guard protects.
        assert fused_calls, "Numba's adam_update_many kernel never ran"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_a_group_equals_one_optimizer_per_tensor(cpu_backend, dtype):
    """The same gradients through one optimizer per tensor (each a group of one: no shared step possible)
    give the same numbers as one group, to the rounding of the kernel (the same on both sides here)."""
    grads, init = _gradients(seed=11), _initial(seed=12)
    params, _ = _run_group("abc", dtype, grads, init)
    for name in "abc":
        alone = Parameter(init[name].astype(dtype))
        opt = Adam([alone], **HYPER)
        for g in grads[name]:
            if g is not None:
                alone.grad = g.astype(dtype)
                opt.step()
        np.testing.assert_allclose(params[name].data, alone.data, **TOLERANCE[dtype], err_msg=name)


def test_a_group_of_float32_and_float64_tensors_keeps_each_dtype(cpu_backend):
    """One step count, two dtypes: each tensor is updated in its own dtype, by its own numbers."""
    grads, init = _gradients(seed=5), _initial(seed=6)
    grads["c"] = [g if g is not None else grads["a"][0][:2, :2] for g in grads["c"]]  # every step this time
    dtypes = {"a": np.float32, "b": np.float64, "c": np.float32}
    params = {name: Parameter(init[name].astype(dtypes[name])) for name in "abc"}
    opt = Adam(list(params.values()), **HYPER)
    for t in range(STEPS):
        for name in "abc":
            params[name].grad = grads[name][t].astype(dtypes[name]) if grads[name][t] is not None else None
        opt.step()
    for name in "abc":
        want, _ = adam_by_hand(init[name].astype(dtypes[name]), grads[name], **HYPER)
        assert params[name].data.dtype == dtypes[name]
        np.testing.assert_allclose(params[name].data, want, **TOLERANCE[dtypes[name]], err_msg=name)


@pytest.mark.torch
@pytest.mark.parametrize("order", ["abc", "cba"], ids=["ahead-first", "late-first"])
def test_a_group_at_different_steps_matches_torch(cpu_backend, order):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install -e '.[reference]')")
    grads, init = _gradients(seed=21), _initial(seed=22)
    params, _ = _run_group(order, np.float64, grads, init)
    theirs = {name: torch.tensor(init[name], dtype=torch.float64, requires_grad=True) for name in order}
    ref = torch.optim.Adam([theirs[name] for name in order], **HYPER)
    for t in range(STEPS):
        for name in order:
            g = grads[name][t]
            theirs[name].grad = None if g is None else torch.tensor(g, dtype=torch.float64)
        ref.step()
    for name in order:
        assert int(ref.state[theirs[name]]["step"]) == sum(SCHEDULE[name])
        np.testing.assert_allclose(params[name].data, theirs[name].detach().numpy(), rtol=1e-12, atol=1e-14,
                                   err_msg=name)
