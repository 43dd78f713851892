"""``minicnn compare``: the CNNs and the classical baselines in one table and one plot.

For each weights file the network is scored on the test images (as
``minicnn evaluate`` scores it) and its training time is the sum of the
per-epoch seconds in its history:

    training_seconds = sum(history["seconds"])      (validation passes included)

read from the ``history.json`` that ``minicnn train --out`` leaves beside
the weights, or from the history inside a ``checkpoint.npz`` that ``train --out`` keeps.  For each
baseline of a ``minicnn baselines`` JSON, the training time is its fit
time.  The plot puts test accuracy against training time on a log scale:
up and to the left is better.

``--out DIR`` receives ``comparison.md`` (the table), ``comparison.json``
and ``comparison.png``, replaced together.

The command's options and checks are minicnn/commands/compare.py.

Docs: docs/comparisons.md
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


def _history(weights: Path, model) -> tuple[dict | None, str]:
    """The training history of ``weights`` and where it came from: the checkpoint itself, or history.json beside it."""
    from minicnn.serialization import is_checkpoint, load_checkpoint

    if is_checkpoint(weights):
        return load_checkpoint(weights, model).get("history"), str(weights)
    beside = weights.parent / "history.json"
    if not beside.is_file():
        return None, str(beside)
    try:
        return json.loads(beside.read_text(encoding="utf-8")), str(beside)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{beside}: {exc}; expected the history.json that train --out writes") from None


def _training_seconds(history, source: str) -> float:
    seconds = history.get("seconds") if isinstance(history, dict) else None
    if not (isinstance(seconds, list) and seconds and all(isinstance(s, (int, float)) for s in seconds)):
        raise ValueError(f"{source}: no per-epoch 'seconds' column; expected the history train --out writes")
    return float(sum(seconds))


def cnn_row(weights: Path, loader) -> dict:
    """Score one weights file on ``loader``; its row of the comparison."""
    from minicnn import nn
    from minicnn.inference import model_for_weights
    from minicnn.training import evaluate

    model = model_for_weights(weights)
    history, source = _history(weights, model)
    if history is None:
        raise ValueError(f"{weights}: no history.json beside it ({source}), so no training time; pass the "
                         f"model.npz of a train --out folder or its checkpoint.npz")
    seconds = _training_seconds(history, source)
    metrics_file = weights.parent / "metrics.json"
    metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else {}
    t0 = time.perf_counter()
    result = evaluate(model, loader, nn.NLLLoss())
    predict_seconds = time.perf_counter() - t0
    epochs = len(history["seconds"])
    return {"name": f"{type(model).__name__} ({epochs} epoch{'s' * (epochs != 1)})", "kind": "cnn",
            "source": str(weights), "train_samples": metrics.get("train_samples"),
            "training_seconds": seconds, "predict_seconds": predict_seconds,
            "test_samples": result["samples"], "test_accuracy": result["accuracy"],
            "parameters": int(sum(p.size for p in model.parameters()))}


# What each result of a baselines.json holds: key -> (test of its value, what it must be).
_BASELINE_FIELDS = {
    "name": (lambda v: isinstance(v, str), "a string"),
    "train_samples": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a count"),
    "test_samples": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a count above 0"),
    "fit_seconds": (lambda v: _is_number(v) and v >= 0, "a number of seconds"),
    "predict_seconds": (lambda v: _is_number(v) and v >= 0, "a number of seconds"),
    "test_accuracy": (lambda v: _is_number(v) and 0 <= v <= 1, "a number from 0 to 1"),
}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def baseline_rows(path: Path) -> list[dict]:
    """The rows of one ``baselines.json``; a ``ValueError`` naming the file and what in it is not as
    ``minicnn baselines`` writes it."""
    expected = "expected the baselines.json that minicnn baselines writes"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # not UTF-8, not JSON
        raise ValueError(f"{path}: not JSON ({exc}); {expected}") from None
    if not isinstance(report, dict):
        kind = {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(report), "null")
        raise ValueError(f"{path}: holds a JSON {kind}, not an object with a list of 'results'; {expected}")
    if not isinstance(report.get("results"), list):
        raise ValueError(f"{path}: has no list 'results'; {expected}")
    if not report["results"]:
        raise ValueError(f"{path}: its 'results' are empty: no baseline to compare; {expected}")
    for i, result in enumerate(report["results"]):
        if not isinstance(result, dict):
            raise ValueError(f"{path}: results[{i}] is not an object; {expected}")
        for key, (test, wanted) in _BASELINE_FIELDS.items():
            if key not in result:
                raise ValueError(f"{path}: results[{i}] has no '{key}'; {expected}")
            if not test(result[key]):
                raise ValueError(f"{path}: results[{i}].{key} is {json.dumps(result[key])[:40]}, not {wanted}; "
                                 f"{expected}")
    return [{"name": r["name"], "kind": "classical", "source": str(path), "train_samples": r["train_samples"],
             "training_seconds": float(r["fit_seconds"]), "predict_seconds": float(r["predict_seconds"]),
             "test_samples": r["test_samples"], "test_accuracy": float(r["test_accuracy"])}
            for r in report["results"]]


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def format_table(rows: list[dict]) -> str:
    """The rows as a Markdown table, best test accuracy first."""
    lines = ["| model | training images | training time | test-set prediction | test accuracy |",
             "|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -r["test_accuracy"]):
        images = "" if r["train_samples"] is None else f"{r['train_samples']:,}"
        lines.append(f"| {r['name']} | {images} | {_duration(r['training_seconds'])} | "
                     f"{_duration(r['predict_seconds'])} | {r['test_accuracy']:.2%} ({r['test_samples']:,}) |")
    return "\n".join(lines)


def plot_comparison(rows: list[dict], path=None):
    """Test accuracy against training time (log scale), CNNs and classical methods with their own markers."""
    from matplotlib.ticker import PercentFormatter

    from minicnn.plots import finish_figure, new_figure

    fig = new_figure(8, 5)
    ax = fig.subplots()
    for kind, style, label in (("cnn", dict(marker="o", color="C0"), "CNN (minicnn)"),
                               ("classical", dict(marker="s", color="C1"), "classical, raw pixels (scikit-learn)")):
        points = [r for r in rows if r["kind"] == kind]
        if not points:
            continue
        ax.plot([r["training_seconds"] for r in points], [r["test_accuracy"] for r in points], linestyle="none",
                markersize=8, label=label, **style)
    accs = [r["test_accuracy"] for r in rows]
    span = max(max(accs) - min(accs), 0.01)
    placed = []  # (log10 seconds, accuracy) of the points labelled above themselves
    for r in sorted(rows, key=lambda r: -r["test_accuracy"]):
        x, y = np.log10(max(r["training_seconds"], 1e-6)), r["test_accuracy"]
        crowded = any(abs(x - px) < 0.6 and abs(y - py) < 0.06 * span for px, py in placed)
        if not crowded:
            placed.append((x, y))
        ax.annotate(r["name"], (r["training_seconds"], y), textcoords="offset points", fontsize=9,
                    xytext=(6, -14) if crowded else (6, 6))  # a close neighbour's label above: this one below
    ax.set_xscale("log")
    lo, hi = min(r["training_seconds"] for r in rows), max(r["training_seconds"] for r in rows)
    ax.set_xlim(lo / 3, hi * 10)  # room for the labels to the right of the points
    pad = max(0.002, span * 0.15)
    ax.set_ylim(min(accs) - pad, min(1.0, max(accs) + pad))
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=1))
    ax.set_xlabel("training time (s, log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title("MNIST: test accuracy against training time")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return finish_figure(fig, path)
