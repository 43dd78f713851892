"""The ``minicnn`` command: train, evaluate, predict, serve, summary, trace, bench, tune, baselines, compare, exercise.

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
    minicnn exercise list|start|check|hint|train   write each layer's math yourself, checked with a
                                               diagnosis (see minicnn/exercises/)

Each command is a module of minicnn/commands/ (``minicnn train`` is minicnn/commands/train.py, and so
on): its ``HELP`` line, its options (``add_arguments``) and the command itself (``run``).  This module
puts them on one command line (:func:`build_parser`) and runs the one named (:func:`run_command`).

An error a user can cause ends in one line on stderr, ``minicnn COMMAND: error: ...``,
never in a traceback.  Exit status 2: a bad option, found before any long work (with the
usage line, as argparse does), or a backend that cannot load here (from ``--backend`` or
``MINICNN_BACKEND``).  Exit status 1: a problem found while working (a missing or corrupt
file, an image without a digit, a training run whose loss diverged).
``examples/train_mnist.py`` and the scripts of ``benchmarks/`` report errors through the
same :func:`run_command`.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

import minicnn
from minicnn.commands.common import error, warn

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
        warnings.showwarning = lambda message, *_, **__: warn(parser, message)
        try:
            _select_backend(args)
            status = func(args, parser)
            return status if isinstance(status, int) else 0  # bench returns its report
        except minicnn.BackendUnavailableError as exc:
            parser.exit(2, f"{parser.prog}: error: {exc}\n")
        except (ValueError, TrainingDivergedError, FolderInUseError) as exc:
            return error(parser, exc)
        except OSError as exc:
            return error(parser, f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else exc)
        except KeyboardInterrupt as exc:
            # Ctrl-C: one line, with what the command kept (minicnn train says how to resume).
            print(f"{parser.prog}: interrupted{f' {exc}' if str(exc) else ''}", file=sys.stderr)
            return 130


# --- the command line ---------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """``minicnn`` and its commands, in the order ``minicnn --help`` lists them."""
    from minicnn.commands import (baselines, bench, compare, evaluate, exercise, predict, serve, summary, trace,
                                  train, tune)

    parser = argparse.ArgumentParser(prog="minicnn", description="A CNN written by hand: train, evaluate, predict.")
    parser.add_argument("--version", action="version", version=f"minicnn {minicnn.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in (("train", train), ("evaluate", evaluate), ("predict", predict), ("serve", serve),
                          ("summary", summary), ("trace", trace), ("bench", bench), ("tune", tune),
                          ("baselines", baselines), ("compare", compare), ("exercise", exercise)):
        p = sub.add_parser(name, help=command.HELP)
        command.add_arguments(p)
        p.set_defaults(func=command.run, command_parser=p)
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
