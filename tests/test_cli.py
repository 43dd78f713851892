"""The minicnn command end to end on a small model."""
import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import minicnn
from minicnn import cli, models
from minicnn.data import load_mnist


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Weights, history and metrics from a short `minicnn train` run."""
    out = tmp_path_factory.mktemp("run")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["train", "--epochs", "1", "--limit", "512", "--no-augment", "--quiet", "--out", str(out)]) == 0
    (out / "stdout.txt").write_text(printed.getvalue())
    return out


def test_train_prints_its_setup_first(trained):
    first = (trained / "stdout.txt").read_text().splitlines()[0]
    assert first.startswith(f"minicnn {minicnn.__version__}: MnistCNN on 512 training images, backend ")
    assert ", 1 epoch, batch 64, Adam lr 0.001, scheduler cosine, augmentation off" in first


def test_train_writes_weights_history_metrics_and_reports(trained):
    for name in ("model.npz", "history.json", "metrics.json", "curves.png", "confusion_matrix.png",
                 "classification_report.txt"):
        assert (trained / name).stat().st_size > 0, name
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and 0.5 < metrics["test_accuracy"] <= 1.0
    assert "macro avg" in (trained / "classification_report.txt").read_text()


def test_evaluate_prints_accuracy_and_report_and_saves_plots(trained, tmp_path, capsys):
    assert cli.main(["evaluate", str(trained / "model.npz"), "--out", str(tmp_path), "--limit", "1000"]) == 0
    out = capsys.readouterr().out
    assert "on 1,000 images" in out
    assert "precision    recall  f1-score   support" in out
    for name in ("confusion_matrix.png", "curves.png", "predictions.png", "misclassified.png", "filters.png",
                 "feature_maps.png", "classification_report.txt"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_predict_reads_photographed_style_digits(trained, tmp_path, capsys):
    images, labels = load_mnist("test")
    files = []
    for i in range(3):  # dark ink on light paper, larger than 28x28, RGB
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(255 - images[i]).resize((140, 168)).convert("RGB").save(path)
        files.append(str(path))
    assert cli.main(["predict", str(trained / "model.npz"), *files, "--save-input", str(tmp_path / "seen")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for line, f in zip(lines, files):
        name, rest = line.rsplit(": ", 1)
        digit, prob = rest.split(" ")
        assert name == f and 0 <= int(digit) <= 9 and 0 < float(prob.strip("(%)")) <= 100
    assert len(list((tmp_path / "seen").glob("*_28x28.png"))) == 3


def test_evaluate_full_test_set_matches_training_metrics(trained, capsys):
    assert cli.main(["evaluate", str(trained / "model.npz")]) == 0
    expected = json.loads((trained / "metrics.json").read_text())["test_accuracy"]
    assert f"Test accuracy: {expected:.4f}" in capsys.readouterr().out


def test_summary_counts_parameters(capsys):
    assert cli.main(["summary"]) == 0
    assert "Total params: 421,642" in capsys.readouterr().out
    assert cli.main(["summary", "--model", "MnistBNCNN"]) == 0
    assert "bn1 (BatchNorm2d)" in capsys.readouterr().out


def test_missing_and_mismatched_weights_are_named(tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path / "nope.npz")]) == 1
    assert "no such weights file" in capsys.readouterr().err
    path = minicnn.save(models.MnistCNN(seed=0), tmp_path / "cnn.npz")
    assert cli.main(["evaluate", str(path), "--model", "MnistBNCNN", "--limit", "10"]) == 1
    err = capsys.readouterr().err
    assert "cnn.npz" in err and "missing keys: bn1.weight" in err and "Expected keys: conv1.weight" in err


def test_blank_image_is_a_clear_error(trained, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((50, 50), 255, np.uint8)).save(blank)
    assert cli.main(["predict", str(trained / "model.npz"), str(blank)]) == 1
    assert "blank.png" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["evaluate"], ["train", "--epochs", "x"], ["predict", "w.npz"], ["evaluate", "w.npz", "--limit", "0"],
                                  ["frobnicate"]])
def test_bad_arguments_get_usage(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage: minicnn" in capsys.readouterr().err


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "minicnn.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"minicnn {minicnn.__version__}"
