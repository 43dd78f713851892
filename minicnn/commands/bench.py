"""``minicnn bench [...]``: the backend benchmarks, measured by :mod:`minicnn.bench`, reported by
:mod:`minicnn.bench_report`.

    python benchmarks/bench_backends.py --json bench.json --plot bench.png    # the same as: minicnn bench ...

The options, the output paths and the backends are checked first, so that nothing
goes wrong after minutes of measuring.
"""
from __future__ import annotations

import argparse
import os

from minicnn import bench, bench_report
from minicnn.backend import BackendUnavailableError, available_backends, backend_names, load_backend
from minicnn.bench import INFER_BATCH, TRAIN_BATCH, cuda_problem_of_torch
from minicnn.paths import output_file, path_argument
from minicnn.serialization import write_json_atomic
from minicnn.validate import is_finite_real, satisfies

HELP = "benchmark the backends (and PyTorch, when installed)"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--backends", nargs="+", choices=backend_names(), help="default: every backend that loads")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    p.add_argument("--torch-devices", nargs="+", choices=["cpu", "cuda"],
                   help="where the PyTorch reference runs (default: cpu, and cuda too when cupy is measured "
                        "and PyTorch sees a GPU)")
    p.add_argument("--cuda-graph", action="store_true",
                   help="also measure cupy-graph: the CuPy backend training through a captured CUDA graph")
    p.add_argument("--train-batches", nargs="+", type=int, default=[TRAIN_BATCH],
                   help="training batch sizes (default 64; 64 is always measured, first)")
    p.add_argument("--repeats", type=int, default=5, help="rounds; each figure is their median (default 5)")
    p.add_argument("--train-steps", type=int, default=20, help="training steps per round (default 20)")
    p.add_argument("--settle", type=float, default=0.5,
                   help="seconds of idle before each timed block, so no other backend's threads still spin "
                        "(default 0.5)")
    p.add_argument("--no-fuse", action="store_true",
                   help="run minicnn's layers one by one (default: fused where the backend has fused kernels, "
                        "as the command line runs them)")
    p.add_argument("--json", type=path_argument, help="write the full report as JSON here")
    p.add_argument("--plot", type=path_argument,
                   help="write a bar chart here (PNG, or the format its extension names: .svg, .pdf...)")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The options on a parser of their own, for ``benchmarks/bench_backends.py``."""
    return add_arguments(argparse.ArgumentParser(
        description="Benchmark minicnn's backends (and PyTorch as a reference)."))


def main(argv=None) -> dict:
    """Parse ``argv`` as ``benchmarks/bench_backends.py`` does and run the benchmark; returns the report."""
    parser = build_parser()
    return run(parser.parse_args(argv), parser)


def _check_plot_format(parser, path) -> None:
    """The format :func:`minicnn.plots.save_figure` takes from the extension must be one matplotlib writes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fmt = os.path.splitext(path)[1][1:].lower() or "png"
    formats = FigureCanvasAgg.get_supported_filetypes()
    if fmt not in formats:
        parser.error(f"--plot {path}: matplotlib cannot write .{fmt} files; expected one of "
                     f"{', '.join('.' + f for f in sorted(formats))}")


def run(args, parser: argparse.ArgumentParser) -> dict:
    """Run the benchmark the parsed options ask for; print the tables, write the JSON and plot.

    The options, the output paths and the backends are checked first, so that nothing
    goes wrong after minutes of measuring.
    """
    for option, value in (("--repeats", args.repeats), ("--train-steps", args.train_steps)):
        if not satisfies(value, "> 0"):
            parser.error(f"{option} must be at least 1, got {value}")
    if not (is_finite_real(args.settle) and satisfies(args.settle, ">= 0")):
        parser.error(f"--settle must be a finite number of seconds >= 0, got {args.settle}")
    bad = [b for b in args.train_batches if not 1 <= b <= INFER_BATCH]
    if bad:
        parser.error(f"--train-batches must be between 1 and {INFER_BATCH} (the images the benchmark loads), "
                     f"got {bad[0]}")
    if args.torch_devices and args.no_torch:
        parser.error("--torch-devices and --no-torch contradict each other; give one of them")
    if "cuda" in (args.torch_devices or []):
        problem = cuda_problem_of_torch()
        if problem:
            parser.error(f"--torch-devices cuda: {problem}")
    if args.cuda_graph:
        try:
            load_backend("cupy")
        except BackendUnavailableError as exc:
            raise BackendUnavailableError(f"--cuda-graph: {exc}") from None
    if args.json:
        output_file(parser, "--json", args.json)
    if args.plot:
        _check_plot_format(parser, args.plot)
        output_file(parser, "--plot", args.plot)
    for name in args.backends or []:
        try:
            load_backend(name)
        except BackendUnavailableError as exc:
            raise BackendUnavailableError(f"--backends {name}: {exc}. Available here: "
                                          f"{', '.join(available_backends())}") from None
    report = bench.run(args.backends, torch_reference=not args.no_torch, repeats=args.repeats,
                       train_steps=args.train_steps, settle=args.settle, torch_devices=args.torch_devices,
                       cuda_graph=args.cuda_graph, train_batches=args.train_batches, fuse=not args.no_fuse)
    print(f"\nMachine: {bench_report.describe(report)}; date {report['date']}; medians of {report['repeats']} rounds\n")
    print(bench_report.format_table(report))
    print(bench_report.format_ceilings(report))
    print(bench_report.format_layers(report))
    if args.json:
        write_json_atomic(args.json, report)
    if args.plot:
        bench_report.plot(report, args.plot)
    return report
