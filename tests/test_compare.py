"""minicnn compare end to end: CNN weights (train --out folders and checkpoints) and baselines in one table and plot."""
import contextlib
import io
import json

import pytest
from PIL import Image

from minicnn import cli


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A train --out folder, a checkpoint of another run, and a baselines.json."""
    root = tmp_path_factory.mktemp("runs")
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["train", "--epochs", "1", "--limit", "300", "--no-augment", "--quiet",
                         "--out", str(root / "cnn")]) == 0
        assert cli.main(["train", "--epochs", "2", "--limit", "200", "--no-augment", "--quiet",
                         "--out", str(root / "ckpt")]) == 0
    baselines = {"machine": "test", "train_samples": 1000, "test_samples": 10000, "pending": [], "results": [
        {"method": "knn", "name": "k-nearest neighbours (k=3)", "train_samples": 1000, "test_samples": 10000,
         "fit_seconds": 0.01, "predict_seconds": 2.5, "test_accuracy": 0.88},
        {"method": "svm", "name": "RBF SVM (C=5, gamma=0.05)", "train_samples": 1000, "test_samples": 10000,
         "fit_seconds": 1.5, "predict_seconds": 3.0, "test_accuracy": 0.91}]}
    (root / "baselines.json").write_text(json.dumps(baselines))
    return root


def test_compare_writes_one_table_and_one_plot(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert cli.main(["compare", str(runs / "cnn" / "model.npz"), str(runs / "ckpt" / "checkpoint.npz"),
                     "--baselines", str(runs / "baselines.json"), "--limit", "500", "--out", str(out)]) == 0
    report = json.loads((out / "comparison.json").read_text())
    rows = {r["name"]: r for r in report["rows"]}
    assert list(rows) == ["MnistCNN (1 epoch)", "MnistCNN (2 epochs)", "k-nearest neighbours (k=3)",
                          "RBF SVM (C=5, gamma=0.05)"]
    history = json.loads((runs / "cnn" / "history.json").read_text())
    metrics = json.loads((runs / "cnn" / "metrics.json").read_text())
    cnn = rows["MnistCNN (1 epoch)"]
    assert cnn["training_seconds"] == pytest.approx(sum(history["seconds"]))  # from the history beside the weights
    assert cnn["train_samples"] == 300 and cnn["test_samples"] == 500 and cnn["kind"] == "cnn"
    assert 0.2 < cnn["test_accuracy"] <= 1.0  # one epoch on 300 images: better than chance (10%), far from done
    assert cli.main(["evaluate", str(runs / "cnn" / "model.npz"), "--limit", "500"]) == 0
    assert f"Test accuracy: {cnn['test_accuracy']:.4f}" in capsys.readouterr().out  # scored as evaluate scores
    assert metrics["epochs"] == 1
    ckpt = rows["MnistCNN (2 epochs)"]
    assert ckpt["training_seconds"] > 0 and ckpt["train_samples"] == 200  # its history; metrics.json beside it
    svm = rows["RBF SVM (C=5, gamma=0.05)"]
    assert (svm["training_seconds"], svm["test_accuracy"], svm["kind"]) == (1.5, 0.91, "classical")
    table = (out / "comparison.md").read_text()
    lines = table.splitlines()
    assert lines[0].startswith("| model | training images | training time")
    accuracies = [float(line.rsplit("|", 2)[1].split("%")[0]) for line in lines[2:6]]
    assert accuracies == sorted(accuracies, reverse=True)  # best first
    assert "| RBF SVM (C=5, gamma=0.05) | 1,000 | 1.5 s | 3.0 s | 91.00% (10,000) |" in table
    with Image.open(out / "comparison.png") as png:
        assert png.size == (800, 500)


def test_baselines_alone_need_no_test_images(runs, tmp_path):
    assert cli.main(["compare", "--baselines", str(runs / "baselines.json"), "--out", str(tmp_path)]) == 0
    assert len(json.loads((tmp_path / "comparison.json").read_text())["rows"]) == 2


def test_weights_without_a_history_are_refused_by_name(runs, tmp_path, capsys):
    import minicnn
    from minicnn import models

    bare = minicnn.save(models.MnistCNN(seed=0), tmp_path / "bare.npz")
    assert cli.main(["compare", str(bare), "--out", str(tmp_path / "cmp")]) == 1
    err = capsys.readouterr().err
    assert f"{bare}: no history.json beside it" in err and err.count("\n") == 1
    assert not (tmp_path / "cmp" / "comparison.md").exists()


EXPECTED = "; expected the baselines.json that minicnn baselines writes"
GOOD = {"name": "kNN", "train_samples": 600, "test_samples": 100, "fit_seconds": 0.1, "predict_seconds": 0.2,
        "test_accuracy": 0.9}


@pytest.mark.parametrize("content, message", [
    ("{not json", "not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))" + EXPECTED),
    ("[]", "holds a JSON list, not an object with a list of 'results'" + EXPECTED),
    ("null", "holds a JSON null, not an object with a list of 'results'" + EXPECTED),
    ('{"results": {}}', "has no list 'results'" + EXPECTED),
    ('{"results": []}', "its 'results' are empty: no baseline to compare" + EXPECTED),
    ('{"results": [7]}', "results[0] is not an object" + EXPECTED),
    ('{"results": [{"name": "x"}]}', "results[0] has no 'train_samples'" + EXPECTED),
    (json.dumps({"results": [GOOD, {**GOOD, "test_accuracy": "high"}]}),
     'results[1].test_accuracy is "high", not a number from 0 to 1' + EXPECTED),
    (json.dumps({"results": [{**GOOD, "fit_seconds": None}]}), "results[0].fit_seconds is null, not a number of "
                                                               "seconds" + EXPECTED),
], ids=["not-json", "list", "null", "results-not-a-list", "no-results", "result-not-an-object", "missing-key",
        "accuracy-a-string", "seconds-null"])
def test_a_bad_baselines_file_is_named(tmp_path, capsys, content, message):
    (tmp_path / "baselines.json").write_text(content)
    assert cli.main(["compare", "--baselines", str(tmp_path / "baselines.json"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err == f"minicnn compare: error: {tmp_path / 'baselines.json'}: {message}\n"


@pytest.mark.parametrize("argv, message", [
    ([], "nothing to compare"),
    (["missing.npz"], "missing.npz: no such file"),
])
def test_usage_errors(tmp_path, argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", *argv, "--out", str(tmp_path)])
    assert exc.value.code == 2 and message in capsys.readouterr().err
