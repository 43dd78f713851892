"""The ``minicnn`` command: train, evaluate, predict, summary, bench.

    minicnn train [--epochs 5 ...]             the documented MNIST training (see minicnn/recipes.py)
    minicnn evaluate WEIGHTS [--out DIR]       test accuracy, classification report, plots
    minicnn predict WEIGHTS IMAGE [IMAGE ...]  the digit in each photo or scan, with its probability
    minicnn summary [--model MnistCNN]         layers, output shapes, parameter counts
    minicnn bench [...]                        the backend benchmarks (see minicnn/bench.py)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import minicnn
from minicnn import models


def _model_for(weights: Path, name: str | None):
    """A model of the named kind, or of the kind whose keys the weights file holds."""
    if name is None:
        from minicnn.serialization import _read_npz

        keys = set(_read_npz(weights))
        name = "MnistBNCNN" if any(k.startswith(("bn1.", "model/bn1.")) for k in keys) else "MnistCNN"
    return minicnn.load(models.get_model(name, seed=0), weights)


def _add_common(p, weights=True):
    if weights:
        p.add_argument("weights", type=Path, help="a .npz weights file (from --out of training, or minicnn.save)")
    p.add_argument("--model", choices=sorted(models.MODELS), default=None,
                   help="the network the weights belong to (default: read from the file's keys)")
    p.add_argument("--backend", choices=["numpy", "numba", "cupy"], default=None, help="array backend")


def cmd_train(args, parser):
    from minicnn import recipes

    recipes.run(parser, args)


def cmd_evaluate(args, parser):
    from minicnn import metrics, plots
    from minicnn.data import DataLoader, load_mnist, mnist_eval_transform
    from minicnn.recipes import save_reports
    from minicnn.training import evaluate

    model = _model_for(args.weights, args.model)
    images, labels = load_mnist("test", root=args.data_dir)
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    result = evaluate(model, DataLoader(images, labels, args.batch_size, transform=mnist_eval_transform()),
                      minicnn.nn.NLLLoss(), return_predictions=True)
    y_true, y_pred = result["targets"], result["predictions"]
    print(f"Test accuracy: {result['accuracy']:.4f} ({result['accuracy'] * 100:.2f}%) on "
          f"{result['samples']:,} images, test loss {result['loss']:.4f}\n")
    print(metrics.classification_report(y_true, y_pred, target_names=[str(d) for d in range(10)]))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        history_file = args.weights.parent / "history.json"
        history = json.loads(history_file.read_text()) if history_file.is_file() else None
        save_reports(out, history, y_true, y_pred)
        probs = np.exp(result["outputs"])
        plots.plot_predictions(images[:25], y_true[:25], y_pred[:25], probs[:25], path=out / "predictions.png")
        plots.plot_misclassified(images, y_true, y_pred, probs, path=out / "misclassified.png")
        plots.plot_filters(model, path=out / "filters.png")
        plots.plot_feature_maps(model, images[0], path=out / "feature_maps.png")
        print(f"\nWrote curves, confusion matrix, report, predictions, misclassified, filters and feature maps "
              f"to {out}")


def cmd_predict(args, parser):
    from PIL import Image

    from minicnn.imaging import predict, preprocess_digit

    model = _model_for(args.weights, args.model)
    inputs, names = [], []
    for path in args.images:
        x, raw = preprocess_digit(path, return_raw=True)
        inputs.append(x)
        names.append(path)
        if args.save_input:
            folder = Path(args.save_input)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(raw).save(folder / f"{Path(path).stem}_28x28.png")
    digits, confidence = predict(model, np.stack(inputs))
    for name, d, p in zip(names, digits, confidence):
        print(f"{name}: {d} ({p * 100:.1f}%)")


def cmd_summary(args, parser):
    from minicnn.summary import summary

    print(summary(models.get_model(args.model or "MnistCNN", seed=0)))


def build_parser() -> argparse.ArgumentParser:
    from minicnn import bench, recipes

    parser = argparse.ArgumentParser(prog="minicnn", description="A CNN written by hand: train, evaluate, predict.")
    parser.add_argument("--version", action="version", version=f"minicnn {minicnn.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train on MNIST (the options of examples/train_mnist.py)")
    recipes.add_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test accuracy, classification report and plots of saved weights")
    _add_common(p)
    p.add_argument("--out", help="folder for the plots and the report")
    p.add_argument("--data-dir", default=None, help="folder of MNIST-layout IDX files (default: bundled MNIST)")
    p.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size (default 1000)")
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N test images only")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="read the digit in each image file")
    _add_common(p)
    p.add_argument("images", nargs="+", help="image files, one handwritten digit each")
    p.add_argument("--save-input", metavar="DIR", help="also save each preprocessed 28x28 input there")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("summary", help="layers, output shapes and parameter counts")
    p.add_argument("--model", choices=sorted(models.MODELS), default="MnistCNN")
    p.set_defaults(func=cmd_summary)

    bench_parser = sub.add_parser("bench", help="benchmark the backends (and PyTorch, when installed)",
                                  parents=[bench.build_parser()], add_help=False)
    bench_parser.set_defaults(func=lambda args, parser: bench.run_with_args(args, bench_parser))
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "backend", None):
        try:
            minicnn.set_backend(args.backend)
        except (ValueError, minicnn.BackendUnavailableError) as exc:
            parser.exit(2, f"minicnn: error: {exc}\n")
    for option in ("batch_size", "limit"):
        value = getattr(args, option, None)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be positive, got {value}")
    try:
        args.func(args, parser)
    except (ValueError, FileNotFoundError) as exc:  # bad files and inputs: a message, not a traceback
        print(f"minicnn {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
