"""The benchmark's report: the tables and the chart of a :func:`minicnn.bench.run` result, and its command line.

    python benchmarks/bench_backends.py --json bench.json --plot bench.png    # the same as: minicnn bench ...

:func:`minicnn.bench.run` measures and returns the report as a dict (the
JSON that ``--json`` writes); the functions here only read that dict.
"""
from __future__ import annotations

import argparse
import os

from minicnn.backend import BackendUnavailableError, available_backends, backend_names, load_backend
from minicnn.bench import INFER_BATCH, TRAIN_BATCH, cuda_problem_of_torch, run
from minicnn.paths import output_file, path_argument
from minicnn.serialization import write_json_atomic
from minicnn.validate import is_finite_real, satisfies


def describe(report: dict) -> str:
    """The machine and the library versions, in one line: ``AMD EPYC, 2 cores; Python 3.11.7, numpy 2.4.6, ...``."""
    return f"{report['machine']}; " + ", ".join(
        f"{'Python' if name == 'python' else name} {version}" for name, version in report.get("versions", {}).items())


def format_table(report: dict) -> str:
    """The summary as a Markdown table, with ratios against PyTorch where measured.

    A row's ratios are against PyTorch on the row's own device (``pytorch-cuda``
    for the GPU rows when it was measured), else against ``pytorch-cpu``.
    Further training batch sizes and the GPU memory get columns when measured.
    """
    results = report["results"]
    has_ref = any(name.startswith("pytorch-") for name in results)
    extra = [b for b in report.get("train_batches", [TRAIN_BATCH]) if int(b) != TRAIN_BATCH]
    memory = any(r.get("gpu_memory_mib") is not None for r in results.values())
    header = ("| backend | first step (s) | training img/s (batch 64) | "
              + "".join(f"training img/s (batch {b}) | " for b in extra) + "inference img/s (batch 1000) |"
              + (" GPU memory (MiB) |" if memory else "")
              + (" training vs PyTorch | inference vs PyTorch |" if has_ref else ""))
    lines = [header, "|" + "---|" * header.count(" |")]
    for name, r in results.items():
        row = (f"| {name} | {r['first_step_s']:.2f} | {r['train_images_per_s']:,.0f} | "
               + "".join(f"{r.get('train_images_per_s_by_batch', {}).get(str(b), float('nan')):,.0f} | "
                         for b in extra)
               + f"{r['infer_images_per_s']:,.0f} |")
        if memory:
            row += f" {r['gpu_memory_mib']:,.0f} |" if r.get("gpu_memory_mib") is not None else " |"
        ref = results.get(f"pytorch-{r.get('device', 'cpu')}") or results.get("pytorch-cpu")
        if has_ref and ref:
            row += (f" {r['train_images_per_s'] / ref['train_images_per_s']:.2f}x |"
                    f" {r['infer_images_per_s'] / ref['infer_images_per_s']:.2f}x |")
        elif has_ref:
            row += " | |"
        lines.append(row)
    return "\n".join(lines)


def format_ceilings(report: dict) -> str:
    """What the matrix products alone allow on each device, and the share of it each runner reaches."""
    out = []
    for c in report.get("ceilings", []):
        here = {name: r for name, r in report["results"].items() if r.get("device") == c["device"]}
        n = c["matmul_size"]
        out.append(f"\nCeiling on {c['device']} set by the matrix products alone (float32 product of two "
                   f"{n}x{n} matrices: {c['matmul_flops_per_s'] / 1e9:,.0f} GFLOP/s, median of {c['matmul_reps']}):")
        for key, what, flops, per in (
                ("train_images_per_s", "training", c["train_flops_per_step"], f"step of {TRAIN_BATCH}"),
                ("infer_images_per_s", "inference", c["infer_flops_per_batch"], f"batch of {INFER_BATCH}")):
            shares = ", ".join(f"{name} {r[key] / c[key]:.0%}" for name, r in here.items())
            out.append(f"  {what + ':':<11} {flops / 1e9:.2f} GFLOP per {per} -> at most {c[key]:,.0f} img/s"
                       + (f" ({shares})" if shares else ""))
        if "shapes_train_s" in c:
            out.append("The same products on the network's own shapes (such as (64, 288) @ (288, 12544)), timed one by one:")
            for key, what, seconds, per in (
                    ("train_images_per_s", "training", c["shapes_train_s"], f"step of {TRAIN_BATCH}"),
                    ("infer_images_per_s", "inference", c["shapes_infer_s"], f"batch of {INFER_BATCH}")):
                ceiling = c["shapes_" + key]
                shares = ", ".join(f"{name} {r[key] / ceiling:.0%}" for name, r in here.items())
                out.append(f"  {what + ':':<11} {seconds * 1e3:.1f} ms per {per} -> at most {ceiling:,.0f} img/s"
                           + (f" ({shares})" if shares else ""))
    return "\n".join(out)


def format_layers(report: dict) -> str:
    out = []
    for name, r in report["results"].items():
        if not r["layers"]:
            continue
        out.append(f"\n{name}: per-layer time at batch 64 (ms, median)")
        out.append(f"  {'layer':<12} {'type':<11} {'forward':>8} {'backward':>9}")
        for row in r["layers"]:
            out.append(f"  {row['layer']:<12} {row['type']:<11} {row['forward_ms']:8.2f} {row['backward_ms']:9.2f}")
    return "\n".join(out)


def plot(report: dict, path) -> None:
    """Bar charts of training and inference throughput."""
    from minicnn.plots import new_figure, save_figure

    names = list(report["results"])
    fig = new_figure(9, 3.8)
    for ax, key, title in zip(fig.subplots(1, 2), ("train_images_per_s", "infer_images_per_s"),
                              (f"training, batch {TRAIN_BATCH}", f"inference, batch {INFER_BATCH}")):
        values = [report["results"][n][key] for n in names]
        bars = ax.bar(names, values, color="tab:blue")
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=8)
        ax.set_title(title)
        ax.set_ylabel("images / second")
        ax.tick_params(axis="x", labelrotation=20)
    fig.suptitle(describe(report), fontsize=8)
    save_figure(fig, path)


def _check_plot_format(parser, path) -> None:
    """The format :func:`minicnn.plots.save_figure` takes from the extension must be one matplotlib writes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fmt = os.path.splitext(path)[1][1:].lower() or "png"
    formats = FigureCanvasAgg.get_supported_filetypes()
    if fmt not in formats:
        parser.error(f"--plot {path}: matplotlib cannot write .{fmt} files; expected one of "
                     f"{', '.join('.' + f for f in sorted(formats))}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Benchmark minicnn's backends (and PyTorch as a reference).")
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


def main(argv=None) -> dict:
    parser = build_parser()
    return run_with_args(parser.parse_args(argv), parser)


def run_with_args(args, parser) -> dict:
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
    report = run(args.backends, torch_reference=not args.no_torch, repeats=args.repeats,
                 train_steps=args.train_steps, settle=args.settle, torch_devices=args.torch_devices,
                 cuda_graph=args.cuda_graph, train_batches=args.train_batches, fuse=not args.no_fuse)
    print(f"\nMachine: {describe(report)}; date {report['date']}; medians of {report['repeats']} rounds\n")
    print(format_table(report))
    print(format_ceilings(report))
    print(format_layers(report))
    if args.json:
        write_json_atomic(args.json, report)
    if args.plot:
        plot(report, args.plot)
    return report

