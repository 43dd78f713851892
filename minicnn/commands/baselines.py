"""``minicnn baselines --out DIR``: the classical classifiers of :mod:`minicnn.baselines` on the raw pixels.

Each classifier is fitted, scored, printed and written in turn (``baselines.json``
and ``baselines.csv``, replaced together after each one, so a long run keeps the
figures it has).  Needs the ``baselines`` extra (scikit-learn).

Docs: docs/comparisons.md
"""
from __future__ import annotations

import argparse
import platform
from datetime import datetime, timezone

import numpy as np

from minicnn import baselines

HELP = "k-nearest neighbours, an RBF SVM and a random forest on the raw pixels (needs the baselines extra)"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--methods", nargs="+", choices=list(baselines.METHODS), default=list(baselines.METHODS),
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


def _jsonable(value):
    """scikit-learn's get_params() as JSON: numbers, strings, None; anything else by its repr."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)


def run(args, parser: argparse.ArgumentParser) -> dict:
    """The ``minicnn baselines`` command: fit, score, print and write each classifier in turn."""
    from minicnn.bench import machine_description
    from minicnn.data import load_mnist
    from minicnn.extras import require
    from minicnn.paths import output_folder
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
    x_train, y_train = baselines.pixels(images[:args.limit]), np.asarray(labels[:args.limit])
    x_test, y_test = baselines.pixels(test_images[:args.test_limit]), np.asarray(test_labels[:args.test_limit])
    methods = [m for m in baselines.METHODS if m in args.methods]
    versions = {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__}
    report = {"machine": machine_description(), "versions": versions, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "train_samples": int(len(x_train)), "test_samples": int(len(x_test)), "results": [],
              "pending": list(methods)}
    print(f"minicnn baselines: {', '.join(methods)} on {len(x_train):,} training images (784 raw pixels in "
          f"[0, 1]), scored on {len(x_test):,} test images; {report['machine']}")

    def write(folder):
        write_json_atomic(folder / "baselines.json", report)
        write_csv_atomic(folder / "baselines.csv", report["results"], baselines.CSV_COLUMNS)
        return ["baselines.json", "baselines.csv"]

    for method in methods:
        print(f"{baselines.METHODS[method][0]}: fitting...", flush=True)
        result = baselines.fit_and_score(method, x_train, y_train, x_test, y_test, seed=args.seed,
                                         jobs=args.jobs)
        result["params"] = {k: _jsonable(v) for k, v in result["params"].items()}
        report["results"].append(result)
        report["pending"].remove(method)
        print(f"{result['name']}: fit {result['fit_seconds']:.1f}s, predict {result['predict_seconds']:.1f}s, "
              f"test accuracy {result['test_accuracy']:.4f}", flush=True)
        write_together(out, write)
    report["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_together(out, write)
    print()
    print(baselines.format_table(report["results"]))
    print(f"\nWrote baselines.json, baselines.csv to {out}")
    return report
