"""minicnn baselines end to end on a small slice: each classifier's times and accuracy, in JSON and CSV."""
import csv
import json

import numpy as np
import pytest

from minicnn import baselines, cli
from minicnn.data import load_mnist

sklearn = pytest.importorskip("sklearn", reason='minicnn baselines needs scikit-learn: pip install -e ".[baselines]"')


def test_pixels_are_784_numbers_in_0_1():
    images, _ = load_mnist("test")
    x = baselines.pixels(images[:5])
    assert x.shape == (5, 784) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(x[2].reshape(28, 28) * 255, images[2])


def test_baselines_fit_score_and_write_every_classifier(tmp_path, capsys):
    assert cli.main(["baselines", "--limit", "1000", "--test-limit", "300", "--jobs", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "baselines.json").read_text())
    assert [r["method"] for r in report["results"]] == ["knn", "forest", "svm"]
    assert report["pending"] == [] and report["train_samples"] == 1000 and report["test_samples"] == 300
    assert report["versions"]["scikit-learn"] == sklearn.__version__
    images, labels = load_mnist("train")
    test_images, test_labels = load_mnist("test")
    for r in report["results"]:
        assert r["fit_seconds"] >= 0 and r["predict_seconds"] > 0
        assert 0.8 < r["test_accuracy"] <= 1.0, r  # 1,000 images already get every method past 80%
        # The accuracy is the fraction of the 300 test images the same classifier gets right.
        clf = baselines.make_classifier(r["method"], seed=0, jobs=1).fit(baselines.pixels(images[:1000]), labels[:1000])
        assert r["test_accuracy"] == np.mean(clf.predict(baselines.pixels(test_images[:300])) == test_labels[:300])
    assert report["results"][2]["params"]["C"] == 5.0 and report["results"][2]["params"]["kernel"] == "rbf"
    with open(tmp_path / "baselines.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["knn", "forest", "svm"]
    assert [float(r["test_accuracy"]) for r in rows] == [r["test_accuracy"] for r in report["results"]]
    out = capsys.readouterr().out
    assert "| RBF SVM (C=5, gamma=0.05) | 1,000 |" in out


def test_a_failed_classifier_keeps_the_figures_of_those_before(tmp_path, monkeypatch):
    real = baselines.fit_and_score

    def failing(method, *args, **kwargs):
        if method == "svm":
            raise MemoryError("no room for the kernel matrix")
        return real(method, *args, **kwargs)

    monkeypatch.setattr(baselines, "fit_and_score", failing)
    with pytest.raises(MemoryError):
        cli.main(["baselines", "--limit", "200", "--test-limit", "50", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "baselines.json").read_text())
    assert [r["method"] for r in report["results"]] == ["knn", "forest"] and report["pending"] == ["svm"]
    assert "finished" not in report


@pytest.mark.parametrize("argv, message", [
    (["--limit", "0"], "--limit must be positive, got 0"),
    (["--jobs", "0"], "--jobs must be a positive number"),
    (["--methods", "tree"], "invalid choice: 'tree'"),
])
def test_bad_options_are_usage_errors(tmp_path, argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["baselines", "--out", str(tmp_path), *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err
