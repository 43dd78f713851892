"""Host/device crossings, caught on the CPU: the package run on a backend whose arrays act like CuPy's.

The ``fakecupy`` backend (tests/fakecupy.py) refuses every implicit
conversion between its arrays and NumPy's, as CuPy does on a GPU, so a
training step, ``fit``, ``evaluate``, ``predict``, the reports and moving a
model between backends all run here with every crossing explicit; and it
counts the crossings, so the training loop is held to a bound on how often it
reads from the device.
"""
import numpy as np
import pytest

import fakecupy
from strategies import training_step
import minicnn
from minicnn import backend as B
from minicnn import models, nn, optim
from minicnn.data import DataLoader, mnist_eval_transform, mnist_train_transform
from minicnn.training import evaluate, fit


@pytest.fixture
def fake(monkeypatch):
    """The ``fakecupy`` backend, active for one test; the switch is as it was afterwards."""
    monkeypatch.setitem(B._REGISTRY, "fakecupy", "fakecupy")
    monkeypatch.setattr(B, "_loaded", dict(B._loaded))
    monkeypatch.setattr(B, "_failures", dict(B._failures))
    monkeypatch.setattr(B, "_current", B._current)
    backend = minicnn.set_backend("fakecupy")
    fakecupy.transfers.clear()
    return backend


def _digits(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28)).astype(np.uint8), rng.integers(0, 10, n)


# --- the test backend itself behaves like CuPy ------------------------------

def test_fake_arrays_refuse_implicit_conversion_and_host_operands(fake):
    a = fake.asarray(np.arange(6.0).reshape(2, 3))
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(a)
    with pytest.raises(TypeError, match="Unsupported type"):
        a + np.ones(3)
    with pytest.raises(TypeError, match="Unsupported type"):
        np.concatenate([a, np.ones((1, 3))])
    b = np.exp(a) + 1  # ufuncs and scalars work, and stay on the device
    assert isinstance(b, fakecupy.DeviceArray) and isinstance(np.sum(b, axis=0), fakecupy.DeviceArray)
    c = a
    c += 1
    assert c is a and float(a[0, 0]) == 1.0
    np.testing.assert_array_equal(B.to_numpy(a), np.arange(6.0).reshape(2, 3) + 1)
    assert B.get_array_module(a) is fakecupy.xp and B.kernels_for(a) is fake


# --- the package on it --------------------------------------------------------

def test_training_step_on_the_device_equals_numpy(fake):
    x, y = _digits(8)
    x = (x[:, None] / 255).astype(np.float32)
    results = {}
    for name in ("numpy", "fakecupy"):
        b = minicnn.set_backend(name)
        model = models.MnistCNN(seed=0)
        opt = optim.Adam(model.parameters())
        loss_fn = nn.NLLLoss()
        loss = loss_fn(model(b.asarray(x)), b.asarray(y))
        model.backward(loss_fn.backward())
        opt.step()
        results[name] = float(loss), {k: B.to_numpy(v) for k, v in model.state_dict().items()}
    assert isinstance(models.MnistCNN(seed=0).fc1.weight.data, fakecupy.DeviceArray)
    assert results["fakecupy"][0] == results["numpy"][0]
    for key, value in results["numpy"][1].items():
        np.testing.assert_array_equal(results["fakecupy"][1][key], value)


@pytest.mark.parametrize("model_name", ["MnistCNN", "MnistBNCNN"])
def test_fit_and_evaluate_on_the_device(fake, model_name):
    images, labels = _digits(96)
    train = DataLoader(images, labels, batch_size=16, shuffle=True, generator=np.random.default_rng(0),
                       transform=mnist_train_transform())
    test = DataLoader(images[:40], labels[:40], batch_size=20, transform=mnist_eval_transform())
    model = models.get_model(model_name, seed=0)
    opt = optim.Adam(model.parameters())
    history = fit(model, nn.NLLLoss(), opt, train, epochs=2, val_loader=test,
                  scheduler=optim.CosineAnnealingLR(opt, T_max=12), scheduler_interval="batch",
                  progress=False, log=None)
    assert len(history) == 2 and all(np.isfinite(history["train_loss"]))
    result = evaluate(model, test, nn.NLLLoss(), return_predictions=True)
    assert isinstance(result["predictions"], np.ndarray) and result["predictions"].shape == (40,)
    assert isinstance(result["accuracy"], float) and isinstance(result["loss"], float)


def _fit(backend_name, n_images, epochs=2, progress=False, batch_size=16):
    """(history, weights on the host, the crossings that fit made) of a short seeded run."""
    minicnn.set_backend(backend_name)
    images, labels = _digits(n_images)
    train = DataLoader(images, labels, batch_size=batch_size, shuffle=True, generator=np.random.default_rng(0),
                       transform=mnist_train_transform())
    model = models.MnistCNN(seed=0)
    opt = optim.Adam(model.parameters())
    fakecupy.transfers.clear()
    history = fit(model, nn.NLLLoss(), opt, train, epochs=epochs, progress=progress, log=None,
                  scheduler=optim.CosineAnnealingLR(opt, T_max=epochs * len(train)), scheduler_interval="batch")
    crossings = dict(fakecupy.transfers)  # those of fit alone
    return history, {k: B.to_numpy(v) for k, v in model.state_dict().items()}, crossings


def test_fit_on_the_device_equals_fit_on_the_host(fake):
    # The device path (the set copied up once, the epoch's augmentation drawn up front) sees the same
    # batches, augmented by the same random numbers, as the host path batch by batch.
    (host_history, host_weights, _), (dev_history, dev_weights, _) = _fit("numpy", 64), _fit("fakecupy", 64)
    for column in ("train_loss", "train_accuracy", "lr"):
        assert dev_history[column] == host_history[column], column
    for key, value in host_weights.items():
        np.testing.assert_array_equal(dev_weights[key], value)


def test_fit_crosses_between_host_and_device_a_few_times_per_epoch_not_per_batch(fake):
    counts = {n_images: _fit("fakecupy", n_images, epochs=2)[2] for n_images in (32, 96)}  # 2, 6 batches
    assert counts[32] == counts[96], counts
    # Up: the images and labels once, each epoch's order and augmentation; down: each epoch's losses and counts.
    assert counts[32] == {"to_device": 2 + 2 * 2, "to_host": 2 * 2}, counts


def test_a_progress_bar_reads_the_device_every_ten_batches(fake):
    crossings = _fit("fakecupy", 50, epochs=1, progress=True, batch_size=2)[2]  # 25 batches: read after 10, 20, 25
    assert crossings == {"to_device": 2 + 2, "to_host": 2 * 3}, crossings


def test_a_diverging_loss_on_the_device_names_its_batch(fake):
    from minicnn.training import TrainingDivergedError

    images, labels = _digits(96)
    model = models.MnistCNN(seed=0)
    train = DataLoader(images, labels, batch_size=16, transform=mnist_eval_transform())
    good = {k: B.to_numpy(v) for k, v in model.state_dict().items()}

    class NanAtThirdBatch(nn.NLLLoss):
        calls = 0

        def forward(self, log_probs, target):
            NanAtThirdBatch.calls += 1
            loss = super().forward(log_probs, target)
            return loss * np.float32("nan") if NanAtThirdBatch.calls == 3 else loss

    with pytest.raises(TrainingDivergedError, match="loss became nan at epoch 1, batch 3") as info:
        fit(model, NanAtThirdBatch(), optim.Adam(model.parameters()), train, epochs=1, progress=False, log=None)
    assert info.value.batch == 3
    for key, value in good.items():
        np.testing.assert_array_equal(B.to_numpy(model.state_dict()[key]), value)


def test_predict_and_reports_from_the_device(fake, tmp_path):
    from minicnn import metrics, plots
    from minicnn.inference import predict

    images, labels = _digits(30)
    model = models.MnistCNN(seed=0)
    digits, confidence, probs = predict(model, images[:5], return_all_probs=True)
    assert digits.shape == (5,) and isinstance(confidence, np.ndarray)
    np.testing.assert_allclose(probs.sum(axis=1), 1)
    result = evaluate(model, DataLoader(images, labels, batch_size=10, transform=mnist_eval_transform()),
                      return_predictions=True)
    cm = metrics.confusion_matrix(result["targets"], result["predictions"], num_classes=10)
    assert cm.sum() == 30
    plots.plot_confusion_matrix(cm, path=tmp_path / "cm.png")
    plots.plot_filters(model, path=tmp_path / "filters.png")
    plots.plot_feature_maps(model, fake.asarray(images[:1]), path=tmp_path / "maps.png")
    plots.plot_predictions(images[:9], result["targets"][:9], result["predictions"][:9], n=9,
                           path=tmp_path / "predictions.png")
    for name in ("cm", "filters", "maps", "predictions"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0


def test_model_and_optimizer_move_between_host_and_device(fake, tmp_path):
    x, y = _digits(8)
    x = (x[:, None] / 255).astype(np.float32)

    host = minicnn.set_backend("numpy")
    stayed, moved = models.MnistCNN(seed=0), models.MnistCNN(seed=0)
    stayed_opt, moved_opt = optim.Adam(stayed.parameters()), optim.Adam(moved.parameters())
    for _ in range(3):
        training_step(stayed, stayed_opt, host, x, y)
    training_step(moved, moved_opt, host, x, y)  # one step on the host, one on the device, one back home
    moved.to("fakecupy")
    moved_opt.load_state_dict(moved_opt.state_dict())
    training_step(moved, moved_opt, fake, x, y)
    minicnn.save(moved, tmp_path / "m.npz")  # saved from the device, loads on the host
    moved.to("numpy")
    moved_opt.load_state_dict(moved_opt.state_dict())
    training_step(moved, moved_opt, host, x, y)
    for key, value in stayed.state_dict().items():
        np.testing.assert_array_equal(moved.state_dict()[key], value)
    loaded = minicnn.load(models.MnistCNN(seed=1), tmp_path / "m.npz")  # on the host, the active backend
    assert all(isinstance(v, np.ndarray) for v in loaded.state_dict().values())


def test_adam_updates_a_group_in_one_fused_call_and_falls_back_when_steps_differ(fake, monkeypatch):
    import dataclasses

    from minicnn.optim.adam import adam_update_many

    calls = []

    def counting(params, *args):
        calls.append(len(params))
        return adam_update_many.reference(params, *args)

    monkeypatch.setitem(B._loaded, "fakecupy", dataclasses.replace(fake, overrides={"adam_update_many": counting}))
    start = [np.random.default_rng(0).standard_normal(3), np.random.default_rng(1).standard_normal(2)]
    a, b = (nn.Parameter(fake.asarray(v)) for v in start)
    opt = optim.Adam([a, b], lr=0.1, weight_decay=0.01)
    a.grad, b.grad = fake.asarray(np.ones(3)), fake.asarray(np.ones(2))
    opt.step()
    assert calls == [2]  # one call for the whole group
    b.grad = None
    opt.step()  # only a: a group of one
    assert calls == [2, 1]
    b.grad = fake.asarray(np.ones(2))
    opt.step()  # a is at step 3, b at step 2: different bias corrections, one update each
    assert calls == [2, 1]
    # The same three steps on the host, one parameter at a time, give the same numbers.
    minicnn.set_backend("numpy")
    host = [nn.Parameter(v.copy()) for v in start]
    host_opt = optim.Adam(host, lr=0.1, weight_decay=0.01)
    for grads in ((np.ones(3), np.ones(2)), (np.ones(3), None), (np.ones(3), np.ones(2))):
        host[0].grad, host[1].grad = grads
        host_opt.step()
    np.testing.assert_array_equal(B.to_numpy(a.data), host[0].data)
    np.testing.assert_array_equal(B.to_numpy(b.data), host[1].data)


def test_the_benchmark_runs_on_the_device(fake):
    from minicnn import bench

    report = bench.run(["fakecupy"], torch_reference=False, repeats=1, train_steps=1, infer_calls=1, layer_reps=1,
                       settle=0, log=lambda line: None, train_batches=(64, 16))
    row = report["results"]["fakecupy"]
    assert row["device"] == "fake" and row["train_images_per_s"] > 0 and row["infer_images_per_s"] > 0
    assert set(row["train_images_per_s_by_batch"]) == {"64", "16"} and len(row["layers"]) == 11
    assert report["ceilings"] == []  # a matrix-product ceiling only for real devices
