"""``minicnn baselines``: classical classifiers on the raw pixels, the yardstick for the CNNs.

Each image becomes one row of 784 numbers, its pixels scaled to [0, 1]
(``x = image.reshape(N, 784) / 255``); no convolution, no augmentation.
With scikit-learn (``pip install -e ".[baselines]"``) three classifiers are
fitted on the training images and scored on the test images:

    knn      KNeighborsClassifier(n_neighbors=3): the majority label of the 3 training
             images nearest in Euclidean distance ||x - x_i||
    svm      SVC(kernel="rbf", C=5, gamma=0.05): k(x, x') = exp(-gamma ||x - x'||^2)
             (a 1 GB kernel cache: a kernel row of 60,000 images is 240 KB of float32,
             so scikit-learn's default 200 MB holds only about 850 of them)
    forest   RandomForestClassifier(n_estimators=100): a vote of 100 decision trees,
             each grown on a bootstrap sample

For each: fit seconds, predict seconds (wall clock, the whole test set at
once) and the test accuracy, printed as a table and written to ``--out DIR``
as ``baselines.json`` and ``baselines.csv`` (replaced together after each
classifier, so a long run keeps the figures it has).  ``minicnn compare``
reads the JSON.  The SVM is the slow one: on all 60,000 training images its
fit takes tens of minutes on a 2-core machine; ``--limit N`` fits on the
first N training images for a quick run.

The command's options and checks are minicnn/commands/baselines.py.

Docs: docs/comparisons.md
"""
from __future__ import annotations

import time

import numpy as np

#: The classifiers, in the order they run (fastest first): name, scikit-learn class, its arguments.
METHODS = {
    "knn": ("k-nearest neighbours (k=3)", "sklearn.neighbors.KNeighborsClassifier", dict(n_neighbors=3)),
    "forest": ("random forest (100 trees)", "sklearn.ensemble.RandomForestClassifier", dict(n_estimators=100)),
    "svm": ("RBF SVM (C=5, gamma=0.05)", "sklearn.svm.SVC", dict(kernel="rbf", C=5.0, gamma=0.05,
                                                                      cache_size=1000)),
}

CSV_COLUMNS = ("method", "name", "train_samples", "test_samples", "fit_seconds", "predict_seconds",
               "test_accuracy")


def pixels(images) -> np.ndarray:
    """(N, 28, 28) uint8 images as (N, 784) float32 rows in [0, 1]."""
    images = np.asarray(images)
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255)


def make_classifier(method: str, seed: int, jobs: int):
    """The scikit-learn estimator ``method`` names, built with the arguments of :data:`METHODS`."""
    import importlib

    _, path, kwargs = METHODS[method]
    module, cls = path.rsplit(".", 1)
    kwargs = dict(kwargs)
    if method == "forest":
        kwargs.update(random_state=seed, n_jobs=jobs)
    elif method == "knn":
        kwargs.update(n_jobs=jobs)
    return getattr(importlib.import_module(module), cls)(**kwargs)


def fit_and_score(method: str, x_train, y_train, x_test, y_test, seed: int = 0, jobs: int = -1) -> dict:
    """Fit one classifier, predict the test rows; seconds of each and the test accuracy."""
    clf = make_classifier(method, seed, jobs)
    t0 = time.perf_counter()
    clf.fit(x_train, y_train)
    fit_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    predicted = clf.predict(x_test)
    predict_seconds = time.perf_counter() - t0
    return {"method": method, "name": METHODS[method][0], "params": clf.get_params(),
            "train_samples": int(len(x_train)), "test_samples": int(len(x_test)),
            "fit_seconds": fit_seconds, "predict_seconds": predict_seconds,
            "test_accuracy": float(np.mean(predicted == y_test))}


def format_table(results: list[dict]) -> str:
    """The results as a Markdown table, one row per classifier."""
    lines = ["| method | training images | fit | predict (test set) | test accuracy |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['name']} | {r['train_samples']:,} | {r['fit_seconds']:.1f} s | "
                     f"{r['predict_seconds']:.1f} s | {r['test_accuracy']:.2%} |")
    return "\n".join(lines)
