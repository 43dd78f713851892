"""Optimizers and learning-rate schedules.

Expected values come from hand arithmetic or from element-by-element Python
versions of the update rules written here; the ``torch``-marked tests replay
the same gradients through torch.optim in float64.
"""
import math

import numpy as np
import pytest

import minicnn
from minicnn import backend as B
from minicnn.nn import Linear, Parameter, ReLU, Sequential
from minicnn.optim import (
    SGD, Adam, CosineAnnealingLR, ExponentialLR, OneCycleLR, ReduceLROnPlateau,
    RMSprop, StepLR,
)
from strategies import using


def param(values, dtype=np.float64):
    return Parameter(np.array(values, dtype=dtype))


def run(opt, params, grads_per_step):
    """Give each parameter its gradient, then step, once per entry of ``grads_per_step``."""
    for grads in grads_per_step:
        for p, g in zip(params, grads):
            p.grad = np.array(g, dtype=p.dtype)
        opt.step()


# --- the update rules, element by element in Python floats ----------------------------
def sgd_reference(w, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    w, buf = list(w), [None] * len(w)
    for g in grads:
        for i in range(len(w)):
            d = g[i] + weight_decay * w[i]
            if momentum:
                buf[i] = d if buf[i] is None else momentum * buf[i] + (1 - dampening) * d
                d = d + momentum * buf[i] if nesterov else buf[i]
            w[i] -= lr * d
    return w


def adam_reference(w, grads, lr, beta1, beta2, eps, weight_decay=0.0):
    w, m, v = list(w), [0.0] * len(w), [0.0] * len(w)
    for t, g in enumerate(grads, start=1):
        for i in range(len(w)):
            d = g[i] + weight_decay * w[i]
            m[i] = beta1 * m[i] + (1 - beta1) * d
            v[i] = beta2 * v[i] + (1 - beta2) * d * d
            m_hat, v_hat = m[i] / (1 - beta1 ** t), v[i] / (1 - beta2 ** t)
            w[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return w


def rmsprop_reference(w, grads, lr, alpha, eps, weight_decay=0.0, momentum=0.0):
    w, v, buf = list(w), [0.0] * len(w), [0.0] * len(w)
    for g in grads:
        for i in range(len(w)):
            d = g[i] + weight_decay * w[i]
            v[i] = alpha * v[i] + (1 - alpha) * d * d
            step = d / (math.sqrt(v[i]) + eps)
            if momentum:
                buf[i] = momentum * buf[i] + step
                step = buf[i]
            w[i] -= lr * step
    return w


W0 = [1.0, -2.0, 0.5]
GRADS = [[0.3, -1.0, 2.0], [-0.2, 0.5, 1.5], [0.1, 0.4, -0.7], [0.6, -0.3, 0.2], [-0.9, 0.8, 0.05]]


# --- hand-computed steps ----------------------------------------------------------------
def test_sgd_momentum_by_hand():
    # b1 = 1, b2 = 0.9 + 1 = 1.9, b3 = 1.71 + 1 = 2.71; w = 1 - 0.1 * (1 + 1.9 + 2.71)
    p = param([1.0])
    opt = SGD([p], lr=0.1, momentum=0.9)
    for expected in (0.9, 0.71, 0.439):
        run(opt, [p], [[[1.0]]])
        assert p.data[0] == pytest.approx(expected, rel=1e-12)


def test_sgd_weight_decay_by_hand():
    # zero gradient: d1 = 0.5 * 2 = 1 -> w = 1.9; d2 = 0.95, b2 = 0.9 + 0.95 -> w = 1.9 - 0.185
    p = param([2.0])
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=0.5)
    run(opt, [p], [[[0.0]]])
    assert p.data[0] == pytest.approx(1.9, rel=1e-12)
    run(opt, [p], [[[0.0]]])
    assert p.data[0] == pytest.approx(1.715, rel=1e-12)


def test_adam_constant_gradient_moves_lr_per_step():
    # Constant g: m_hat = g and v_hat = g^2 at every t, so each step is lr * g / (|g| + eps).
    p = param([1.0, -1.0])
    opt = Adam([p], lr=0.1)
    for k in range(1, 4):
        run(opt, [p], [[[0.5, -2.0]]])
        np.testing.assert_allclose(p.data, [1.0 - 0.1 * k, -1.0 + 0.1 * k], rtol=1e-7)


def test_rmsprop_by_hand():
    # alpha = 0.9, g = 1: v1 = 0.1, v2 = 0.9 * 0.1 + 0.1 = 0.19
    p = param([1.0])
    opt = RMSprop([p], lr=0.01, alpha=0.9, eps=0.0)
    run(opt, [p], [[[1.0]], [[1.0]]])
    assert p.data[0] == pytest.approx(1.0 - 0.01 / math.sqrt(0.1) - 0.01 / math.sqrt(0.19), rel=1e-12)


@pytest.mark.parametrize("make, reference", [
    (lambda ps: SGD(ps, lr=0.1), lambda g: sgd_reference(W0, g, 0.1)),
    (lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
     lambda g: sgd_reference(W0, g, 0.1, momentum=0.9, weight_decay=0.01)),
    (lambda ps: SGD(ps, lr=0.05, momentum=0.8, dampening=0.3),
     lambda g: sgd_reference(W0, g, 0.05, momentum=0.8, dampening=0.3)),
    (lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
     lambda g: sgd_reference(W0, g, 0.1, momentum=0.9, nesterov=True)),
    (lambda ps: Adam(ps, lr=0.01, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.1),
     lambda g: adam_reference(W0, g, 0.01, 0.8, 0.9, 1e-3, weight_decay=0.1)),
    (lambda ps: RMSprop(ps, lr=0.01, alpha=0.9, eps=1e-3, weight_decay=0.1),
     lambda g: rmsprop_reference(W0, g, 0.01, 0.9, 1e-3, weight_decay=0.1)),
    (lambda ps: RMSprop(ps, lr=0.01, alpha=0.9, eps=1e-3, momentum=0.5),
     lambda g: rmsprop_reference(W0, g, 0.01, 0.9, 1e-3, momentum=0.5)),
], ids=["sgd", "sgd-momentum-wd", "sgd-dampening", "sgd-nesterov", "adam-wd", "rmsprop-wd", "rmsprop-momentum"])
def test_matches_elementwise_reference(make, reference):
    p = param(W0)
    opt = make([p])
    for k in range(1, len(GRADS) + 1):
        run(opt, [p], [[GRADS[k - 1]]])
        np.testing.assert_allclose(p.data, reference(GRADS[:k]), rtol=1e-12, atol=1e-15)


# --- dtype, in-place updates, gradients left as they are -----------------------------------
ALL_OPTIONS = [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True),
    lambda ps: Adam(ps, lr=0.01, weight_decay=0.01),
    lambda ps: RMSprop(ps, lr=0.01, weight_decay=0.01, momentum=0.9),
]


@pytest.mark.parametrize("make", ALL_OPTIONS, ids=["sgd", "adam", "rmsprop"])
def test_float32_stays_float32_and_updates_in_place(make):
    p = param(W0, np.float32)
    data = p.data
    opt = make([p])
    run(opt, [p], [[g] for g in GRADS])
    assert p.data is data and p.data.dtype == np.float32
    assert all(v.dtype == np.float32 for v in opt.state[p].values() if hasattr(v, "dtype"))
    # and agrees with the same steps in float64 to float32 precision
    q = param(W0, np.float64)
    run(make([q]), [q], [[g] for g in GRADS])
    np.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", ALL_OPTIONS, ids=["sgd", "adam", "rmsprop"])
def test_weight_decay_leaves_grad_unchanged(make):
    p = param(W0)
    opt = make([p])
    p.grad = np.array(GRADS[0])
    opt.step()
    np.testing.assert_array_equal(p.grad, GRADS[0])


def test_params_without_grad_are_skipped_and_zero_grad_clears():
    a, b = param([1.0]), param([2.0])
    opt = Adam([a, b], lr=0.1)
    a.grad = np.array([1.0])
    opt.step()
    assert b.data[0] == 2.0 and b not in opt.state and a.data[0] != 1.0
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_accepts_a_generator_and_param_groups():
    model = Linear(3, 2, dtype=np.float64, generator=np.random.default_rng(0))
    opt = SGD(model.parameters(), lr=0.1)
    assert len(opt.param_groups[0]["params"]) == 2
    a, b = param([1.0]), param([1.0])
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    run(opt, [a, b], [[[1.0], [1.0]]])
    assert (a.data[0], b.data[0]) == (pytest.approx(0.9), pytest.approx(0.5))
    assert opt.param_groups[1]["momentum"] == 0  # missing hyperparameters come from the defaults


# --- bad arguments ------------------------------------------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda p: SGD([p], lr=-0.1), "lr must be a number >= 0, got -0.1"),
    (lambda p: SGD([p], lr=0.1, momentum=-0.5), "momentum .* got -0.5"),
    (lambda p: SGD([p], lr=0.1, weight_decay=-1), "weight_decay .* got -1"),
    (lambda p: SGD([p], lr=0.1, nesterov=True), "nesterov=True needs momentum > 0"),
    (lambda p: SGD([p], lr=float("nan")), "lr .* got nan"),
    (lambda p: SGD([p], lr="0.1"), "lr .* got '0.1'"),
    (lambda p: Adam([p], betas=(0.9, 1.0)), r"betas\[1\] must be a number in \[0, 1\), got 1.0"),
    (lambda p: Adam([p], betas=(-0.1, 0.999)), r"betas\[0\] .* got -0.1"),
    (lambda p: Adam([p], betas=0.9), "betas must be a pair"),
    (lambda p: Adam([p], eps=-1e-8), "eps .* got -1e-08"),
    (lambda p: RMSprop([p], alpha=1.5), "alpha .* got 1.5"),
    (lambda p: RMSprop([p], momentum=-1), "momentum .* got -1"),
    (lambda p: SGD([{"params": [p], "learning_rate": 0.1}], lr=0.1), "unknown hyperparameter.*'learning_rate'"),
    (lambda p: SGD([p, p], lr=0.1), "more than once"),
])
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make(param([1.0]))


def test_empty_or_wrong_params_raise():
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        Adam(p for p in [])
    with pytest.raises(TypeError, match="iterable of Parameters"):
        SGD(param([1.0]), lr=0.1)
    with pytest.raises(TypeError, match="expected Parameters"):
        SGD([np.ones(2)], lr=0.1)


@pytest.mark.parametrize("make, got", [
    (lambda model: SGD(None, lr=0.1),
     "params must be an iterable of Parameters, e.g. model.parameters(); got None"),
    (lambda model: SGD(model, lr=0.1),
     "params must be an iterable of Parameters, got a Sequential (a Module); pass model.parameters()"),
    (lambda model: Adam([{"params": None}]), "the 'params' of parameter group 0 must be an iterable of "
                                             "Parameters, e.g. model.parameters(); got None"),
    (lambda model: Adam([{"params": model}]), "the 'params' of parameter group 0 must be an iterable of "
                                              "Parameters, got a Sequential (a Module); pass model.parameters()"),
    (lambda model: RMSprop(3), "params must be an iterable of Parameters, e.g. model.parameters(); "
                               "got an object of type int"),
], ids=["none", "module", "group-none", "group-module", "int"])
def test_params_that_are_not_an_iterable_of_parameters_raise(make, got):
    model = Sequential(ReLU(), Linear(3, 2))  # iterable, over its layers
    with pytest.raises(TypeError) as info:
        make(model)
    assert str(info.value).split(": ", 1)[1] == got


# --- gradients that do not fit their parameter ------------------------------------------------
@pytest.fixture(params=["numpy", "numba"])
def cpu_backend(request):
    if request.param not in minicnn.available_backends():
        pytest.skip(f"the {request.param} backend does not load here")
    with using(request.param):
        yield request.param


@pytest.mark.parametrize("make", ALL_OPTIONS, ids=["sgd", "adam", "rmsprop"])
@pytest.mark.parametrize("grad_shape", [(4, 3), (2,), ()], ids=["not-summed-over-batch", "too-short", "scalar"])
def test_gradient_of_another_shape_raises_and_changes_nothing(cpu_backend, make, grad_shape):
    # Numba's Adam kernel once took the first 3 elements of a (4, 3) gradient and read past a (2,) one.
    weight, bias = param(np.ones((2, 3)), np.float32), param(W0, np.float32)
    opt = make([weight, bias])
    weight.grad = np.ones((2, 3), np.float32)
    bias.grad = np.ones(grad_shape, np.float32)
    with pytest.raises(ValueError) as info:
        opt.step()
    assert str(info.value) == (f"{type(opt).__name__}: parameter 1 has shape (3,) but its gradient has shape "
                               f"{grad_shape}")
    np.testing.assert_array_equal(weight.data, np.ones((2, 3)))  # checked before any update
    np.testing.assert_array_equal(bias.data, np.float32(W0))
    assert opt.state == {}


@pytest.mark.parametrize("make", ALL_OPTIONS, ids=["sgd", "adam", "rmsprop"])
@pytest.mark.parametrize("grad, message", [
    (np.ones(3), "has dtype float32 but its gradient has dtype float64"),
    (np.ones(3, np.float16), "has dtype float32 but its gradient has dtype float16"),
    (np.ones(3, np.int64), "has dtype float32 but its gradient has dtype int64"),
    ([1.0, 1.0, 1.0], "is a numpy.ndarray but its gradient is a list"),
], ids=["float64", "float16", "int64", "list"])
def test_gradient_of_another_dtype_or_kind_raises(cpu_backend, make, grad, message):
    # Before: SGD kept a float64 (or float16) momentum buffer for a float32 parameter, and
    # failed on an int one; Numba's Adam failed on float16; a list failed inside the arithmetic.
    p = param(W0, np.float32)
    opt = make([p])
    p.grad = grad
    with pytest.raises(TypeError) as info:
        opt.step()
    assert str(info.value) == f"{type(opt).__name__}: parameter 0 {message}"
    np.testing.assert_array_equal(p.data, np.float32(W0))


@pytest.mark.gpu
def test_gradient_on_another_device_raises():
    try:
        B.load_backend("cupy")
    except minicnn.BackendUnavailableError as exc:
        pytest.skip(f"no CuPy GPU backend here: {exc}")
    import cupy

    on_host, on_gpu = param(W0), Parameter(cupy.asarray(W0))
    on_host.grad, on_gpu.grad = cupy.ones(3), np.ones(3)
    with pytest.raises(TypeError) as info:
        SGD([on_host], lr=0.1).step()
    assert str(info.value) == "SGD: parameter 0 is a numpy.ndarray but its gradient is a cupy.ndarray"
    with pytest.raises(TypeError) as info:
        Adam([on_gpu]).step()
    assert str(info.value) == "Adam: parameter 0 is a cupy.ndarray but its gradient is a numpy.ndarray"


# --- state dicts --------------------------------------------------------------------------
def two_params(dtype=np.float64):
    return [param([[1.0, -2.0], [0.5, 3.0]], dtype), param([0.25, -0.75], dtype)]


STEPS = [[np.array([[0.1, -0.2], [0.3, 0.4]]) * (k + 1) * (-1) ** k, np.array([0.5, -0.1]) / (k + 1)]
         for k in range(6)]


@pytest.mark.parametrize("make", ALL_OPTIONS, ids=["sgd", "adam", "rmsprop"])
def test_state_dict_round_trip_resumes_identically(make):
    straight = two_params()
    run(make(straight), straight, STEPS)

    first = two_params()
    opt = make(first)
    run(opt, first, STEPS[:3])
    saved, saved_values = opt.state_dict(), [p.data.copy() for p in first]
    run(opt, first, STEPS[3:4])  # training on must not change what was saved

    resumed = [param(v) for v in saved_values]
    opt2 = make(resumed)
    opt2.load_state_dict(saved)
    run(opt2, resumed, STEPS[3:])
    for a, b in zip(resumed, straight):
        np.testing.assert_array_equal(a.data, b.data)


def test_state_dict_layout_and_hyperparameters():
    ps = two_params()
    opt = Adam([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.5}], lr=0.1)
    run(opt, ps, STEPS[:2])
    sd = opt.state_dict()
    assert sd["param_groups"][0]["params"] == [0] and sd["param_groups"][1]["params"] == [1]
    assert sd["state"][1]["step"] == 2 and sd["state"][0]["exp_avg"].shape == (2, 2)
    fresh = two_params()
    opt2 = Adam([{"params": [fresh[0]]}, {"params": [fresh[1]]}], lr=0.01)
    opt2.load_state_dict(sd)
    assert [g["lr"] for g in opt2.param_groups] == [0.1, 0.5]
    assert opt2.state[fresh[1]]["step"] == 2


def test_load_state_dict_takes_indices_as_strings():
    # as they come back from a checkpoint whose structure was stored as JSON
    ps = two_params()
    opt = Adam(ps, lr=0.01)
    run(opt, ps, STEPS[:2])
    sd = opt.state_dict()
    sd = {"state": {str(k): v for k, v in sd["state"].items()},
          "param_groups": [{**g, "betas": list(g["betas"])} for g in sd["param_groups"]]}
    fresh = [param(p.data.copy()) for p in ps]
    opt2 = Adam(fresh, lr=0.5)
    opt2.load_state_dict(sd)
    run(opt, ps, STEPS[2:])
    run(opt2, fresh, STEPS[2:])
    for a, b in zip(ps, fresh):
        np.testing.assert_array_equal(a.data, b.data)


def test_load_state_dict_casts_to_the_parameter_dtype():
    ps = two_params(np.float64)
    opt = RMSprop(ps, momentum=0.9)
    run(opt, ps, STEPS[:2])
    ps32 = two_params(np.float32)
    opt32 = RMSprop(ps32, momentum=0.9)
    opt32.load_state_dict(opt.state_dict())
    assert all(v.dtype == np.float32 for v in opt32.state[ps32[0]].values())


def test_load_state_dict_mismatches_raise():
    ps = two_params()
    opt = SGD(ps, lr=0.1, momentum=0.9)
    run(opt, ps, STEPS[:1])
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="1 parameter group.*this optimizer has 2"):
        SGD([{"params": [param([1.0])]}, {"params": [param([1.0])]}], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="group 0 has 2 parameter.*1 here"):
        SGD([param([1.0])], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"'momentum_buffer' has shape \(2, 2\), the parameter has shape \(4,\)"):
        SGD([param(np.zeros(4)), param(np.zeros(2))], lr=0.1, momentum=0.9).load_state_dict(sd)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        Adam(two_params()).load_state_dict(sd)


# --- learning-rate schedules, by hand ---------------------------------------------------------
def lrs_over(scheduler, epochs):
    """The lr of group 0 at epoch 0 (construction) and after each of ``epochs`` steps."""
    out = [scheduler.get_last_lr()[0]]
    for _ in range(epochs):
        scheduler.step()
        out.append(scheduler.get_last_lr()[0])
    return out


def sgd(lr=1.0):
    return SGD([param([1.0])], lr=lr)


def test_step_lr_changes_at_the_step_boundary():
    opt = sgd()
    assert lrs_over(StepLR(opt, step_size=3, gamma=0.5), 7) == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert opt.param_groups[0]["lr"] == 0.25


def test_exponential_and_cosine_by_hand():
    assert lrs_over(ExponentialLR(sgd(), gamma=0.5), 3) == [1, 0.5, 0.25, 0.125]
    cos = lrs_over(CosineAnnealingLR(sgd(), T_max=4, eta_min=0.2), 4)
    np.testing.assert_allclose(cos, [1, 0.2 + 0.8 * (1 + math.sqrt(0.5)) / 2, 0.6,
                                      0.2 + 0.8 * (1 - math.sqrt(0.5)) / 2, 0.2], rtol=1e-12)


def test_one_cycle_by_hand():
    # max_lr 1, div 10: starts at 0.1, peaks at step 0.3*10-1 = 2, ends at 0.1/100 at step 9
    lrs = lrs_over(OneCycleLR(sgd(), max_lr=1.0, total_steps=10, div_factor=10, final_div_factor=100,
                              anneal_strategy="linear"), 9)
    np.testing.assert_allclose(lrs[:3], [0.1, 0.55, 1.0], rtol=1e-12)
    np.testing.assert_allclose(lrs[9], 0.001, rtol=1e-12)
    assert np.all(np.diff(lrs[2:]) < 0)


def test_one_cycle_errors_past_total_steps_and_handles_a_one_step_warmup():
    sched = OneCycleLR(sgd(), max_lr=1.0, total_steps=3)
    last = lrs_over(sched, 3)[-1]
    with pytest.raises(ValueError, match="^OneCycleLR: cannot step past the end of the cycle: stepped 3 times, "
                                         "and total_steps is 3$"):
        sched.step()
    assert sched.last_epoch == 3 and sched.get_last_lr() == [last]  # the failed step counted for nothing
    lrs = lrs_over(OneCycleLR(sgd(), max_lr=1.0, total_steps=10, pct_start=0.1), 9)
    assert lrs[0] == 1.0 and all(math.isfinite(lr) for lr in lrs)


def test_plateau_reduces_after_patience_plus_one_bad_epochs():
    opt = sgd()
    sched = ReduceLROnPlateau(opt, patience=2)
    lrs = []
    for metric in [1.0, 1.0, 1.0, 1.0, 1.0]:  # epoch 1 sets best; 2, 3, 4 are bad
        sched.step(metric)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == [1, 1, 1, pytest.approx(0.1), pytest.approx(0.1)]
    sched.step(0.5)  # an improvement resets the count
    sched.step(0.5)
    sched.step(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    sched.step(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)


def test_plateau_cooldown_min_lr_and_mode_max():
    opt = sgd()
    sched = ReduceLROnPlateau(opt, factor=0.5, patience=0, cooldown=2, min_lr=0.2)
    lrs = []
    for _ in range(9):
        sched.step(1.0)
        lrs.append(opt.param_groups[0]["lr"])
    # epoch 1 best; 2 bad -> 0.5; 3, 4 cooling down; 5 bad -> 0.25; 6, 7 cool; 8 -> 0.2 (min_lr); 9 cool
    assert lrs == [1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2]
    opt = sgd()
    sched = ReduceLROnPlateau(opt, mode="max", patience=1)
    for accuracy in [0.5, 0.6, 0.7, 0.65, 0.69]:  # rising, then two epochs below the best 0.7
        sched.step(accuracy)
    assert sched.get_last_lr() == [pytest.approx(0.1)]


@pytest.mark.parametrize("metric, got", [
    (None, "None"),
    (np.array([0.5, 0.4]), "an array of shape (2,)"),
    ("0.5", "'0.5'"),
    (True, "True"),
])
def test_plateau_metric_must_be_one_number(metric, got):
    sched = ReduceLROnPlateau(sgd())
    with pytest.raises(TypeError) as info:
        sched.step(metric)
    assert str(info.value) == ("ReduceLROnPlateau.step: the metric must be a number (a scalar such as the "
                               f"epoch's validation loss), got {got}")
    assert sched.last_epoch == 0
    for scalar in (np.array(0.5), np.float32(0.4), 0.3):  # a 0-d array and NumPy scalars are numbers
        sched.step(scalar)
    assert sched.best == pytest.approx(0.3)


def two_groups(lr=1.0):
    return SGD([{"params": [param([1.0])]}, {"params": [param([1.0])]}], lr=lr)


def tampered(state, **changes):
    return {**state, **changes}


@pytest.mark.parametrize("make, state, error, message", [
    (lambda: StepLR(two_groups(), step_size=2), StepLR(sgd(), step_size=2).state_dict(), ValueError,
     "StepLR.load_state_dict: state has 1 base_lr(s), the optimizer has 2 parameter groups"),
    (lambda: ReduceLROnPlateau(two_groups()), ReduceLROnPlateau(sgd()).state_dict(), ValueError,
     "ReduceLROnPlateau.load_state_dict: state has 1 min_lr(s), the optimizer has 2 parameter groups"),
    (lambda: OneCycleLR(two_groups(), max_lr=1.0, total_steps=5),
     OneCycleLR(sgd(), max_lr=1.0, total_steps=5).state_dict(), ValueError,
     "OneCycleLR.load_state_dict: state has 1 base_lr(s), the optimizer has 2 parameter groups"),
    (lambda: StepLR(sgd(), step_size=2), None, TypeError,
     "StepLR.load_state_dict: expected a dict as returned by state_dict(), got None"),
    (lambda: StepLR(sgd(), step_size=2), [("step_size", 2)], TypeError,
     "StepLR.load_state_dict: expected a dict as returned by state_dict(), got an object of type list"),
    (lambda: StepLR(sgd(), step_size=2), tampered(StepLR(sgd(), step_size=2).state_dict(), step_size=0),
     ValueError, "StepLR: step_size must be an int >= 1, got 0"),  # the constructor's message
    (lambda: CosineAnnealingLR(sgd(), T_max=4),
     tampered(CosineAnnealingLR(sgd(), T_max=4).state_dict(), T_max=2.5),
     ValueError, "CosineAnnealingLR: T_max must be an int >= 1, got 2.5"),
    (lambda: ReduceLROnPlateau(sgd()), tampered(ReduceLROnPlateau(sgd()).state_dict(), factor=1.0),
     ValueError, "ReduceLROnPlateau: factor must be a number in [0, 1), got 1.0"),
    (lambda: ExponentialLR(sgd(), gamma=0.5),
     tampered(ExponentialLR(sgd(), gamma=0.5).state_dict(), last_epoch=-1),
     ValueError, "ExponentialLR: last_epoch must be an int >= 0, got -1"),
    (lambda: OneCycleLR(sgd(), max_lr=1.0, total_steps=5),
     tampered(OneCycleLR(sgd(), max_lr=1.0, total_steps=5).state_dict(), last_epoch=6),
     ValueError, "OneCycleLR: last_epoch must be at most total_steps (5), got 6"),
], ids=["base-lrs", "min-lrs", "max-lrs", "none", "list", "step-size-0", "t-max", "factor", "last-epoch",
        "past-total-steps"])
def test_scheduler_load_state_dict_refuses_a_state_that_does_not_fit(make, state, error, message):
    sched = make()
    before = sched.state_dict()
    with pytest.raises(error) as info:
        sched.load_state_dict(state)
    assert str(info.value) == message
    assert sched.state_dict() == before


def test_scheduler_state_dict_round_trip_and_bad_arguments():
    opt = sgd(0.1)
    sched = CosineAnnealingLR(opt, T_max=10)
    straight = lrs_over(sched, 8)
    opt = sgd(0.1)
    sched = CosineAnnealingLR(opt, T_max=10)
    lrs_over(sched, 4)
    saved_sched, saved_opt = sched.state_dict(), opt.state_dict()
    opt2 = sgd(0.1)
    sched2 = CosineAnnealingLR(opt2, T_max=10)
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    assert lrs_over(sched2, 4) == straight[4:]
    with pytest.raises(ValueError, match="missing keys"):
        StepLR(sgd(), step_size=2).load_state_dict(saved_sched)
    for make, match in [
        (lambda: StepLR(sgd(), step_size=0), "step_size must be an int >= 1, got 0"),
        (lambda: ExponentialLR(sgd(), gamma=-1), "gamma .* got -1"),
        (lambda: CosineAnnealingLR(sgd(), T_max=2.5), "T_max must be an int"),
        (lambda: OneCycleLR(sgd(), max_lr=1.0, total_steps=10, pct_start=1.5), "pct_start .* got 1.5"),
        (lambda: OneCycleLR(sgd(), max_lr=1.0, total_steps=10, anneal_strategy="exp"), "anneal_strategy"),
        (lambda: ReduceLROnPlateau(sgd(), factor=1.0), r"factor must be a number in \[0, 1\), got 1.0"),
        (lambda: ReduceLROnPlateau(sgd(), mode="up"), "mode must be 'min' or 'max'"),
        (lambda: ReduceLROnPlateau(sgd(), patience=-1), "patience must be an int >= 0"),
    ]:
        with pytest.raises(ValueError, match=match):
            make()
    with pytest.raises(TypeError, match="expected an Optimizer"):
        StepLR(object(), step_size=1)


# --- against torch.optim ---------------------------------------------------------------------
def torch_pair(torch, rng):
    """The same two parameters, in minicnn and in PyTorch, and 10 steps of gradients."""
    init = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    grads = [[rng.standard_normal(a.shape) for a in init] for _ in range(10)]
    ours = [param(a.copy()) for a in init]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    return ours, theirs, grads


@pytest.mark.torch
@pytest.mark.parametrize("name, kwargs", [
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.5, dampening=0.2)),
    ("Adam", dict(lr=0.01, weight_decay=0.05)),
    ("Adam", dict(lr=0.1, betas=(0.5, 0.9), eps=1e-4)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.02, momentum=0.8)),
])
def test_optimizers_match_torch(torch, rng, name, kwargs):
    import minicnn.optim

    ours, theirs, grads = torch_pair(torch, rng)
    group_lr = kwargs["lr"] / 2  # the second parameter in its own group, with its own lr
    opt = getattr(minicnn.optim, name)([{"params": [ours[0]]}, {"params": [ours[1]], "lr": group_lr}], **kwargs)
    ref = getattr(torch.optim, name)([{"params": [theirs[0]]}, {"params": [theirs[1]], "lr": group_lr}], **kwargs)
    for step_grads in grads:
        for p, t, g in zip(ours, theirs, step_grads):
            p.grad = g.copy()
            t.grad = torch.tensor(g)
        opt.step()
        ref.step()
        for p, t in zip(ours, theirs):
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-12, atol=1e-14)


def torch_and_ours(torch, lrs=(0.1, 0.05)):
    ours = SGD([{"params": [param([1.0])], "lr": lr} for lr in lrs], lr=lrs[0], momentum=0.9)
    theirs = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in lrs],
                             lr=lrs[0], momentum=0.9)
    return ours, theirs


@pytest.mark.torch
@pytest.mark.parametrize("name, kwargs, steps", [
    ("StepLR", dict(step_size=3, gamma=0.5), 12),
    ("ExponentialLR", dict(gamma=0.8), 12),
    ("CosineAnnealingLR", dict(T_max=5, eta_min=0.001), 14),  # runs past T_max
    ("CosineAnnealingLR", dict(T_max=10), 10),
    ("OneCycleLR", dict(max_lr=[1.0, 0.5], total_steps=12), 12),
    ("OneCycleLR", dict(max_lr=0.3, total_steps=10, pct_start=0.25, div_factor=10, final_div_factor=100,
                        anneal_strategy="linear"), 10),
])
def test_schedulers_match_torch(torch, name, kwargs, steps):
    import minicnn.optim

    ours_opt, their_opt = torch_and_ours(torch)
    extra = dict(cycle_momentum=False) if name == "OneCycleLR" else {}
    ours = getattr(minicnn.optim, name)(ours_opt, **kwargs)
    theirs = getattr(torch.optim.lr_scheduler, name)(their_opt, **kwargs, **extra)
    np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-12)
    for _ in range(steps):
        their_opt.step()  # no gradients: nothing moves, but PyTorch sees the usual call order
        ours.step()
        theirs.step()
        np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose([g["lr"] for g in ours_opt.param_groups],
                                   [g["lr"] for g in their_opt.param_groups], rtol=1e-12, atol=1e-15)


@pytest.mark.torch
@pytest.mark.parametrize("kwargs", [
    dict(patience=2),
    dict(patience=1, cooldown=2, factor=0.5, min_lr=[0.02, 0.01]),
    dict(mode="max", patience=1, threshold=0.05, threshold_mode="abs"),
    dict(mode="max", patience=0, threshold=0.01, cooldown=1, min_lr=0.004),
    dict(patience=0, threshold=0.1, threshold_mode="abs", eps=0.02),
])
def test_reduce_lr_on_plateau_matches_torch(torch, rng, kwargs):
    ours_opt, their_opt = torch_and_ours(torch)
    ours = ReduceLROnPlateau(ours_opt, **kwargs)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(their_opt, **kwargs)
    # a noisy metric that improves, stalls, then drifts
    metrics = np.concatenate([np.linspace(1.0, 0.5, 5), np.full(6, 0.5), 0.5 + 0.02 * rng.standard_normal(20)])
    for metric in metrics:
        their_opt.step()
        ours.step(metric)
        theirs.step(metric)
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)
        assert (ours.num_bad_epochs, ours.cooldown_counter) == (theirs.num_bad_epochs, theirs.cooldown_counter)



def test_moving_a_model_then_reloading_the_state_moves_the_optimizer_with_it():
    # The documented idiom after model.to(...): opt.load_state_dict(opt.state_dict())
    # recasts every state array to its parameter's dtype and device.
    from minicnn import nn

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    model = nn.Linear(3, 2)
    opt = Adam(model.parameters(), lr=0.1)
    for _ in range(2):
        model(x)
        model.backward(np.ones((4, 2), np.float32))
        opt.step()
        opt.zero_grad()
    model.to(np.float64)
    opt.load_state_dict(opt.state_dict())
    for p in model.parameters():
        state = opt.state[p]
        assert state["step"] == 2
        assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == np.float64
    model(x.astype(np.float64))
    model.backward(np.ones((4, 2)))
    opt.step()
    assert all(p.data.dtype == np.float64 and opt.state[p]["step"] == 3 for p in model.parameters())


@pytest.mark.parametrize("make", [
    lambda opt: StepLR(opt, step_size=2, gamma=0.5),
    lambda opt: ExponentialLR(opt, gamma=0.9),
    lambda opt: CosineAnnealingLR(opt, T_max=5),
    lambda opt: OneCycleLR(opt, max_lr=1.0, total_steps=6),
], ids=["step", "exponential", "cosine", "one-cycle"])
def test_every_scheduler_takes_a_metric_and_the_step_count_schedules_ignore_it(make):
    """A training loop steps any scheduler as ``step(metric)``, without asking which one it is."""
    with_metric, without = make(sgd()), make(sgd())
    for value in (3.0, 1.0, 2.0, 0.5):
        with_metric.step(value)
        without.step()
        assert with_metric.get_last_lr() == without.get_last_lr()
    assert with_metric.last_epoch == 4


def test_plateau_step_without_a_metric_is_an_error_that_names_it():
    sched = ReduceLROnPlateau(sgd())
    with pytest.raises(TypeError, match="ReduceLROnPlateau.step: the metric must be a number .*got None"):
        sched.step()
