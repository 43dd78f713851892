"""``minicnn compare WEIGHTS... --baselines JSON --out DIR``: the rows of :mod:`minicnn.compare` in one
table and one plot.

The options and the files named are checked before any network is scored;
``comparison.md``, ``comparison.json`` and ``comparison.png`` are written to
``--out`` together.

Docs: docs/comparisons.md
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from minicnn import compare

HELP = "CNN weights and baselines in one table and one plot"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("weights", type=Path, nargs="*",
                   help="CNN weights files (model.npz from train --out, or the checkpoint.npz beside it)")
    p.add_argument("--baselines", type=Path, nargs="+", default=[], metavar="JSON",
                   help="baselines.json files written by minicnn baselines")
    p.add_argument("--data-dir", default=None, help="folder of MNIST-layout IDX files (default: bundled MNIST)")
    p.add_argument("--limit", type=int, default=None, help="score the CNNs on the first N test images only")
    p.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size (default 1000)")
    p.add_argument("--backend", choices=["numpy", "numba", "cupy"], default=None, help="array backend")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="folder for comparison.md, comparison.json and comparison.png")
    return p


def run(args, parser: argparse.ArgumentParser) -> dict:
    """The ``minicnn compare`` command: score, tabulate, plot, write."""
    import minicnn
    from minicnn.bench import machine_description
    from minicnn.data import DataLoader, load_mnist, mnist_eval_transform
    from minicnn.paths import output_folder
    from minicnn.run_folder import write_together
    from minicnn.serialization import write_json_atomic, write_text_atomic

    if not args.weights and not args.baselines:
        parser.error("nothing to compare: give weights files and/or --baselines JSON files")
    for option, value in (("--limit", args.limit), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            parser.error(f"{option} must be positive, got {value}")
    for path in [*args.weights, *args.baselines]:
        if not path.is_file():
            parser.error(f"{path}: no such file")
    out = output_folder(parser, "--out", args.out)

    rows = [row for path in args.baselines for row in compare.baseline_rows(path)]
    if args.weights:
        images, labels = load_mnist("test", root=args.data_dir)
        if args.limit:
            images, labels = images[:args.limit], labels[:args.limit]
        loader = DataLoader(images, labels, args.batch_size, transform=mnist_eval_transform())
        rows = [compare.cnn_row(path, loader) for path in args.weights] + rows
    report = {"machine": machine_description(), "backend": minicnn.get_backend().name,
              "date": time.strftime("%Y-%m-%d"), "rows": rows}
    table = compare.format_table(rows)

    def write(folder: Path) -> list[str]:
        write_text_atomic(folder / "comparison.md", f"{table}\n\n{report['machine']}, {report['date']}\n")
        write_json_atomic(folder / "comparison.json", report)
        compare.plot_comparison(rows, path=folder / "comparison.png")
        return ["comparison.md", "comparison.json", "comparison.png"]

    names = write_together(out, write)
    print(table)
    print(f"\nWrote {', '.join(names)} to {out}")
    return report
