"""``minicnn tune``: a hyperparameter search over MnistCNN's shape, with Optuna.

The space (each option takes its own list of values):

    --filters   32 64 128        conv1's channels; conv2 has 2 * filters
    --units     32 64 128        fc1's units
    --lr        1e-2 1e-3 1e-4   Adam's learning rate (constant)

A trial trains ``MnistCNN(filters=f, units=u)`` for ``--epochs`` epochs on
the first ``--limit`` training images less a validation split, and scores
it by the validation accuracy after its last epoch:

    objective(f, u, lr) = val_accuracy[epochs]      (maximised)

After each epoch the trial reports ``val_accuracy[epoch]`` to Optuna's
MedianPruner, which stops it (state PRUNED) when it is below the median of
the earlier trials at that epoch.  Optuna's TPE sampler picks the next
trial from the ones before.  The trials live in an Optuna storage (default:
the SQLite file ``DIR/study.db``; ``--storage`` takes any Optuna storage
URL), so running the same command again continues the study: ``--trials``
is the number of finished trials the study should hold, and only the
missing ones are run.  A trial that a stopped run left unfinished is taken
up again with its parameters (in an SQL storage, once its heartbeat has
been silent for 30 s).  A point the sampler proposes again is not trained
again: the trial takes the earlier one's accuracy (column ``repeat_of``).

``--out DIR`` receives ``trials.csv`` and ``trials.json`` (one row per
trial), ``best.json`` (the best trial's parameters and accuracy) and
``accuracy_by_trial.png``, replaced together.  Needs the ``tune`` extra:
``pip install -e ".[tune]"``.

Docs: docs/comparisons.md
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

#: The search space of the tuning report: filters, dense units, learning rate.
SPACE = {"filters": [32, 64, 128], "units": [32, 64, 128], "lr": [1e-2, 1e-3, 1e-4]}

CSV_COLUMNS = ("number", "state", "filters", "units", "lr", "val_accuracy", "epochs", "seconds", "repeat_of")

#: Heartbeat of a running trial in an SQL storage; one silent for GRACE seconds belongs to a stopped run.
HEARTBEAT, GRACE = 10, 30


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
    p.add_argument("--filters", type=int, nargs="+", default=SPACE["filters"],
                   help="values of conv1's channels to try (default 32 64 128)")
    p.add_argument("--units", type=int, nargs="+", default=SPACE["units"],
                   help="values of fc1's units to try (default 32 64 128)")
    p.add_argument("--lr", type=float, nargs="+", default=SPACE["lr"],
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


def _storage(parser, optuna, url: str):
    """An SQL storage with heartbeats (a stopped run's trial is failed and retried), or any other URL as is."""
    import warnings

    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    if "://" not in url:
        parser.error(f"--storage {url}: expected an Optuna storage URL such as sqlite:///study.db")
    if url.split("://", 1)[0].split("+", 1)[0] not in ("sqlite", "mysql", "postgresql"):
        return url
    try:
        with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, heartbeat_interval=HEARTBEAT, grace_period=GRACE,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
    except Exception as exc:  # SQLAlchemy's errors for a bad URL or an unreachable database
        parser.error(f"--storage {url}: {str(exc).splitlines()[0]}")


def trial_rows(study) -> list[dict]:
    """One row per trial of ``study``: its parameters, state, accuracy, epochs and seconds."""
    rows = []
    for t in study.trials:
        reported = t.intermediate_values
        value = t.value if t.value is not None else (reported[max(reported)] if reported else None)
        rows.append({"number": t.number, "state": t.state.name, **{k: t.params.get(k) for k in SPACE},
                     "val_accuracy": value, "epochs": len(reported),
                     "seconds": t.user_attrs.get("seconds"), "repeat_of": t.user_attrs.get("repeat_of"),
                     "error": t.user_attrs.get("error")})
    return rows


def plot_trials(rows: list[dict], path=None):
    """Validation accuracy by trial: finished trials filled, pruned ones hollow, the best so far as a step line."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    from minicnn.plots import finish_figure, new_figure

    fig = new_figure(8, 4.5)
    ax = fig.subplots()
    scored = [r for r in rows if r["val_accuracy"] is not None]
    for state, style in (("COMPLETE", dict(marker="o", color="C0", label="finished")),
                         ("PRUNED", dict(marker="o", mfc="none", color="C1", label="pruned (last epoch run)"))):
        points = [r for r in scored if r["state"] == state]
        if points:
            ax.plot([r["number"] for r in points], [r["val_accuracy"] for r in points], linestyle="none",
                    markersize=7, **style)
    complete = sorted((r for r in scored if r["state"] == "COMPLETE"), key=lambda r: r["number"])
    if complete:
        best = np.maximum.accumulate([r["val_accuracy"] for r in complete])
        ax.step([r["number"] for r in complete], best, where="post", color="0.4", linewidth=1, label="best so far")
        top = max(complete, key=lambda r: r["val_accuracy"])
        right = top["number"] > (rows[0]["number"] + rows[-1]["number"]) / 2  # write the label towards the middle
        ax.annotate(f"best {top['val_accuracy']:.2%}\nfilters {top['filters']}, units {top['units']}, lr {top['lr']:g}",
                    (top["number"], top["val_accuracy"]), textcoords="offset points", xytext=(-8 if right else 8, -30),
                    ha="right" if right else "left", fontsize=9)
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Validation accuracy by trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=1))
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(loc="best")
    return finish_figure(fig, path)


def run_with_args(args, parser) -> dict:
    """The ``minicnn tune`` command: run the missing trials, then write the table, best.json and the plot."""
    import minicnn
    from minicnn import nn, optim
    from minicnn.paths import output_folder
    from minicnn.data import DataLoader, load_mnist, mnist_eval_transform, mnist_train_transform, train_val_split
    from minicnn.extras import require
    from minicnn.models import MnistCNN
    from minicnn.run_folder import write_together
    from minicnn.serialization import write_csv_atomic, write_json_atomic
    from minicnn.training import TrainingDivergedError, fit

    _check(parser, args)
    optuna = require(parser, "optuna")
    out = output_folder(parser, "--out", args.out)
    url = args.storage or f"sqlite:///{(out / 'study.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _storage(parser, optuna, url)

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

    def objective(trial):
        filters = trial.suggest_categorical("filters", args.filters)
        units = trial.suggest_categorical("units", args.units)
        lr = trial.suggest_categorical("lr", args.lr)
        line = f"trial {trial.number}: filters {filters}, units {units}, lr {lr:g}"
        # The sampler may propose a point it has tried: the same seed gives the same result, so reuse it.
        for earlier in study.get_trials(deepcopy=False, states=finished[:2]):
            if earlier.params == trial.params and earlier.number != trial.number:
                trial.set_user_attr("repeat_of", earlier.number)
                trial.set_user_attr("seconds", 0.0)
                for epoch, value in earlier.intermediate_values.items():
                    trial.report(value, epoch)
                print(f"{line}: the same as trial {earlier.number} ({earlier.state.name.lower()})", flush=True)
                if earlier.state == optuna.trial.TrialState.PRUNED:
                    raise optuna.TrialPruned()
                return earlier.value
        rng = np.random.default_rng(args.seed)
        loader = DataLoader(images, labels, batch_size=args.batch_size, shuffle=True, generator=rng,
                            transform=mnist_train_transform(augment=args.augment))
        model = MnistCNN(filters=filters, units=units, seed=args.seed)
        start, last = time.perf_counter(), {}

        def report(record):
            last.update(record)
            trial.set_user_attr("seconds", time.perf_counter() - start)
            trial.report(record["val_accuracy"], record["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            history = fit(model, nn.NLLLoss(), optim.Adam(model.parameters(), lr=lr), loader, args.epochs,
                          val_loader=val_loader, progress=False, log=None, on_epoch=report)
        except optuna.TrialPruned:
            print(f"{line}: pruned after epoch {last['epoch']}, validation accuracy {last['val_accuracy']:.4f}",
                  flush=True)
            raise
        except TrainingDivergedError as exc:
            trial.set_user_attr("error", str(exc))
            print(f"{line}: failed, {exc}", flush=True)
            raise
        print(f"{line}: validation accuracy {history['val_accuracy'][-1]:.4f} "
              f"({time.perf_counter() - start:.1f}s)", flush=True)
        return history["val_accuracy"][-1]

    if missing:
        study.optimize(objective, n_trials=missing, catch=(TrainingDivergedError,))

    rows = trial_rows(study)
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    best = max(complete, key=lambda r: r["val_accuracy"]) if complete else None
    summary = {"study": args.study_name, "storage": url, "trials": len(rows),
               "best": best and {"number": best["number"], "val_accuracy": best["val_accuracy"],
                                 "params": {k: best[k] for k in SPACE}},
               "settings": {"epochs": args.epochs, "limit": args.limit, "val_split": args.val_split,
                            "batch_size": args.batch_size, "augment": args.augment, "seed": args.seed,
                            "space": {"filters": args.filters, "units": args.units, "lr": args.lr}}}

    def write(folder: Path) -> list[str]:
        write_csv_atomic(folder / "trials.csv", rows, CSV_COLUMNS)
        write_json_atomic(folder / "trials.json", rows)
        write_json_atomic(folder / "best.json", summary)
        plot_trials(rows, path=folder / "accuracy_by_trial.png")
        return ["trials.csv", "trials.json", "best.json", "accuracy_by_trial.png"]

    names = write_together(out, write)
    print()
    print(format_table(rows))
    if best:
        print(f"\nBest: trial {best['number']}, filters {best['filters']}, units {best['units']}, lr {best['lr']:g}: "
              f"validation accuracy {best['val_accuracy']:.4f}")
    print(f"Wrote {', '.join(names)} to {out}")
    return summary


def format_table(rows: list[dict]) -> str:
    """The trials as a Markdown table."""
    lines = ["| trial | state | filters | units | lr | val accuracy | epochs | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = "" if r["val_accuracy"] is None else f"{r['val_accuracy']:.2%}"
        secs = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        lr = "" if r["lr"] is None else f"{r['lr']:g}"
        state = r["state"].lower() + (f" (= {r['repeat_of']})" if r.get("repeat_of") is not None else "")
        lines.append(f"| {r['number']} | {state} | {r['filters']} | {r['units']} | {lr} | {acc} | "
                     f"{r['epochs']} | {secs} |")
    return "\n".join(lines)
