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

Docs: docs/comparisons.md
"""
from __future__ import annotations

import argparse
import platform
import time
from datetime import datetime, timezone

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


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                   help="the classifiers to run (default: all, in the order knn forest svm)")
    p.add_argument("--limit", type=int, default=None, help="fit on the first N training images only")
    p.add_argument("--test-limit", type=int, default=None,
                   help="score on the first N test images only (default: all 10,000)")
    p.add_argument("--jobs", type=int, default=-1,
                   help="processes for kNN and the forest, as scikit-learn's n_jobs (default -1: all cores)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random forest (default 0)")
    p.add_argument("--data-dir", default=None, help="folder of MNIST-layout IDX files (default: bundled MNIST)")
    p.add_argument("--out", metavar="DIR", required=True, help="folder for baselines.json and baselines.csv")
    return p


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


def _jsonable(value):
    """scikit-learn's get_params() as JSON: numbers, strings, None; anything else by its repr."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)


def run_with_args(args, parser) -> dict:
    """The ``minicnn baselines`` command: fit, score, print and write each classifier in turn."""
    from minicnn.bench import machine_description
    from minicnn.paths import output_folder
    from minicnn.data import load_mnist
    from minicnn.extras import require
    from minicnn.run_folder import write_together
    from minicnn.serialization import write_csv_atomic, write_json_atomic

    for option, value in (("--limit", args.limit), ("--test-limit", args.test_limit)):
        if value is not None and value < 1:
            parser.error(f"{option} must be positive, got {value}")
    if args.jobs == 0:
        parser.error("--jobs must be a positive number of processes or negative (-1: all cores), got 0")
    sklearn = require(parser, "sklearn")
    out = output_folder(parser, "--out", args.out)

    images, labels = load_mnist("train", root=args.data_dir)
    test_images, test_labels = load_mnist("test", root=args.data_dir)
    x_train, y_train = pixels(images[:args.limit]), np.asarray(labels[:args.limit])
    x_test, y_test = pixels(test_images[:args.test_limit]), np.asarray(test_labels[:args.test_limit])
    methods = [m for m in METHODS if m in args.methods]
    versions = {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__}
    report = {"machine": machine_description(), "versions": versions, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "train_samples": int(len(x_train)), "test_samples": int(len(x_test)), "results": [],
              "pending": list(methods)}
    print(f"minicnn baselines: {', '.join(methods)} on {len(x_train):,} training images (784 raw pixels in "
          f"[0, 1]), scored on {len(x_test):,} test images; {report['machine']}")

    def write(folder):
        write_json_atomic(folder / "baselines.json", report)
        write_csv_atomic(folder / "baselines.csv", report["results"], CSV_COLUMNS)
        return ["baselines.json", "baselines.csv"]

    for method in methods:
        print(f"{METHODS[method][0]}: fitting...", flush=True)
        result = fit_and_score(method, x_train, y_train, x_test, y_test, seed=args.seed, jobs=args.jobs)
        result["params"] = {k: _jsonable(v) for k, v in result["params"].items()}
        report["results"].append(result)
        report["pending"].remove(method)
        print(f"{result['name']}: fit {result['fit_seconds']:.1f}s, predict {result['predict_seconds']:.1f}s, "
              f"test accuracy {result['test_accuracy']:.4f}", flush=True)
        write_together(out, write)
    report["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_together(out, write)
    print()
    print(format_table(report["results"]))
    print(f"\nWrote baselines.json, baselines.csv to {out}")
    return report
