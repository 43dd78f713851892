"""End to end: the example script trains the documented network on all 60,000 MNIST images."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import minicnn
from strategies import tiny_mnist

ROOT = Path(__file__).resolve().parents[1]


def _example():
    spec = importlib.util.spec_from_file_location("train_mnist", ROOT / "examples" / "train_mnist.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_one_epoch_on_full_mnist_reaches_98_5_percent(tmp_path):
    metrics = _example().main(["--epochs", "1", "--no-augment", "--quiet", "--out", str(tmp_path)])
    assert metrics["test_accuracy"] >= 0.985, metrics
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["test_accuracy"] == metrics["test_accuracy"] and written["epochs"] == 1
    assert written["backend"] == minicnn.get_backend().name and written["seconds"] > 0
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["epoch"] == [1] and len(history["train_loss"]) == 1
    # The saved weights load into a fresh model and give the same test accuracy.
    from minicnn.data import DataLoader, load_mnist, mnist_eval_transform
    from minicnn.training import evaluate

    model = minicnn.load(minicnn.models.MnistCNN(seed=123), tmp_path / "model.npz")
    images, labels = load_mnist("test")
    result = evaluate(model, DataLoader(images, labels, 1000, transform=mnist_eval_transform()))
    assert result["accuracy"] == pytest.approx(metrics["test_accuracy"])


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """640 training and 50 test images of noise, for the runs that check the script's options, not its accuracy."""
    return tiny_mnist(tmp_path_factory.mktemp("data") / "mnist", train=640, test=50)


def test_quick_run_with_limit_and_validation(tmp_path, capsys, small_data, monkeypatch):
    monkeypatch.setenv("MINICNN_DATA", str(small_data))
    metrics = _example().main(["--epochs", "1", "--limit", "640", "--val-split", "0.25", "--quiet",
                               "--no-augment", "--scheduler", "step", "--seed", "3"])
    out = capsys.readouterr().out
    assert "Epoch [1/1] Loss: " in out and "Val acc: " in out and "Test accuracy: " in out
    assert metrics["train_samples"] == 480
    assert 0.0 <= metrics["test_accuracy"] <= 1.0


def test_same_seed_same_run(tmp_path, small_data, monkeypatch):
    monkeypatch.setenv("MINICNN_DATA", str(small_data))
    args = ["--epochs", "1", "--limit", "256", "--quiet", "--batch-size", "32"]
    a = _example().main(args + ["--out", str(tmp_path / "a")])
    b = _example().main(args + ["--out", str(tmp_path / "b")])
    assert a["test_accuracy"] == b["test_accuracy"]
    with np.load(tmp_path / "a" / "model.npz") as wa, np.load(tmp_path / "b" / "model.npz") as wb:
        assert all(np.array_equal(wa[k], wb[k]) for k in wa.files)


@pytest.mark.parametrize("args, message", [
    (["--epochs", "-1"], "--epochs must be non-negative"),
    (["--batch-size", "0"], "--batch-size must be positive"),
    (["--val-split", "1.5"], "--val-split must be in"),
    (["--model", "LeNet"], "invalid choice"),
])
def test_bad_arguments_get_usage_errors(args, message, capsys):
    with pytest.raises(SystemExit) as info:
        _example().main(args)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
