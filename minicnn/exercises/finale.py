"""``minicnn exercise train``: MnistCNN built from every layer the learner has written, trained beside the reference.

The exercises that are done (their check passed and nothing changed since) are imported from the
workspace and put into the network where they run (network.py); every other layer is the
reference's.  Before it trains, the run says which exercise is the learner's and which the
reference's, and prints the model, in which each of the learner's layers names its files.  Then
two networks from one seed see the same batches in the same order: the learner's and the
reference's, on the NumPy backend, without fusion and without augmentation, for one epoch on the
first 10,000 training images.  Both are evaluated on the test images, and the learner's test
accuracy should be within one point of the reference's.

Docs: docs/exercises.md
"""
from __future__ import annotations

import time

import numpy as np

from minicnn import models
from minicnn.exercises import network, workspace
from minicnn.exercises.calls import wrap_all
from minicnn.exercises.catalog import EXERCISES
from minicnn.exercises.checking import numpy_backend

#: The target: the learner's test accuracy within this many points of the reference's.
TARGET_POINTS = 1.0
#: The exercises each network and optimizer use.
IN_MODEL = {"MnistCNN": ("relu", "linear", "log_softmax_nll", "im2col", "conv2d_forward", "col2im",
                         "conv2d_backward", "maxpool2d"),
            "MnistBNCNN": ("relu", "linear", "log_softmax_nll", "im2col", "conv2d_forward", "col2im",
                           "conv2d_backward", "maxpool2d", "dropout", "batchnorm2d")}
IN_OPTIMIZER = {"adam": "adam", "sgd": "sgd_momentum"}


def yours_in(folder) -> tuple[dict, dict, dict]:
    """(the learner's wrapped functions by exercise, their modules, why the others are not used)."""
    yours, modules, why = {}, {}, {}
    for name, exercise in EXERCISES.items():
        state = workspace.status(exercise, folder)
        if state != "done":
            why[name] = {"-": "not started", "started": "its check has not passed yet",
                         "changed": "changed since its check passed"}[state]
            continue
        module = workspace.load(exercise, workspace.file_of(folder, name))
        functions = wrap_all(exercise, module)
        functions.label = module.label
        yours[name], modules[name] = functions, module
    return yours, modules, why


def _imports(modules: dict, helper: str) -> list[str]:
    """The learner's files that call their own ``helper`` (im2col, col2im), which they import."""
    return [f"{name}.py" for name, module in modules.items()
            if name != helper and getattr(getattr(module, helper, None), "__module__", None) == helper]


def describe(model_name: str, optimizer: str, yours: dict, modules: dict, why: dict) -> list[str]:
    """Which exercise is the learner's in this run, which the reference's, and which this network does not use."""
    used = (*IN_MODEL[model_name], IN_OPTIMIZER[optimizer])
    mine = [name for name in used if name in yours]
    lines = [f"Yours: {', '.join(mine) if mine else 'none yet'}"]
    for helper, big in (("im2col", "conv2d_forward"), ("col2im", "conv2d_backward")):
        if helper in yours:
            inside = _imports(modules, helper)
            if big not in yours:
                inside.insert(0, f"the reference's {big.replace('_', ' ')} product")
            where = " and ".join(inside) if inside else "nothing: no file of yours imports it"
            lines.append(f"  your {helper} runs inside {where}")
    reference = [f"{name} ({why[name]})" for name in used if name not in yours]
    lines.append(f"The reference's: {', '.join(reference + ['flatten (a reshape: no exercise)'])}")
    unused = [name for name in EXERCISES if name not in used]
    hints = {"dropout": "--model MnistBNCNN", "batchnorm2d": "--model MnistBNCNN", "adam": "--optimizer adam",
             "sgd_momentum": "--optimizer sgd"}
    if unused:
        lines.append(f"Not in this run: {', '.join(f'{n} ({hints[n]})' for n in unused)}")
    return lines


def train(folder, model_name: str = "MnistCNN", optimizer: str = "adam", limit: int = 10_000,
          test_limit: int | None = None, epochs: int = 1, batch_size: int = 64, seed: int = 0, log=print) -> dict:
    """Train the learner's network and the reference's side by side; their test accuracies and the verdict."""
    with numpy_backend():
        return _train(folder, model_name, optimizer, limit, test_limit, epochs, batch_size, seed, log)


def _train(folder, model_name, optimizer, limit, test_limit, epochs, batch_size, seed, log) -> dict:
    from minicnn.data import DataLoader, load_mnist, mnist_eval_transform
    from minicnn.training import evaluate, fit

    yours, modules, why = yours_in(folder)
    images, labels = load_mnist("train")
    test_images, test_labels = load_mnist("test")
    images, labels = images[:limit], labels[:limit]
    if test_limit is not None:
        test_images, test_labels = test_images[:test_limit], test_labels[:test_limit]
    lr = network.LEARNING_RATES[optimizer]
    name = {"adam": "Adam", "sgd": f"SGD momentum {network.SGD_MOMENTUM}"}[optimizer]
    log(f"minicnn exercise train: {model_name} on {len(images):,} training images, {epochs} epoch"
        f"{'s' * (epochs != 1)}, batch {batch_size}, {name} lr {lr}, numpy backend, no fusion, no augmentation; "
        f"the workspace: {folder}")
    for line in describe(model_name, optimizer, yours, modules, why):
        log(line)

    results = {}
    for who, functions in (("yours", yours), ("reference", {})):
        model = network.assemble(models.get_model(model_name, seed=seed), functions)
        criterion = network.criterion_for(functions)
        opt = network.optimizer_for(optimizer, model.parameters(), functions, lr)
        if who == "yours":
            log(repr(model))
            log(f"loss: {criterion!r}; optimizer: {type(opt).__name__}"
                + (f" ({opt.source})" if hasattr(opt, "source") else ""))
        loader = DataLoader(images, labels, batch_size=batch_size, shuffle=True,
                            generator=np.random.default_rng(seed), transform=mnist_eval_transform())
        start = time.perf_counter()
        fit(model, criterion, opt, loader, epochs, log=lambda line, who=who: log(f"{who:<9}  {line}"))
        seconds = time.perf_counter() - start
        test = evaluate(model, DataLoader(test_images, test_labels, batch_size=1000, transform=mnist_eval_transform()))
        results[who] = {"accuracy": test["accuracy"], "seconds": seconds}

    difference = 100 * (results["reference"]["accuracy"] - results["yours"]["accuracy"])
    reached = abs(difference) <= TARGET_POINTS
    log(f"Test accuracy on {len(test_images):,} test images: yours {100 * results['yours']['accuracy']:.2f}% "
        f"({results['yours']['seconds']:.1f} s of training), the reference's "
        f"{100 * results['reference']['accuracy']:.2f}% ({results['reference']['seconds']:.1f} s)")
    log(f"{'Reached' if reached else 'Not reached'}: the two are {abs(difference):.2f} points apart; the target is "
        f"at most {TARGET_POINTS:g}" + ("" if reached else
                                          " (every layer of yours passed its check: look at what the network does "
                                          "differently, float32 and batches of 64)"))
    return {"yours": results["yours"], "reference": results["reference"], "difference_points": difference,
            "reached": reached, "train_samples": len(images), "test_samples": len(test_images),
            "exercises": sorted(yours)}
