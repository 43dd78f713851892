"""The documented MNIST training, as one function a script or the command line calls.

    python examples/train_mnist.py [options]      # the same as: minicnn train [options]

The documented setup: MnistCNN, Adam (lr 1e-3), batch size 64, NLL loss on
LogSoftmax outputs, images normalised with MNIST's mean and std, random
rotation (+-10 degrees) and translation (up to 10%) on every training batch,
and the learning rate annealed along a cosine from 1e-3 to 0 over the whole
run, stepped every batch (``--scheduler`` picks another).  Each epoch prints
its loss, accuracy and time; the end prints the test accuracy.  With
``--out DIR``, the weights (``model.npz``), the per-epoch history
(``history.json``), the final metrics (``metrics.json``) and the test-set
reports (curves, confusion matrix, classification report) are written there.
DIR is checked before the data is read and held by one run at a time
(:mod:`minicnn.run_folder`); the files are written to a temporary folder
inside it first and then moved into place together, so a run that fails
leaves them as they were, never new weights beside old plots.

After every epoch, ``DIR/checkpoint.npz`` holds the whole state of the run
(model, optimizer, scheduler, random generators, history, and the settings
in :data:`SETUP`, with the digests of the data it read); ``--resume DIR``
continues it with those settings, and ends with the files the uninterrupted
run would have written.  The checkpoint's settings are checked as the
options are; an option given on the command line that contradicts them
(its default value too, and more epochs) is refused, and so is other data.
A run stopped by Ctrl-C (during training, the test evaluation or the final
write), a diverged loss or a checkpoint that cannot be written (a full disk)
puts the last complete epoch's weights and history beside its checkpoint
(the older run's metrics and reports go, together), and its one-line message
says how to resume; DIR never holds one run's checkpoint beside another's
weights (docs/training.md#resuming-a-run).

Each network has its recipe in :data:`RECIPES`, the defaults of the options
it leaves unset: ``--model MnistDeepCNN`` trains with RMSprop (lr 1e-3,
alpha 0.9, eps 1e-8) at batch 86, ReduceLROnPlateau on the validation accuracy
(halving the lr after 3 epochs without a gain, down to 1e-5), rotation up to 10
degrees, zoom up to 10% (each axis its own, as Keras's ``zoom_range``) and shifts
up to 10%, and 10% of the training images
held out for validation.  An option given on the command line overrides its
recipe value.

Read :func:`run` top to bottom: data, loaders, model, loss, optimizer,
schedule, :func:`minicnn.training.fit`, :func:`minicnn.training.evaluate`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import time
from pathlib import Path

import numpy as np

import minicnn
from minicnn import models, nn, optim
from minicnn.data import (MNIST_FILES, DataError, DataLoader, content_sha256, load_mnist, mnist_eval_transform,
                          mnist_files, mnist_train_transform, read_sha256sums, train_val_split)
from minicnn.memory import check_fits
from minicnn.nn.fusion import fuse_for
from minicnn.paths import output_folder, path_argument
from minicnn.reports import TRAINING_REPORTS, save_reports
from minicnn.run_folder import claim, write_together
from minicnn.serialization import CheckpointError, load_checkpoint, read_checkpoint_extra, write_json_atomic
from minicnn.training import TrainingDivergedError, evaluate, fit
from minicnn.validate import is_finite_real, is_int, satisfies


#: The defaults each network trains with: the values of the options the command line leaves unset.
#: ``plateau`` holds the ReduceLROnPlateau arguments of ``--scheduler plateau`` and ``monitor`` the
#: History column it follows (``val_*`` falls back to ``train_*`` when there is no validation split).
#: MnistDeepCNN's is the report's Keras notebook: batch 86, and ``ReduceLROnPlateau(patience=3)``, which in
#: Keras halves the lr once 3 epochs in a row brought no gain; PyTorch's rule, which minicnn's follows, waits
#: for ``patience + 1`` such epochs, so the same schedule is ``patience=2`` here.
RECIPES = {
    "MnistCNN": dict(optimizer="adam", lr=1e-3, batch_size=64, scheduler="cosine", val_split=0.0, zoom=0.0,
                     zoom_each_axis=False, plateau=dict(mode="min", factor=0.5, patience=1), monitor="val_loss"),
    "MnistDeepCNN": dict(optimizer="rmsprop", lr=1e-3, batch_size=86, scheduler="plateau", val_split=0.1, zoom=0.1,
                         zoom_each_axis=True, plateau=dict(mode="max", factor=0.5, patience=2, min_lr=1e-5),
                         monitor="val_accuracy"),
}
RECIPES["MnistBNCNN"] = RECIPES["MnistCNN"]

#: The optimizers ``--optimizer`` names, with the arguments the recipes give them besides lr.
OPTIMIZERS = {"adam": (optim.Adam, {}), "rmsprop": (optim.RMSprop, dict(alpha=0.9, eps=1e-8))}
#: The schedules ``--scheduler`` names.
SCHEDULERS = ["cosine", "step", "plateau", "none"]
#: The values of the options whose argparse default is None so that --resume sees whether they were given.
DEFAULTS = {"model": "MnistCNN", "epochs": 5, "seed": 0}


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(description="Train a CNN on MNIST with minicnn."))


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The training options, shared by ``examples/train_mnist.py`` and ``minicnn train``."""
    p.add_argument("--backend", choices=["numpy", "numba", "cupy"], default=None,
                   help="array backend (default: MINICNN_BACKEND, else numba, or numpy where Numba is missing)")
    # --model, --epochs and --seed default to None, filled in from DEFAULTS by run(), so that --resume
    # tells an option given on the command line (--epochs 5 included) from one left unset.
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 5)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default 64; 86 for MnistDeepCNN)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-3)")
    p.add_argument("--model", choices=sorted(models.MODELS), default=None,
                   help="network (default MnistCNN); it sets the defaults of the options below, see RECIPES")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=None,
                   help="optimizer (default adam; rmsprop with alpha 0.9 for MnistDeepCNN)")
    p.add_argument("--scheduler", choices=SCHEDULERS, default=None,
                   help="learning-rate schedule (default cosine: anneal to 0 over the run, per batch; "
                        "plateau on the validation accuracy for MnistDeepCNN)")
    p.add_argument("--no-augment", action="store_true", help="train without random rotation/translation/zoom")
    p.add_argument("--zoom", type=float, default=None,
                   help="random zoom of up to this fraction, 0.1 for 0.9x-1.1x (default 0; 0.1 for MnistDeepCNN)")
    p.add_argument("--zoom-each-axis", action=argparse.BooleanOptionalAction, default=None,
                   help="draw the horizontal and vertical zoom apart, as Keras does (default: one zoom for "
                        "both; each axis its own for MnistDeepCNN)")
    p.add_argument("--val-split", type=float, default=None,
                   help="fraction of the training images held out for validation (default 0; 0.1 for MnistDeepCNN)")
    p.add_argument("--seed", type=int, default=None, help="seed for weights, shuffling and augmentation (default 0)")
    p.add_argument("--data-dir", default=None, type=path_argument,
                   help="folder of MNIST-layout IDX files (default: MINICNN_DATA, else the bundled MNIST)")
    p.add_argument("--limit", type=int, default=None, help="train on the first N training images only")
    p.add_argument("--out", default=None, type=path_argument,
                   help="folder for model.npz, history.json, metrics.json and the reports (replaced together, "
                        f"when the run succeeds), and {CHECKPOINT} after every epoch; one run at a time")
    p.add_argument("--resume", metavar="DIR_OR_FILE", default=None, type=path_argument,
                   help=f"continue the run whose checkpoint this is (DIR/{CHECKPOINT}), with its settings, "
                        f"into --out (default: the checkpoint's folder)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_fuse_argument(p)
    return p


def add_fuse_argument(p: argparse.ArgumentParser) -> None:
    """``--no-fuse``, shared by every command that runs a network."""
    p.add_argument("--no-fuse", action="store_true",
                   help="run the layers one by one, as written (default: where the backend has fused kernels, "
                        "each Conv2d -> ReLU (-> MaxPool2d) run is one fused module, named in one line)")


#: How the command line words the rules of :mod:`minicnn.validate` it uses for counts.
_COUNT_WORDS = {">= 0": "non-negative", "> 0": "positive"}


def main(argv=None) -> dict:
    """Parse ``argv`` (as ``examples/train_mnist.py`` and ``minicnn train`` do) and train; errors raise."""
    parser = build_parser()
    return run(parser, parser.parse_args(argv))


# What `minicnn train --out` writes, and the settings a checkpoint keeps so that --resume continues the same run.
CHECKPOINT = "checkpoint.npz"
RUN_FILES = ("model.npz", "history.json", "metrics.json", CHECKPOINT, *TRAINING_REPORTS)
SETUP = ("model", "epochs", "batch_size", "optimizer", "lr", "scheduler", "no_augment", "zoom", "zoom_each_axis",
         "val_split", "seed", "limit")
#: The settings a checkpoint of an earlier minicnn may lack, with the value such a run had.
SETUP_BEFORE = {"zoom_each_axis": False}


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """Train and evaluate as ``args`` say; returns the metrics dict (also written with ``--out``)."""
    resume, data = _resume_point(parser, args) if args.resume else (None, None)
    for name, value in DEFAULTS.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    recipe = RECIPES[args.model]
    for name in ("optimizer", "lr", "batch_size", "scheduler", "val_split", "zoom", "zoom_each_axis"):
        if getattr(args, name, None) is None:
            setattr(args, name, recipe[name])
    for option, value, rule in (("--epochs", args.epochs, ">= 0"), ("--batch-size", args.batch_size, "> 0"),
                                ("--limit", args.limit, "> 0"), ("--seed", args.seed, ">= 0")):
        if value is not None and not satisfies(value, rule):
            parser.error(f"{option} must be {_COUNT_WORDS[rule]}, got {value}")
    if not (is_finite_real(args.lr) and satisfies(args.lr, "> 0")):
        parser.error(f"--lr must be a finite number > 0, got {args.lr}")
    if not (is_finite_real(args.zoom) and satisfies(args.zoom, "in [0, 1)")):
        parser.error(f"--zoom must be in [0, 1), got {args.zoom}")
    if not (is_finite_real(args.val_split) and satisfies(args.val_split, "in [0, 1)")):
        parser.error(f"--val-split must be in [0, 1), got {args.val_split}")
    if resume is not None and args.out is None:
        args.out = resume.parent
    out = output_folder(parser, "--out", args.out, RUN_FILES) if args.out else None
    with claim(out, "minicnn train") if out else contextlib.nullcontext() as leftovers:
        if leftovers:
            print(f"Removed what an interrupted run left in {out}: {', '.join(leftovers)}")
        return _train(parser, args, out, resume, data)


#: What a checkpoint's setting must be, as the command line's option and its checks allow: (test, wording).
_SETTING_RULES = {
    "model": (lambda v: isinstance(v, str) and v in models.MODELS, f"one of {', '.join(sorted(models.MODELS))}"),
    "epochs": (lambda v: is_int(v, 0), "a non-negative integer"),
    "batch_size": (lambda v: is_int(v, 1), "a positive integer"),
    "optimizer": (lambda v: isinstance(v, str) and v in OPTIMIZERS, f"one of {', '.join(sorted(OPTIMIZERS))}"),
    "lr": (lambda v: is_finite_real(v) and satisfies(v, "> 0"), "a finite number > 0"),
    "scheduler": (lambda v: isinstance(v, str) and v in SCHEDULERS, f"one of {', '.join(SCHEDULERS)}"),
    "no_augment": (lambda v: isinstance(v, bool), "true or false"),
    "zoom": (lambda v: is_finite_real(v) and satisfies(v, "in [0, 1)"), "a number in [0, 1)"),
    "zoom_each_axis": (lambda v: isinstance(v, bool), "true or false"),
    "val_split": (lambda v: is_finite_real(v) and satisfies(v, "in [0, 1)"), "a number in [0, 1)"),
    "seed": (lambda v: is_int(v, 0), "a non-negative integer"),
    "limit": (lambda v: v is None or is_int(v, 1), "a positive integer or null (no --limit)"),
}


def _resume_point(parser, args) -> tuple[Path, dict | None]:
    """The checkpoint ``--resume`` names (a file, or a folder's checkpoint.npz), and the data its run was
    trained on (None for a checkpoint from before minicnn recorded it); ``args`` take its settings.

    Each setting is checked as its option would be (a bad one is a :class:`CheckpointError` naming the
    checkpoint and the setting).  An option given on the command line that differs from the checkpoint's
    setting is a usage error, even where it equals the option's default: the run continues as it was set
    up, so that it ends as the uninterrupted run would have.
    """
    path = args.resume / CHECKPOINT if args.resume.is_dir() else args.resume
    if not path.is_file():
        parser.error(f"--resume {args.resume}: no checkpoint {path} (minicnn train --out DIR writes "
                     f"DIR/{CHECKPOINT} after every epoch)")
    setup = read_checkpoint_extra(path).get("setup")
    if isinstance(setup, dict):
        setup = {**SETUP_BEFORE, **setup}
    if not (isinstance(setup, dict) and set(SETUP) <= set(setup)):
        raise CheckpointError(f"{path} holds no minicnn train settings (it was not written by minicnn train "
                              f"--out); continue it with minicnn.training.fit(..., resume_from=...)")
    for key in SETUP:
        test, wording = _SETTING_RULES[key]
        if not test(setup[key]):
            raise CheckpointError(f"{path}: its setting {key} is {_shown(setup[key])}; expected {wording}, as "
                                  f"--{key.replace('_', '-')} takes")
    data = setup.get("data")
    if data is not None and not _is_data_identity(data):
        raise CheckpointError(f"{path}: its setting data is {_shown(data)}; expected "
                              f'{{"folder": "...", "sha256": {{file name: hex digest}}}} of the {len(_DATA_FILES)} '
                              f"MNIST files")
    for key in SETUP:
        given, default, saved = getattr(args, key), parser.get_default(key), setup[key]
        if given != default and given != saved:  # the default is None (no_augment: False) unless given
            option = "--" + key.replace("_", "-")
            why = ""
            if key == "epochs":
                why = (f" (it ends where the uninterrupted run of {saved} would have"
                       f"{'; its cosine schedule spans those epochs' if setup['scheduler'] == 'cosine' else ''}: "
                       f"train longer in a new run)")
            parser.error(f"{option} {given}: the run in {path} was set up with {option} {saved}; --resume "
                         f"continues a run with its own settings{why}")
        setattr(args, key, saved)
    return path, data


def _shown(value) -> str:
    """A checkpoint's value as its JSON says it, cut short."""
    text = json.dumps(value) if value is None or isinstance(value, (bool, str, int, float, list, dict)) \
        else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


#: The files whose content digests identify a run's data.
_DATA_FILES = (*MNIST_FILES["train"], *MNIST_FILES["test"])


def _is_data_identity(data) -> bool:
    return (isinstance(data, dict) and set(data) == {"folder", "sha256"} and isinstance(data["folder"], str)
            and isinstance(data["sha256"], dict) and set(data["sha256"]) == set(_DATA_FILES)
            and all(isinstance(v, str) and len(v) == 64 for v in data["sha256"].values()))


def _data_identity(root) -> tuple[dict, str]:
    """The folder ``load_mnist(root=root)`` reads and the SHA-256 of each file's content: the digest its
    ``SHA256SUMS`` lists under the content's name (which the loader has checked), else computed; and
    where the folder came from (--data-dir, MINICNN_DATA, the bundled copy)."""
    folder, origin, files = mnist_files(root)
    sums_path = folder / "SHA256SUMS"
    sums = read_sha256sums(sums_path) if sums_path.is_file() else {}
    return {"folder": str(folder),
            "sha256": {name: sums.get(name) or content_sha256(files[name]) for name in _DATA_FILES}}, origin


def _check_data(parser, path: Path, saved: dict, now: dict, origin: str) -> None:
    """A usage error when the data of this run (``now``) is not the data the checkpoint's run had (``saved``)."""
    for name in _DATA_FILES:
        if saved["sha256"][name] != now["sha256"][name]:
            parser.error(f"--resume: the run in {path} was trained on {saved['folder']} ({name} SHA-256 "
                         f"{saved['sha256'][name][:16]}...), not on {now['folder']} (from {origin}; SHA-256 "
                         f"{now['sha256'][name][:16]}...); --resume continues a run on its own data")


def _train(parser, args, out: Path | None, resume: Path | None, data: dict | None = None) -> dict:
    if args.backend:
        minicnn.set_backend(args.backend)
    backend = minicnn.get_backend()

    images, labels = load_mnist("train", root=args.data_dir)
    test_images, test_labels = load_mnist("test", root=args.data_dir)
    for split, part in (("train", images), ("test", test_images)):
        if len(part) == 0:  # found now, not after the epochs
            raise DataError(f"{mnist_files(args.data_dir)[2][MNIST_FILES[split][0]]} holds 0 images: minicnn train "
                            f"needs at least one training image and one test image")
    identity, origin = _data_identity(args.data_dir) if out is not None or resume is not None else (None, None)
    if data is not None:  # (a checkpoint from before minicnn recorded its data has none)
        _check_data(parser, resume, data, identity, origin)
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    val_loader = None
    if args.val_split > 0:
        n = len(images)
        (images, labels), (val_images, val_labels) = train_val_split(images, labels, args.val_split, seed=args.seed)
        for part, count in (("training", len(images)), ("validation", len(val_images))):
            if count == 0:
                parser.error(f"--val-split {args.val_split} of {n:,} image{'s' * (n != 1)}"
                             f"{f' (--limit {args.limit})' if args.limit else ''} leaves 0 {part} images")
        val_loader = DataLoader(val_images, val_labels, batch_size=1000, transform=mnist_eval_transform())

    try:
        check_fits(args.model, min(args.batch_size, len(images)))  # a training step must fit (minicnn/memory.py)
    except ValueError as exc:
        parser.error(str(exc))
    rng = np.random.default_rng(args.seed)
    zoom = (1.0 - args.zoom, 1.0 + args.zoom) if args.zoom > 0 else None
    train_loader = DataLoader(images, labels, batch_size=args.batch_size, shuffle=True, generator=rng,
                              transform=mnist_train_transform(augment=not args.no_augment, scale=zoom,
                                                              scale_each_axis=args.zoom_each_axis))
    test_loader = DataLoader(test_images, test_labels, batch_size=1000, transform=mnist_eval_transform())

    model, fused = fuse_for(models.get_model(args.model, seed=args.seed), backend, not args.no_fuse)
    criterion = nn.NLLLoss()
    recipe = RECIPES[args.model]
    optimizer_class, optimizer_args = OPTIMIZERS[args.optimizer]
    optimizer = optimizer_class(model.parameters(), lr=args.lr, **optimizer_args)
    monitor = recipe["monitor"] if val_loader is not None else recipe["monitor"].replace("val_", "train_")
    interval = "epoch"
    if args.scheduler == "cosine":
        scheduler, interval = optim.CosineAnnealingLR(optimizer, T_max=max(1, args.epochs * len(train_loader))), "batch"
    elif args.scheduler == "step":
        scheduler = optim.StepLR(optimizer, step_size=1, gamma=0.5)
    elif args.scheduler == "plateau":
        scheduler = optim.ReduceLROnPlateau(optimizer, **recipe["plateau"])
    else:
        scheduler = None

    epochs = f"{args.epochs} epoch" + ("" if args.epochs == 1 else "s")
    each = ", each axis" if args.zoom_each_axis else ""
    augmentation = "off" if args.no_augment else "on" + (f" (zoom {args.zoom:.0%}{each})" if zoom else "")
    held_out = f", {len(val_images):,} validation images" if val_loader is not None else ""
    print(f"minicnn {minicnn.__version__}: {args.model} on {len(images):,} training images{held_out}, "
          f"backend {backend.name}, {epochs}, batch {args.batch_size}, {optimizer_class.__name__} lr {args.lr}, "
          f"scheduler {args.scheduler}{f' on {monitor}' if args.scheduler == 'plateau' else ''}, "
          f"augmentation {augmentation}" + (f"; resuming {resume}" if resume else ""))
    if fused:
        print(fused)
    checkpoint = out / CHECKPOINT if out is not None else None
    found = _identity(checkpoint)
    # How to go on after a stop: the run's folder, and the data it was trained on (not in its checkpoint).
    again = f"minicnn train --resume {shlex.quote(str(out))}" + (
        f" --data-dir {shlex.quote(str(args.data_dir))}" if args.data_dir is not None else "")

    def kept(after_failure: bool = False) -> str:
        return _kept(model, out, found, resume, again, after_failure)

    start = time.perf_counter()
    try:
        # A diverging loss overflows on its way to NaN; fit reports it once, by epoch and batch.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            history = fit(model, criterion, optimizer, train_loader, args.epochs, val_loader=val_loader,
                          scheduler=scheduler, scheduler_interval=interval, plateau_metric=monitor,
                          progress=False if args.quiet else None, checkpoint_path=checkpoint, resume_from=resume,
                          checkpoint_extra={"setup": {**{key: getattr(args, key) for key in SETUP},
                                                       **({"data": identity} if identity else {})}})
    except TrainingDivergedError as exc:
        raise TrainingDivergedError(f"{exc}{kept()}", exc.epoch, exc.batch,
                                    exc.history) from None
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"during training{kept()}") from None
    except OSError as exc:
        if checkpoint is None or exc.filename != str(checkpoint) or exc.strerror is None:
            raise
        # A later epoch's checkpoint could not be written (a full disk): the earlier one is still whole.
        raise type(exc)(exc.errno, exc.strerror + kept(after_failure=True),
                        exc.filename) from None
    seconds = this_run = time.perf_counter() - start
    if resume:  # the whole run's time: the epochs before the checkpoint as they ran, then this run's
        seconds = float(sum(history.to_dict()["seconds"]))
    # Ctrl-C from here on: the folder keeps this run's files, all of them or those of its last epoch.
    finished = _identity(out / "metrics.json") if out is not None else None
    try:
        test = evaluate(model, test_loader, criterion, return_predictions=out is not None)
        print(f"Test accuracy: {test['accuracy']:.4f} ({test['accuracy'] * 100:.2f}%), "
              f"test loss {test['loss']:.4f}, training time {seconds:.1f}s"
              + (f" (the epochs' sum; {this_run:.1f}s in this run)" if resume else ""))

        metrics = {"test_accuracy": test["accuracy"], "test_loss": test["loss"], "epochs": args.epochs,
                   "backend": backend.name, "seconds": seconds, "model": args.model, "seed": args.seed,
                   "batch_size": args.batch_size, "lr": args.lr, "scheduler": args.scheduler,
                   "augment": not args.no_augment, "train_samples": int(len(images)),
                   "optimizer": args.optimizer, "zoom": args.zoom, "zoom_each_axis": args.zoom_each_axis,
                   "val_split": args.val_split}
        if out is not None:
            def write(folder: Path) -> list[str]:
                minicnn.save(model, folder / "model.npz")
                write_json_atomic(folder / "history.json", history.to_dict())
                write_json_atomic(folder / "metrics.json", metrics)
                return ["model.npz", "history.json", "metrics.json",
                        *save_reports(folder, history.to_dict(), test["targets"], test["predictions"])]

            # Curves this run did not draw (--epochs 0), and a checkpoint it did not write, are an older run's.
            ours = _ours(checkpoint, found, resume)
            stale = [*TRAINING_REPORTS, *([] if ours else [CHECKPOINT])]
            try:
                written = write_together(out, write, remove=stale)
            except OSError as exc:
                if not ours or exc.strerror is None:
                    raise
                raise type(exc)(exc.errno, f"{exc.strerror}; {out} holds the rest as it was, and this run's "
                                           f"checkpoint: {again} writes its files", exc.filename) from None
            print(f"Wrote {', '.join(written)} to {out}")
    except KeyboardInterrupt:
        if out is not None and _identity(out / "metrics.json") not in (None, finished):
            raise KeyboardInterrupt(f"as it ended; {out} holds all of this run's files") from None
        raise KeyboardInterrupt(f"after training, before its files were written{kept()}") from None
    return metrics


def _identity(path: Path | None):
    """What tells one version of the file at ``path`` from another (None: no file)."""
    if path is None or not path.is_file():
        return None
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


def _ours(checkpoint: Path, found, resume: Path | None) -> bool:
    """Whether ``checkpoint`` is this run's: written by it (not as ``found`` before it), or the one it resumed."""
    return _identity(checkpoint) != found or (resume is not None and resume.resolve() == checkpoint.resolve())


def _kept(model, out: Path | None, found, resume: Path | None, again: str, after_failure: bool = False) -> str:
    """After a stopped run, what ``out`` keeps, for the end of its one-line message.

    When an epoch is complete, its checkpoint is in ``out``: its weights and history are put beside it
    (and the older run's metrics and reports taken away, all together), and the line says how to resume
    (``again``, the command).
    ``after_failure``: the run stopped because a write failed (a full disk), so the line says the kept
    checkpoint is the last complete one, and what to do when its weights cannot be written either.
    """
    checkpoint = out / CHECKPOINT if out is not None else None
    if checkpoint is None:
        return ""
    if not _ours(checkpoint, found, resume):
        return f"; no epoch was complete, so {out} is as it was"
    extra = load_checkpoint(checkpoint, model)
    last = ", the last complete one" if after_failure else ""
    fix = "free some space and " if after_failure else ""

    def write(folder: Path) -> list[str]:
        minicnn.save(model, folder / "model.npz")
        write_json_atomic(folder / "history.json", extra["history"])
        return ["model.npz", "history.json"]

    try:
        write_together(out, write, remove=("metrics.json", *TRAINING_REPORTS))
    except OSError as exc:
        if exc.strerror is None:
            raise
        return (f"; {out} holds the checkpoint of epoch {extra['epoch']}{last} (its weights could not be put beside "
                f"it: {exc.strerror}): {fix}continue with {again}")
    return (f"; {out} holds the weights and checkpoint of epoch {extra['epoch']}{last}: {fix}continue with "
            f"{again}")

