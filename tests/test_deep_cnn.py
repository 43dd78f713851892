"""MnistDeepCNN: its layout, its gradients, and the recipe `minicnn train --model MnistDeepCNN` trains it with."""
import contextlib
import io
import json

import numpy as np
import pytest

from minicnn import cli, models, nn, optim, recipes
from minicnn.gradcheck import gradcheck
from strategies import tiny_mnist

@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """200 training and 20 test images of noise: the recipe tests train and evaluate in a moment."""
    return tiny_mnist(tmp_path_factory.mktemp("data") / "mnist", train=200, test=20)


@pytest.fixture(autouse=True)
def _on_small_data(small_data, monkeypatch):
    """Every command here reads the small data set (MINICNN_DATA), not the bundled 60,000 + 10,000 images."""
    monkeypatch.setenv("MINICNN_DATA", str(small_data))


DEEP_CNN_SHAPES = {
    "conv1.weight": (32, 1, 5, 5), "conv1.bias": (32,),
    "conv2.weight": (32, 32, 5, 5), "conv2.bias": (32,),
    "conv3.weight": (64, 32, 3, 3), "conv3.bias": (64,),
    "conv4.weight": (64, 64, 3, 3), "conv4.bias": (64,),
    "fc1.weight": (256, 3136), "fc1.bias": (256,),
    "fc2.weight": (10, 256), "fc2.bias": (10,),
}


def test_state_dict_layout_and_parameter_count():
    model = models.get_model("mnistdeepcnn", seed=0)
    assert isinstance(model, models.MnistDeepCNN)
    state = model.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == DEEP_CNN_SHAPES
    assert list(state) == list(DEEP_CNN_SHAPES)
    assert sum(p.size for p in model.parameters()) == 887_530
    assert all(v.dtype == np.float32 for v in state.values())
    assert [type(m).__name__ for _, m in model.named_children()] == [
        "Rescaling", "Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d", "Dropout",
        "Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d", "Dropout",
        "Flatten", "Linear", "ReLU", "Dropout", "Linear", "LogSoftmax"]
    assert [model.drop1.p, model.drop2.p, model.drop3.p] == [0.25, 0.25, 0.5]


def test_it_starts_as_keras_starts_it_glorot_uniform_weights_and_zero_biases():
    model = models.MnistDeepCNN(seed=0)
    fans = {"conv1": (25, 800), "conv2": (800, 800), "conv3": (288, 576), "conv4": (576, 576),
            "fc1": (3136, 256), "fc2": (256, 10)}
    for name, (fan_in, fan_out) in fans.items():
        layer = getattr(model, name)
        bound = np.sqrt(6 / (fan_in + fan_out))
        w = layer.weight.data
        assert np.abs(w).max() <= bound * (1 + 1e-6), name
        assert np.abs(w).max() > 0.9 * bound, name  # drawn over the whole range, not a narrower one
        # U(-b, b) has variance b^2 / 3; the larger layers pin it down
        if w.size >= 10_000:
            np.testing.assert_allclose(w.var(), bound ** 2 / 3, rtol=0.05, err_msg=name)
        assert not layer.bias.data.any(), name
    fan_in_model = models.MnistDeepCNN(seed=0, init="fan_in")
    assert np.abs(fan_in_model.fc1.weight.data).max() <= 1 / np.sqrt(3136) * (1 + 1e-6)
    assert fan_in_model.fc1.bias.data.any()
    np.testing.assert_array_equal(models.MnistDeepCNN(seed=0).conv2.weight.data, model.conv2.weight.data)


def test_it_sees_the_standardised_input_as_pixels_in_0_1_as_the_notebook_scales_them():
    """The first layer undoes the pipeline's standardisation: the rest of the network sees p / 255."""
    from minicnn.data import normalize

    model = models.MnistDeepCNN(dtype=np.float64, seed=0).eval()
    images = np.random.default_rng(2).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    x = normalize(images, dtype=np.float64)
    np.testing.assert_allclose(model.rescale(x), images[:, None] / 255, atol=1e-15)
    assert model.rescale(normalize(np.zeros((1, 28, 28), np.uint8), dtype=np.float64)).max() < 1e-15
    rest = nn.Sequential(*list(model)[1:])  # the same layers, without the rescaling
    np.testing.assert_allclose(model(x), rest(images[:, None] / 255), rtol=1e-10, atol=1e-12)


def test_an_unknown_init_is_named():
    with pytest.raises(ValueError, match="init must be 'glorot' or 'fan_in', got 'he'"):
        models.MnistDeepCNN(init="he")


def test_summary_prints_the_layer_shapes_and_887530_parameters(capsys):
    assert cli.main(["summary", "--model", "MnistDeepCNN"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 887,530" in out
    for line in ("rescale (Rescaling)       (None, 1, 28, 28)         0",
                 "conv2 (Conv2d)            (None, 32, 28, 28)   25,632",
                 "drop1 (Dropout)           (None, 32, 14, 14)        0",
                 "conv4 (Conv2d)            (None, 64, 14, 14)   36,928",
                 "flatten (Flatten)         (None, 3136)              0",
                 "fc1 (Linear)              (None, 256)         803,072",
                 "fc2 (Linear)              (None, 10)            2,570"):
        assert line in out


def test_forward_and_backward_stay_float32():
    model = models.MnistDeepCNN(seed=0)
    x = np.random.default_rng(1).uniform(0, 1, (3, 1, 28, 28)).astype(np.float32)
    out = model(x)
    assert out.dtype == np.float32 and out.shape == (3, 10)
    np.testing.assert_allclose(np.exp(out).sum(axis=1), 1.0, rtol=1e-5)
    criterion = nn.NLLLoss()
    criterion(out, np.array([1, 5, 9]))
    dx = model.backward(criterion.backward())
    assert dx.dtype == np.float32 and dx.shape == x.shape
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.data.shape and p.grad.dtype == np.float32, name


# As tests/test_gradcheck.py checks the other models: tensors above 100 entries along random
# directions, the rest element by element; in training mode Dropout's masks are replayed. The step
# is 1e-7, not the default 1e-6: moving a bias of conv1 moves some 10^5 pre-activations downstream,
# and at 1e-6 one of them crosses ReLU's kink at 0 often enough that the central difference is
# then off by percents (it agrees with the analytic gradient again at 1e-7 and 1e-8); in float64 the
# rounding error of a 1e-7 step is about 1e-9, far below the tolerance.
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_gradients_match_finite_differences(training):
    model = models.MnistDeepCNN(dtype=np.float64, seed=3).train(training)
    x = (np.random.default_rng(4).uniform(0, 1, (2, 1, 28, 28)) - 0.1307) / 0.3081  # standardised pixels
    assert gradcheck(model, x, max_elements=100, eps=1e-7)


def test_weights_file_names_its_model(tmp_path, capsys):
    """evaluate reads a MnistDeepCNN weights file without --model (the conv4 keys tell it)."""
    import minicnn

    path = minicnn.save(models.MnistDeepCNN(seed=0), tmp_path / "deep.npz")
    assert cli.main(["evaluate", str(path), "--limit", "20"]) == 0
    assert "on 20 images" in capsys.readouterr().out


def _train(monkeypatch, argv):
    """Run `minicnn train` on a small slice; returns what fit was given and the metrics.json written."""
    seen = {}
    real_fit = recipes.fit

    def spy(model, loss_fn, optimizer, train_loader, epochs, **kwargs):
        seen.update(model=model, optimizer=optimizer, train_loader=train_loader, **kwargs)
        return real_fit(model, loss_fn, optimizer, train_loader, epochs, **kwargs)

    monkeypatch.setattr(recipes, "fit", spy)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["train", "--epochs", "1", "--limit", "200", "--quiet", *argv]) == 0
    seen["stdout"] = printed.getvalue()
    return seen


def test_train_uses_the_deep_recipe_by_default(monkeypatch, tmp_path):
    seen = _train(monkeypatch, ["--model", "MnistDeepCNN", "--out", str(tmp_path)])
    assert isinstance(seen["model"], models.MnistDeepCNN)
    opt = seen["optimizer"]
    assert type(opt) is optim.RMSprop
    group = opt.param_groups[0]
    assert (group["lr"], group["alpha"], group["eps"], group["momentum"]) == (1e-3, 0.9, 1e-8, 0)
    sched = seen["scheduler"]
    assert type(sched) is optim.ReduceLROnPlateau
    assert (sched.mode, sched.patience, sched.factor, sched.min_lrs) == ("max", 2, 0.5, [1e-5])  # Keras patience 3
    assert seen["train_loader"].batch_size == 86
    assert seen["plateau_metric"] == "val_accuracy" and seen["scheduler_interval"] == "epoch"
    transform = seen["train_loader"].transform
    assert (transform.augment, transform.degrees, transform.translate, transform.scale) == (True, 10.0, 0.1, (0.9, 1.1))
    assert transform.scale_each_axis  # as Keras's zoom_range: one factor per axis
    assert len(seen["train_loader"].images) == 180 and len(seen["val_loader"].images) == 20  # 10% held out
    first = seen["stdout"].splitlines()[0]
    assert "MnistDeepCNN on 180 training images, 20 validation images" in first
    assert "RMSprop lr 0.001, scheduler plateau on val_accuracy, augmentation on (zoom 10%, each axis)" in first
    history = json.loads((tmp_path / "history.json").read_text())
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy"} <= set(history)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert (metrics["optimizer"], metrics["scheduler"], metrics["val_split"], metrics["zoom"],
            metrics["zoom_each_axis"]) == ("rmsprop", "plateau", 0.1, 0.1, True)
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_flags_override_the_deep_recipe(monkeypatch):
    seen = _train(monkeypatch, ["--model", "MnistDeepCNN", "--optimizer", "adam", "--lr", "2e-3",
                                "--scheduler", "plateau", "--val-split", "0", "--zoom", "0"])
    assert type(seen["optimizer"]) is optim.Adam and seen["optimizer"].param_groups[0]["lr"] == 2e-3
    assert seen["val_loader"] is None
    assert seen["plateau_metric"] == "train_accuracy"  # no validation split: the training accuracy
    assert seen["train_loader"].transform.scale is None


def test_the_zoom_of_each_axis_is_a_flag_both_ways(monkeypatch):
    seen = _train(monkeypatch, ["--model", "MnistDeepCNN", "--no-zoom-each-axis"])
    assert seen["train_loader"].transform.scale == (0.9, 1.1) and not seen["train_loader"].transform.scale_each_axis
    assert "augmentation on (zoom 10%)" in seen["stdout"]
    seen = _train(monkeypatch, ["--zoom", "0.2", "--zoom-each-axis"])
    assert seen["train_loader"].transform.scale == (0.8, 1.2) and seen["train_loader"].transform.scale_each_axis


def test_mnist_cnn_keeps_its_own_recipe(monkeypatch):
    seen = _train(monkeypatch, ["--no-augment"])
    assert type(seen["optimizer"]) is optim.Adam
    assert type(seen["scheduler"]) is optim.CosineAnnealingLR and seen["scheduler"].base_lrs == [1e-3]
    assert seen["val_loader"] is None
    assert seen["train_loader"].transform.scale is None


def test_a_checkpoint_keeps_the_recipe_it_was_trained_with(tmp_path, capsys):
    """--resume continues with the run's own recipe (RMSprop, zoom, validation split), not MnistCNN's defaults."""
    from minicnn.serialization import read_checkpoint_extra

    ckpt = tmp_path / "run" / "checkpoint.npz"
    assert cli.main(["train", "--model", "MnistDeepCNN", "--limit", "100", "--quiet", "--epochs", "1",
                     "--out", str(tmp_path / "run")]) == 0
    setup = read_checkpoint_extra(ckpt)["setup"]
    assert (setup["model"], setup["optimizer"], setup["scheduler"], setup["zoom"], setup["val_split"]) == \
        ("MnistDeepCNN", "rmsprop", "plateau", 0.1, 0.1)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--quiet", "--resume", str(ckpt), "--optimizer", "adam"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--optimizer adam: the run in" in err and "was set up with --optimizer rmsprop" in err
    assert setup["zoom_each_axis"] is True


def test_a_checkpoint_from_before_the_zoom_of_each_axis_resumes_as_it_was_trained(tmp_path, monkeypatch):
    """A setup without zoom_each_axis is a run that drew one zoom for both axes; --resume continues it so."""
    from minicnn import serialization

    assert cli.main(["train", "--model", "MnistDeepCNN", "--limit", "200", "--quiet", "--epochs", "1",
                     "--out", str(tmp_path / "run")]) == 0
    ckpt = tmp_path / "run" / "checkpoint.npz"
    real = serialization.read_checkpoint_extra

    def older(path):
        extra = real(path)
        del extra["setup"]["zoom_each_axis"]
        return extra

    monkeypatch.setattr(recipes, "read_checkpoint_extra", older)
    seen = _train(monkeypatch, ["--resume", str(ckpt)])  # (the run's own --epochs 1 and --limit 200)
    assert seen["train_loader"].transform.scale == (0.9, 1.1) and not seen["train_loader"].transform.scale_each_axis


@pytest.mark.parametrize("argv, message", [
    (["--zoom", "1.5"], "--zoom must be in [0, 1), got 1.5"),
    (["--resume", "missing.npz"], "--resume missing.npz: no checkpoint missing.npz"),
])
def test_bad_recipe_options_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--model", "MnistDeepCNN", *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_mnist_cnn_filters_and_units_set_its_widths():
    """The knobs minicnn tune turns: conv1 has `filters` channels, conv2 twice as many, fc1 `units`."""
    model = models.MnistCNN(filters=8, units=16, seed=0)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {"conv1.weight": (8, 1, 3, 3), "conv1.bias": (8,), "conv2.weight": (16, 8, 3, 3),
                      "conv2.bias": (16,), "fc1.weight": (16, 16 * 7 * 7), "fc1.bias": (16,),
                      "fc2.weight": (10, 16), "fc2.bias": (10,)}
    assert model(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)
    assert sum(p.size for p in models.MnistCNN(seed=0).parameters()) == 421_642  # the defaults: the documented one
