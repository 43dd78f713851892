"""``minicnn evaluate WEIGHTS [--out DIR]``: test accuracy, classification report and plots of saved weights.

With ``--out``, besides the reports, the plots: a grid of predictions, the most confident mistakes and,
for the six most confident, why (saliency and Grad-CAM of the digit read and of the true one,
:func:`minicnn.plots.plot_explanations`), the conv1 filters and the feature maps of one digit.
"""
from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import numpy as np

import minicnn
from minicnn.commands.common import add_model_arguments, load_model, warn
from minicnn.paths import output_folder, path_argument
from minicnn.reports import TRAINING_REPORTS

HELP = "test accuracy, classification report and plots of saved weights"

# The files evaluate --out writes (curves.png only when there is a history, removed when there is none).
EVALUATION_FILES = (*TRAINING_REPORTS, "predictions.png", "misclassified.png", "explanations.png", "filters.png",
                    "feature_maps.png")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--out", metavar="DIR", type=path_argument,
                   help="folder for the plots and the report, replaced together; the training curves come from the "
                        "history.json beside the weights, when there is one")
    p.add_argument("--overwrite", action="store_true",
                   help="allow --out to be the weights' own folder, replacing the training run's reports "
                        f"({', '.join(TRAINING_REPORTS)}) there; without it, evaluate refuses")
    p.add_argument("--data-dir", default=None, type=path_argument,
                   help="folder of MNIST-layout IDX files (default: MINICNN_DATA, else the bundled MNIST)")
    p.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size (default 1000)")
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N test images only")


def _read_history(parser, path: Path) -> dict | None:
    """The per-epoch columns of the history.json that ``train --out`` wrote, or None (with a warning when unusable)."""
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, or not JSON
        problem = str(exc)
    else:
        # History.to_dict(): {"epoch": [1, 2], "train_loss": [...], ...}, lists of one length of numbers or None.
        columns = list(history.values()) if isinstance(history, dict) else []
        lists = columns and all(isinstance(c, list) and len(c) == len(columns[0]) for c in columns)
        if lists and len(columns[0]) > 0 and all(v is None or isinstance(v, (int, float)) for c in columns for v in c):
            return history
        problem = 'expected per-epoch columns of numbers, {"train_loss": [...], ...}, as train --out writes them'
    warn(parser, f"{path}: {problem}; no training curves")
    return None


def run(args, parser: argparse.ArgumentParser) -> None:
    """Score the weights on the test images and print the report; with ``--out``, write the plots and reports."""
    from minicnn import metrics, plots
    from minicnn.data import DataLoader, load_mnist, mnist_eval_transform
    from minicnn.reports import save_reports
    from minicnn.run_folder import claim, write_together
    from minicnn.training import evaluate

    for option, value in (("--batch-size", args.batch_size), ("--limit", args.limit)):
        if value is not None and value < 1:
            parser.error(f"{option} must be positive, got {value}")
    model, say_fused = load_model(args)
    out = None
    if args.out:
        same_folder = args.out.resolve() == args.weights.resolve().parent
        here = [n for n in TRAINING_REPORTS if (args.out / n).exists()] if same_folder else []
        if here and not args.overwrite:
            parser.error(f"--out {args.out} holds the training reports of {args.weights} ({', '.join(here)}), "
                         f"which this evaluation would replace; choose another folder, such as "
                         f"{args.out / 'report'}, or add --overwrite")
        out = output_folder(parser, "--out", args.out, EVALUATION_FILES)
    say_fused()
    with claim(out, "minicnn evaluate") if out else contextlib.nullcontext() as leftovers:
        if leftovers:
            print(f"Removed what an interrupted run left in {out}: {', '.join(leftovers)}")
        images, labels = load_mnist("test", root=args.data_dir)
        if args.limit:
            images, labels = images[:args.limit], labels[:args.limit]
        result = evaluate(model, DataLoader(images, labels, args.batch_size, transform=mnist_eval_transform()),
                          minicnn.nn.NLLLoss(), return_predictions=True)
        y_true, y_pred = result["targets"], result["predictions"]
        print(f"Test accuracy: {result['accuracy']:.4f} ({result['accuracy'] * 100:.2f}%) on "
              f"{result['samples']:,} images, test loss {result['loss']:.4f}\n")
        print(metrics.classification_report(y_true, y_pred, target_names=[str(d) for d in range(10)]))
        if not out:
            return
        history_file = args.weights.parent / "history.json"
        history = _read_history(parser, history_file) if history_file.is_file() else None
        probs = np.exp(result["outputs"])

        def write(folder: Path) -> list[str]:
            written = save_reports(folder, history, y_true, y_pred)
            plots.plot_predictions(images[:25], y_true[:25], y_pred[:25], probs[:25], path=folder / "predictions.png")
            plots.plot_misclassified(images, y_true, y_pred, probs, path=folder / "misclassified.png")
            plots.plot_explanations(model, images, y_true, y_pred, probs, path=folder / "explanations.png")
            plots.plot_filters(model, path=folder / "filters.png")
            plots.plot_feature_maps(model, images[0], path=folder / "feature_maps.png")
            return written + ["predictions.png", "misclassified.png", "explanations.png", "filters.png",
                              "feature_maps.png"]

        stale_curves = history is None and (out / "curves.png").exists()
        written = write_together(out, write, remove=EVALUATION_FILES)
        print()
        if not history_file.is_file():
            print(f"No history.json beside {args.weights}: no training curves"
                  + (f" (removed the older curves.png from {out})" if stale_curves else ""))
        elif stale_curves:
            print(f"Removed the older curves.png from {out}")
        print(f"Wrote {', '.join(written)} to {out}")
