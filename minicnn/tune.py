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
the SQLite file ``DIR/study.db``; ``--storage`` takes an SQLite, MySQL or
PostgreSQL URL, see :func:`check_storage_url`), so running the same command
again continues the study: ``--trials`` is the number of finished trials the
study should hold, and only the missing ones are run.  A trial that a
stopped run left unfinished is taken up again with its parameters (once its
heartbeat has been silent for 30 s).  A point the sampler proposes again is
not trained again: the trial takes the earlier one's accuracy (column
``repeat_of``).

``--out DIR`` receives ``trials.csv`` and ``trials.json`` (one row per
trial), ``best.json`` (the best trial's parameters and accuracy) and
``accuracy_by_trial.png``, replaced together.  Needs the ``tune`` extra:
``pip install -e ".[tune]"``.

The command's options and checks are minicnn/commands/tune.py.

Docs: docs/comparisons.md
"""
from __future__ import annotations

import time

import numpy as np

#: The search space of the tuning report: filters, dense units, learning rate.
SPACE = {"filters": [32, 64, 128], "units": [32, 64, 128], "lr": [1e-2, 1e-3, 1e-4]}

CSV_COLUMNS = ("number", "state", "filters", "units", "lr", "val_accuracy", "epochs", "seconds", "repeat_of")

#: Heartbeat of a running trial in an SQL storage; one silent for GRACE seconds belongs to a stopped run.
HEARTBEAT, GRACE = 10, 30

#: The URL schemes :func:`storage` accepts (each optionally ``+driver``): the SQL databases Optuna stores studies in.
STORAGE_SCHEMES = ("sqlite", "mysql", "postgresql")


def check_storage_url(url: str) -> None:
    """``ValueError`` unless ``url`` names a storage :func:`storage` can open (a scheme of
    :data:`STORAGE_SCHEMES`), saying what is accepted; it reads only the string, so a command
    can refuse the URL before any work."""
    accepted = "sqlite:///path.db, mysql://user@host/db or postgresql://user@host/db"
    if "://" not in url:
        raise ValueError(f"expected an Optuna storage URL such as sqlite:///study.db ({accepted})")
    scheme = url.split("://", 1)[0]
    if scheme.split("+", 1)[0].lower() not in STORAGE_SCHEMES:
        raise ValueError(f"{scheme}:// is not a storage minicnn tune can use; expected {accepted}")


def storage(optuna, url: str):
    """The Optuna storage ``url`` names: an SQL database (sqlite, mysql, postgresql, with an optional
    ``+driver``) opened with heartbeats, so that a stopped run's trial is failed and retried.
    ``ValueError`` says what is wrong with a URL that names no storage or another kind of one (Optuna
    reads every URL as SQLAlchemy's, whose error for ``foo://bar`` is a traceback), or an SQL database
    that cannot be opened; nothing is created for a URL refused."""
    import warnings

    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    check_storage_url(url)
    try:
        with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, heartbeat_interval=HEARTBEAT, grace_period=GRACE,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
    except Exception as exc:  # SQLAlchemy's errors for a bad URL or an unreachable database
        raise ValueError(str(exc).splitlines()[0]) from None


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


def search(optuna, study, trials: int, train, val_loader, *, space: dict, epochs: int, batch_size: int,
           augment: bool, seed: int) -> None:
    """Run ``trials`` more trials of ``study``, one line each on standard output.

    A trial trains ``MnistCNN(filters, units)`` with ``Adam(lr)``, the three drawn from ``space``'s
    lists, for ``epochs`` epochs on ``train`` (images, labels), from the same ``seed`` every time
    (weights, shuffling, augmentation), and scores it on ``val_loader``.  A diverged trial is FAIL
    and the search goes on.
    """
    from minicnn import nn, optim
    from minicnn.data import DataLoader, mnist_train_transform
    from minicnn.models import MnistCNN
    from minicnn.training import TrainingDivergedError, fit

    images, labels = train
    scored = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

    def objective(trial):
        filters = trial.suggest_categorical("filters", space["filters"])
        units = trial.suggest_categorical("units", space["units"])
        lr = trial.suggest_categorical("lr", space["lr"])
        line = f"trial {trial.number}: filters {filters}, units {units}, lr {lr:g}"
        # The sampler may propose a point it has tried: the same seed gives the same result, so reuse it.
        for earlier in study.get_trials(deepcopy=False, states=scored):
            if earlier.params == trial.params and earlier.number != trial.number:
                trial.set_user_attr("repeat_of", earlier.number)
                trial.set_user_attr("seconds", 0.0)
                for epoch, value in earlier.intermediate_values.items():
                    trial.report(value, epoch)
                print(f"{line}: the same as trial {earlier.number} ({earlier.state.name.lower()})", flush=True)
                if earlier.state == optuna.trial.TrialState.PRUNED:
                    raise optuna.TrialPruned()
                return earlier.value
        rng = np.random.default_rng(seed)
        loader = DataLoader(images, labels, batch_size=batch_size, shuffle=True, generator=rng,
                            transform=mnist_train_transform(augment=augment))
        model = MnistCNN(filters=filters, units=units, seed=seed)
        start, last = time.perf_counter(), {}

        def report(record):
            last.update(record)
            trial.set_user_attr("seconds", time.perf_counter() - start)
            trial.report(record["val_accuracy"], record["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            history = fit(model, nn.NLLLoss(), optim.Adam(model.parameters(), lr=lr), loader, epochs,
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

    study.optimize(objective, n_trials=trials, catch=(TrainingDivergedError,))


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
