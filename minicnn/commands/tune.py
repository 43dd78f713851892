"""``minicnn tune [--trials 8 ...]``: the hyperparameter search of :mod:`minicnn.tune`, from the command line.

The options (the space, the data, the study's storage, and that a training
step of the space's largest network fits in memory:
:func:`minicnn.memory.check_fits`) are checked before any data is read; the
trials table, ``best.json`` and the plot are written to ``--out`` together.  Needs the ``tune`` extra (Optuna).

Docs: docs/comparisons.md
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from minicnn import tune
from minicnn.memory import check_fits

HELP = "search filters, units and learning rate of MnistCNN with Optuna (needs the tune extra)"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--trials", type=int, default=8,
                   help="finished trials the study should hold; a resumed study runs only the missing ones (default 8)")
    p.add_argument("--epochs", type=int, default=2, help="training epochs per trial (default 2)")
    p.add_argument("--limit", type=int, default=3000,
                   help="use the first N training images, validation split included (default 3000; 0: all 60,000)")
    p.add_argument("--val-split", type=float, default=0.2,
                   help="fraction of those images held out to score the trials (default 0.2)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--augment", action="store_true", help="random rotation and shifts while training (default off)")
    p.add_argument("--filters", type=int, nargs="+", default=tune.SPACE["filters"],
                   help="values of conv1's channels to try (default 32 64 128)")
    p.add_argument("--units", type=int, nargs="+", default=tune.SPACE["units"],
                   help="values of fc1's units to try (default 32 64 128)")
    p.add_argument("--lr", type=float, nargs="+", default=tune.SPACE["lr"],
                   help="learning rates to try (default 0.01 0.001 0.0001)")
    p.add_argument("--no-prune", action="store_true", help="run every trial to its last epoch")
    p.add_argument("--storage", default=None,
                   help="Optuna storage URL (default: sqlite:///DIR/study.db in --out)")
    p.add_argument("--study-name", default="minicnn-tune", help="study name in the storage (default minicnn-tune)")
    p.add_argument("--seed", type=int, default=0, help="seed for the sampler, weights, split and shuffling")
    p.add_argument("--backend", choices=["numpy", "numba", "cupy"], default=None, help="array backend")
    p.add_argument("--data-dir", default=None, help="folder of MNIST-layout IDX files (default: bundled MNIST)")
    p.add_argument("--out", metavar="DIR", default="runs/tune",
                   help="folder for the trials table, best.json and the plot (default runs/tune)")
    return p


def _check(parser, args) -> None:
    for option, value, least in (("--trials", args.trials, 1), ("--epochs", args.epochs, 1),
                                 ("--limit", args.limit, 0), ("--batch-size", args.batch_size, 1)):
        if value < least:
            parser.error(f"{option} must be at least {least}, got {value}")
    if not 0.0 < args.val_split < 1.0:
        parser.error(f"--val-split must be in (0, 1): the trials are scored on it, got {args.val_split}")
    for option, values in (("--filters", args.filters), ("--units", args.units)):
        if any(v < 1 for v in values):
            parser.error(f"{option} values must be positive, got {' '.join(map(str, values))}")
    if any(not (math.isfinite(v) and v > 0) for v in args.lr):
        parser.error(f"--lr values must be finite numbers > 0, got {' '.join(map(str, args.lr))}")
    # The largest network of the space at the batch a trial trains on (a batch is at most the --limit images).
    try:
        check_fits("MnistCNN", min(args.batch_size, args.limit or args.batch_size),
                   filters=max(args.filters), units=max(args.units))
    except ValueError as exc:
        parser.error(str(exc))
    if args.storage is not None:
        try:
            tune.check_storage_url(args.storage)
        except ValueError as exc:
            parser.error(f"--storage {args.storage}: {exc}")


def run(args, parser: argparse.ArgumentParser) -> dict:
    """The ``minicnn tune`` command: run the missing trials, then write the table, best.json and the plot."""
    import minicnn
    from minicnn.data import DataLoader, load_mnist, mnist_eval_transform, train_val_split
    from minicnn.extras import require
    from minicnn.paths import output_folder
    from minicnn.run_folder import write_together
    from minicnn.serialization import write_csv_atomic, write_json_atomic

    _check(parser, args)
    optuna = require(parser, "optuna")
    out = output_folder(parser, "--out", args.out)
    url = args.storage or f"sqlite:///{(out / 'study.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = tune.storage(optuna, url)
    except ValueError as exc:
        parser.error(f"--storage {url}: {exc}")

    images, labels = load_mnist("train", root=args.data_dir)
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    (images, labels), (val_images, val_labels) = train_val_split(images, labels, args.val_split, seed=args.seed)
    if len(images) == 0 or len(val_images) == 0:
        parser.error(f"--val-split {args.val_split} of --limit {args.limit} images leaves an empty "
                     f"{'training' if len(images) == 0 else 'validation'} set")
    val_loader = DataLoader(val_images, val_labels, batch_size=1000, transform=mnist_eval_transform())

    # A resumed study gets a sampler seeded past the trials it holds, so it does not repeat its first proposals.
    try:
        study = optuna.create_study(study_name=args.study_name, storage=storage, load_if_exists=True,
                                    direction="maximize")
    except ValueError as exc:  # a storage URL Optuna does not take
        parser.error(f"--storage {url}: {exc}")
    sampler = optuna.samplers.TPESampler(seed=args.seed + len(study.trials))
    pruner = optuna.pruners.NopPruner() if args.no_prune else optuna.pruners.MedianPruner(n_startup_trials=2)
    study = optuna.load_study(study_name=args.study_name, storage=storage, sampler=sampler, pruner=pruner)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    done = len(study.get_trials(states=finished))
    missing = max(0, args.trials - done)
    print(f"minicnn tune: study {args.study_name!r} in {url}: {done} finished trial{'s' * (done != 1)}, "
          f"running {missing} more; {len(images):,} training and {len(val_images):,} validation images, "
          f"{args.epochs} epoch{'s' * (args.epochs != 1)} per trial, backend {minicnn.get_backend().name}")

    if missing:
        tune.search(optuna, study, missing, (images, labels), val_loader,
                    space={"filters": args.filters, "units": args.units, "lr": args.lr}, epochs=args.epochs,
                    batch_size=args.batch_size, augment=args.augment, seed=args.seed)

    rows = tune.trial_rows(study)
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    best = max(complete, key=lambda r: r["val_accuracy"]) if complete else None
    summary = {"study": args.study_name, "storage": url, "trials": len(rows),
               "best": best and {"number": best["number"], "val_accuracy": best["val_accuracy"],
                                 "params": {k: best[k] for k in tune.SPACE}},
               "settings": {"epochs": args.epochs, "limit": args.limit, "val_split": args.val_split,
                            "batch_size": args.batch_size, "augment": args.augment, "seed": args.seed,
                            "space": {"filters": args.filters, "units": args.units, "lr": args.lr}}}

    def write(folder: Path) -> list[str]:
        write_csv_atomic(folder / "trials.csv", rows, tune.CSV_COLUMNS)
        write_json_atomic(folder / "trials.json", rows)
        write_json_atomic(folder / "best.json", summary)
        tune.plot_trials(rows, path=folder / "accuracy_by_trial.png")
        return ["trials.csv", "trials.json", "best.json", "accuracy_by_trial.png"]

    names = write_together(out, write)
    print()
    print(tune.format_table(rows))
    if best:
        print(f"\nBest: trial {best['number']}, filters {best['filters']}, units {best['units']}, lr {best['lr']:g}: "
              f"validation accuracy {best['val_accuracy']:.4f}")
    print(f"Wrote {', '.join(names)} to {out}")
    return summary
