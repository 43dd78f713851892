"""The ``minicnn`` command: train, evaluate, predict, serve, summary, trace, bench, tune, baselines, compare.

    minicnn train [--epochs 5 ...]             the documented MNIST training (see minicnn/recipes.py)
    minicnn evaluate WEIGHTS [--out DIR]       test accuracy, classification report, plots
    minicnn predict WEIGHTS IMAGE [IMAGE ...]  the digit in each photo or scan, with its probability
    minicnn serve WEIGHTS [--port 7860]        a web page to draw or upload a digit (see minicnn/web/)
    minicnn summary [--model MnistCNN]         layers, output shapes, parameter counts
    minicnn trace [--backend numba]            every module and kernel call of a training step and an
                                               inference batch (see minicnn/tracing.py)
    minicnn bench [...]                        the backend benchmarks (see minicnn/bench.py)
    minicnn tune [--trials 8 ...]              a hyperparameter search with Optuna (see minicnn/tune.py)
    minicnn baselines --out DIR                kNN, RBF SVM, random forest (see minicnn/baselines.py)
    minicnn compare WEIGHTS... --baselines JSON --out DIR   one table and one plot (minicnn/compare.py)

An error a user can cause ends in one line on stderr, ``minicnn COMMAND: error: ...``,
never in a traceback.  Exit status 2: a bad option, found before any long work (with the
usage line, as argparse does), or a backend that cannot load here (from ``--backend`` or
``MINICNN_BACKEND``).  Exit status 1: a problem found while working (a missing or corrupt
file, an image without a digit, a training run whose loss diverged).
``examples/train_mnist.py`` and ``benchmarks/bench_backends.py`` report errors through the
same :func:`run_command`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

import minicnn
from minicnn import models
from minicnn.inference import model_for_weights as _model_for
from minicnn.nn.fusion import fuse_for
from minicnn.paths import output_folder, path_argument
from minicnn.reports import TRAINING_REPORTS

# --- running a command --------------------------------------------------------------

def _select_backend(args) -> None:
    """Load the backend that ``--backend`` or ``MINICNN_BACKEND`` asks for now, before any work.  With the
    numba backend, one line on stderr says which thread policy it runs under (minicnn/threads.py), where
    stderr is a terminal: piped or captured, the output stays as it was."""
    if getattr(args, "backend", None):
        backend = minicnn.set_backend(args.backend)
    else:
        try:
            backend = minicnn.get_backend()
        except (ValueError, minicnn.BackendUnavailableError) as exc:
            # An unknown name (ValueError) too: either way the setting cannot be used here.
            setting = os.environ.get("MINICNN_BACKEND", "")
            raise minicnn.BackendUnavailableError(f"MINICNN_BACKEND={setting}: {exc}") from None
    if backend.name == "numba" and sys.stderr.isatty():
        prog = getattr(getattr(args, "command_parser", None), "prog", "minicnn")
        print(f"{prog}: {minicnn.threads.describe()}", file=sys.stderr)


def run_command(parser: argparse.ArgumentParser, args: argparse.Namespace, func) -> int:
    """Call ``func(args, parser)``; return its status (an int it returns; 0 otherwise), or print an error a
    user can cause as one line and return its status.

    ``parser.prog`` starts the line (``minicnn train: error: ...``).  A bad option is
    reported by ``parser.error`` inside ``func`` (exit status 2, with the usage); a backend
    that cannot load also exits with status 2.  Bad files and inputs (``ValueError``,
    which includes the package's data and checkpoint errors), a diverged training run
    and, as a last resort, any file that cannot be read or written (``OSError``) return 1; so does an
    output folder that another run holds.  Ctrl-C prints one line and returns 130.  Warnings are
    printed as one line each, ``minicnn COMMAND: warning: ...``.
    """
    from minicnn.run_folder import FolderInUseError
    from minicnn.training import TrainingDivergedError

    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *_, **__: _warn(parser, message)
        try:
            _select_backend(args)
            status = func(args, parser)
            return status if isinstance(status, int) else 0  # bench returns its report
        except minicnn.BackendUnavailableError as exc:
            parser.exit(2, f"{parser.prog}: error: {exc}\n")
        except (ValueError, TrainingDivergedError, FolderInUseError) as exc:
            return _error(parser, exc)
        except OSError as exc:
            return _error(parser, f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else exc)
        except KeyboardInterrupt as exc:
            # Ctrl-C: one line, with what the command kept (minicnn train says how to resume).
            print(f"{parser.prog}: interrupted{f' {exc}' if str(exc) else ''}", file=sys.stderr)
            return 130


def _error(parser, message) -> int:
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return 1


def _warn(parser, message) -> None:
    print(f"{parser.prog}: warning: {message}", file=sys.stderr)


# --- the commands ---------------------------------------------------------------------

def _add_common(p, weights=True):
    if weights:
        p.add_argument("weights", type=path_argument,
                       help="a .npz weights file (from --out of training, or minicnn.save)")
    p.add_argument("--model", choices=sorted(models.MODELS), default=None,
                   help="the network the weights belong to (default: read from the file's keys)")
    p.add_argument("--backend", choices=["numpy", "numba", "cupy"], default=None, help="array backend")
    if weights:
        from minicnn.recipes import add_fuse_argument

        add_fuse_argument(p)


def _run_model(args):
    """``(model, say)``: the model of ``args.weights``, fused where the backend has fused kernels (unless
    ``--no-fuse``), and ``say(file)``, which prints the line naming what was fused (if anything was)."""
    model, fused = fuse_for(_model_for(args.weights, args.model), minicnn.get_backend(), not args.no_fuse)
    return model, lambda file=None: fused and print(fused, file=file or sys.stdout, flush=True)


def cmd_train(args, parser):
    from minicnn import recipes

    recipes.run(parser, args)


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
    _warn(parser, f"{path}: {problem}; no training curves")
    return None


# The files evaluate --out writes (curves.png only when there is a history, removed when there is none).
EVALUATION_FILES = (*TRAINING_REPORTS, "predictions.png", "misclassified.png", "filters.png", "feature_maps.png")


def cmd_evaluate(args, parser):
    from minicnn import metrics, plots
    from minicnn.data import DataLoader, load_mnist, mnist_eval_transform
    from minicnn.reports import save_reports
    from minicnn.run_folder import claim, write_together
    from minicnn.training import evaluate

    for option, value in (("--batch-size", args.batch_size), ("--limit", args.limit)):
        if value is not None and value < 1:
            parser.error(f"{option} must be positive, got {value}")
    model, say_fused = _run_model(args)
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
    with claim(out, "minicnn evaluate") if out else contextlib.nullcontext():
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
            plots.plot_filters(model, path=folder / "filters.png")
            plots.plot_feature_maps(model, images[0], path=folder / "feature_maps.png")
            return written + ["predictions.png", "misclassified.png", "filters.png", "feature_maps.png"]

        stale_curves = history is None and (out / "curves.png").exists()
        written = write_together(out, write, remove=EVALUATION_FILES)
        print()
        if not history_file.is_file():
            print(f"No history.json beside {args.weights}: no training curves"
                  + (f" (removed the older curves.png from {out})" if stale_curves else ""))
        elif stale_curves:
            print(f"Removed the older curves.png from {out}")
        print(f"Wrote {', '.join(written)} to {out}")


def _input_name(path: str, taken: dict) -> str:
    """``digit_28x28.png`` for ``digit.png``, or ``digit_2_28x28.png``, ``digit_3_28x28.png``... if that is taken."""
    stem = Path(path).stem
    name, n = f"{stem}_28x28.png", 1
    while taken.get(name, path) != path:
        n += 1
        name = f"{stem}_{n}_28x28.png"
    taken[name] = path
    return name


def cmd_predict(args, parser) -> int:
    """Print each image's digit, or its error; status 1 when any image could not be read."""
    from PIL import Image

    from minicnn.imaging import preprocess_digit
    from minicnn.inference import predict
    from minicnn.serialization import write_atomic

    model, say_fused = _run_model(args)
    folder = output_folder(parser, "--save-input", args.save_input) if args.save_input else None
    say_fused(sys.stderr)  # standard output holds the digits alone
    taken, failed = {}, 0
    for path in args.images:
        try:
            x, raw = preprocess_digit(path, return_raw=True)
        except ValueError as exc:
            _error(parser, exc)
            failed += 1
            continue
        (digit,), (confidence,) = predict(model, x)
        print(f"{path}: {digit} ({confidence * 100:.1f}%)", flush=True)
        if folder:
            name = _input_name(path, taken)
            first = f"{Path(path).stem}_28x28.png"
            if name != first:
                _warn(parser, f"{folder / first} holds the input of {taken[first]}, so the input of {path} "
                              f"is saved as {folder / name}")
            write_atomic(folder / name, lambda f: Image.fromarray(raw).save(f, format="PNG"))
    if failed and len(args.images) > 1:
        _error(parser, f"{failed} of {len(args.images)} images could not be read")
    return 1 if failed else 0


def cmd_summary(args, parser):
    from minicnn.summary import summary

    model = models.get_model(args.model or "MnistCNN", seed=0)
    print(summary(minicnn.nn.fuse(model) if args.fuse else model))


def cmd_trace(args, parser):
    """What runs for one training step and one inference batch of a network, as minicnn.trace records it."""
    from minicnn.data import load_mnist, mnist_eval_transform
    from minicnn.tracing import trace

    images, labels = load_mnist("test")
    if not 1 <= args.batch <= len(images):
        parser.error(f"--batch must be between 1 and {len(images):,} (the test images), got {args.batch}")
    backend = minicnn.get_backend()
    model, fused = fuse_for(models.get_model(args.model, seed=0), backend, not args.no_fuse)
    x = backend.asarray(mnist_eval_transform()(images[:args.batch]))
    y = backend.asarray(labels[:args.batch].astype(np.int64))
    criterion = minicnn.nn.NLLLoss()
    optimizer = minicnn.optim.Adam(model.parameters(), lr=1e-3)
    print(f"{args.model} on the {backend.name} backend, a batch of {args.batch}"
          + (f"; {fused}" if fused else "; no fused modules (the layers one by one)"))
    print(model)
    for title, step in (("training step: forward, loss, parameter_backward, Adam", lambda: _step(model, criterion,
                                                                                                optimizer, x, y)),
                        ("inference batch, under no_grad", lambda: _infer(model, x))):
        step()  # twice before, so that compiling and first allocations are not in the times
        step()
        with trace(model) as t:
            step()
        print(f"\n{title} ({len(t.calls)} calls)")
        print(t.table())


def _step(model, criterion, optimizer, x, y):
    model.train()
    criterion(model(x), y)
    model.parameter_backward(criterion.backward())
    optimizer.step()
    optimizer.zero_grad()


def _infer(model, x):
    model.eval()
    with minicnn.no_grad():
        return model(x)


def build_parser() -> argparse.ArgumentParser:
    from minicnn import bench_report, recipes
    from minicnn.web import command as serve_command

    parser = argparse.ArgumentParser(prog="minicnn", description="A CNN written by hand: train, evaluate, predict.")
    parser.add_argument("--version", action="version", version=f"minicnn {minicnn.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train on MNIST (the options of examples/train_mnist.py)")
    recipes.add_arguments(p)
    p.set_defaults(func=cmd_train, command_parser=p)

    p = sub.add_parser("evaluate", help="test accuracy, classification report and plots of saved weights")
    _add_common(p)
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
    p.set_defaults(func=cmd_evaluate, command_parser=p)

    p = sub.add_parser("predict", help="read the digit in each image file")
    _add_common(p)
    p.add_argument("images", nargs="+", help="image files, one handwritten digit each")
    p.add_argument("--save-input", metavar="DIR", type=path_argument,
                   help="also save each preprocessed 28x28 input there, as NAME_28x28.png "
                        "(NAME_2_28x28.png, ... for inputs of the same name)")
    p.set_defaults(func=cmd_predict, command_parser=p)

    p = sub.add_parser("serve", help="a web page to draw or upload a digit and see what the network reads")
    _add_common(p)
    serve_command.add_arguments(p)
    p.set_defaults(func=lambda args, parser: serve_command.run(args, parser, lambda *_: _run_model(args)),
                   command_parser=p)

    p = sub.add_parser("summary", help="layers, output shapes and parameter counts")
    p.add_argument("--model", choices=sorted(models.MODELS), default="MnistCNN")
    p.add_argument("--fuse", action="store_true",
                   help="the network as train, evaluate, predict and serve run it on a backend with fused "
                        "kernels (numba): each Conv2d -> ReLU (-> MaxPool2d) run one fused module")
    p.set_defaults(func=cmd_summary, command_parser=p)

    p = sub.add_parser("trace", help="what runs, module by module and kernel by kernel, for one training step "
                                     "and one inference batch")
    p.add_argument("--model", choices=sorted(models.MODELS), default="MnistCNN")
    p.add_argument("--backend", choices=["numpy", "numba", "cupy"], default=None, help="array backend")
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    recipes.add_fuse_argument(p)
    p.set_defaults(func=cmd_trace, command_parser=p)

    p = sub.add_parser("bench", help="benchmark the backends (and PyTorch, when installed)",
                       parents=[bench_report.build_parser()], add_help=False)
    p.set_defaults(func=bench_report.run_with_args, command_parser=p)

    from minicnn import baselines, tune
    p = sub.add_parser("tune", help="search filters, units and learning rate of MnistCNN with Optuna "
                                    "(needs the tune extra)")
    tune.add_arguments(p)
    p.set_defaults(func=tune.run_with_args, command_parser=p)

    p = sub.add_parser("baselines", help="k-nearest neighbours, an RBF SVM and a random forest on the raw pixels "
                                         "(needs the baselines extra)")
    baselines.add_arguments(p)
    p.set_defaults(func=baselines.run_with_args, command_parser=p)

    from minicnn import compare
    p = sub.add_parser("compare", help="CNN weights and baselines in one table and one plot")
    compare.add_arguments(p)
    p.set_defaults(func=compare.run_with_args, command_parser=p)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.command_parser, args, args.func)

def run_numba_script(parser: argparse.ArgumentParser, argv, measure, format_report) -> int:
    """The command line of a Numba benchmark of ``benchmarks/`` (``bench_numba_levers.py``, ``bench_process.py``).

    ``--rounds`` and ``--steps`` (each at least 1) and the ``--json`` path are checked before
    anything is measured, then the numba backend is loaded (one line where it cannot be), then
    ``measure(args)``'s report is printed by ``format_report`` and written to ``--json``.  Errors
    are one line, exit status 1 or 2, as ``minicnn bench`` reports them.
    """
    from minicnn.paths import output_file
    from minicnn.serialization import write_json_atomic
    from minicnn.validate import satisfies

    def run_with_args(args, parser) -> int:
        for option, value in (("--rounds", args.rounds), ("--steps", args.steps)):
            if not satisfies(value, "> 0"):
                parser.error(f"{option} must be at least 1, got {value}")
        if args.json:
            output_file(parser, "--json", args.json)
        minicnn.set_backend("numba")
        report = measure(args)
        print(format_report(report))
        if args.json:
            write_json_atomic(args.json, report)
        return 0

    return run_command(parser, parser.parse_args(argv), run_with_args)


if __name__ == "__main__":
    sys.exit(main())

