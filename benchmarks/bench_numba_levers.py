"""What each of the Numba backend's convolution levers buys, measured side by side in one process.

    python benchmarks/bench_numba_levers.py                 # MnistCNN, batch 64 training, batch 1000 inference
    python benchmarks/bench_numba_levers.py --rounds 9 --json levers.json

The levers are switched on one after the other (each configuration includes the ones above it):

    reference conv      the reference convolution (whole-batch im2col, columns kept) and the
                        full backward pass, dL/dx of the images included
    + no image grad     ``model.parameter_backward``: conv1 computes no gradient for the images
    + rows              numba_conv's convolution for every convolution (conv1 too): rows (one
                        window per row, channels last) in training, blocked rows in inference
    + direct conv1      the direct kernels for the stride-1 convolutions of few rows
    + fused inference   conv -> ReLU -> max-pool as one kernel under no_grad (inference only)
    + one Adam pass     Adam's step over all of a group's tensors in one parallel loop (training only)
    + ReLU in the conv  training's Conv2d -> ReLU pairs: the output clipped as the convolution
                        stores it, ReLU's mask applied as its backward reads dY (training only)
    + pool in the conv  training's Conv2d -> ReLU -> MaxPool2d runs: pooled, clipped and the argmax
                        noted as the convolution stores its product, dY built from dz in one pass
                        (training only)
    + Winograd conv2    training's Conv2d -> ReLU -> MaxPool2d runs with a 3 x 3 convolution of stride
                        1 (conv2) by Winograd's F(2 x 2, 3 x 3): 16 multiplies for each 2 x 2 output
                        tile and channel instead of 36, pooled as the tiles are transformed back
                        (training only); with it, everything the package does by default
    + 1 BLAS thread     the same with BLAS held to one thread (threadpoolctl, when installed)

The rounds visit the configurations in turn (and PyTorch, when installed, in a process of its
own: see minicnn/bench.py), so a machine that speeds up or slows down affects them alike; each
figure is the median over the rounds of the median step; a configuration that changes only
training or only inference is measured on that alone.  Also timed: the optimizer's step alone,
conv2's forward product in both orientations, ``(OC, K) @ (K, N*P)`` and ``(N*P, K) @ (K, OC)``
(the rows' product, whose output is channels last), and, with everything on, each step of a
training pass (a fused run counts as one step).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import sys
import time

import minicnn  # noqa: F401  (before NumPy: it sets OpenBLAS's thread timeout, see minicnn/threads.py)
import numpy as np

from minicnn import bench
from minicnn.cli import run_numba_script
from minicnn.paths import path_argument

CONFIGS = ("reference conv", "+ no image grad", "+ rows", "+ direct conv1", "+ fused inference", "+ one Adam pass",
           "+ ReLU in the conv", "+ pool in the conv", "+ Winograd conv2", "+ 1 BLAS thread")

_CONV, _FUSED, _ADAM_MANY = ("conv2d", "conv2d_backward"), "conv2d_relu_maxpool2d", "adam_update_many"
_RELU = ("conv2d_relu", "conv2d_relu_backward",  # without them: the references, the layers' functions in turn
         "conv2d_relu_maxpool2d_train", "conv2d_relu_maxpool2d_backward")
_POOL = _RELU[2:]

#: Each configuration: the overrides it goes without (the reference runs in their place), whether the
#: direct kernels are on (numba_conv._DIRECT_MAX_K, 0 for none) and whether Winograd's path is
#: (numba_conv._WINOGRAD).  (The columns and blocked layouts of the convolution that earlier rows
#: measured were removed; their figures are in docs/backends.md.)
_ALL = (*_CONV, _FUSED, _ADAM_MANY, *_RELU)
SETTINGS = {
    "reference conv": dict(without=_ALL, direct=False),
    "+ no image grad": dict(without=_ALL, direct=False),
    "+ rows": dict(without=(_FUSED, _ADAM_MANY, *_RELU), direct=False),
    "+ direct conv1": dict(without=(_FUSED, _ADAM_MANY, *_RELU), direct=True),
    "+ fused inference": dict(without=(_ADAM_MANY, *_RELU), direct=True),
    "+ one Adam pass": dict(without=_RELU, direct=True),
    "+ ReLU in the conv": dict(without=_POOL, direct=True),
    "+ pool in the conv": dict(without=(), direct=True),
    "+ Winograd conv2": dict(without=(), direct=True, winograd=True),
    "+ 1 BLAS thread": dict(without=(), direct=True, winograd=True),
}

#: What each configuration changes, so what it is measured on: "train" steps, "infer" calls, or both.
MEASURED = {"+ no image grad": ("train",), "+ fused inference": ("infer",), "+ one Adam pass": ("train",),
            "+ ReLU in the conv": ("train",), "+ pool in the conv": ("train",), "+ Winograd conv2": ("train",)}


@contextlib.contextmanager
def configured(backend, name):
    """The numba backend as configuration ``name`` has it (overrides and switches put back afterwards)."""
    from minicnn.backend import numba_conv  # needs Numba: imported once the numba backend has loaded

    settings = SETTINGS[name]
    saved = {k: backend.overrides[k] for k in settings["without"]}
    switches = numba_conv._DIRECT_MAX_K, numba_conv._WINOGRAD
    limits = contextlib.nullcontext()
    try:
        for k in saved:
            del backend.overrides[k]  # the reference runs, as on the NumPy backend
        if not settings["direct"]:
            numba_conv._DIRECT_MAX_K = 0
        numba_conv._WINOGRAD = settings.get("winograd", False)
        if name == "+ 1 BLAS thread":
            from threadpoolctl import threadpool_limits
            limits = threadpool_limits(1, user_api="blas")
        with limits:
            yield
    finally:
        backend.overrides.update(saved)
        numba_conv._DIRECT_MAX_K, numba_conv._WINOGRAD = switches


def step_seconds(runner, steps, full_backward=False):
    """Median seconds of one training step over ``steps`` steps (``full_backward``: dL/dx of the images too)."""
    step = (lambda: runner.train_step(image_grad=True)) if full_backward else runner.train_step
    return bench.median_seconds(step, steps)


def optimizer_seconds(runner, reps=50):
    """Median seconds of Adam's step over every parameter (gradients filled by one backward pass first)."""
    x, y = runner.batches[bench.TRAIN_BATCH]
    runner.model.train()
    runner.loss(runner.model(x), y)
    runner.model.parameter_backward(runner.loss.backward())
    seconds = bench.median_seconds(runner.opt.step, reps)
    runner.opt.zero_grad()
    return seconds


def step_breakdown(runner, reps=21):
    """Median forward and backward milliseconds of each step of the model's training pass at batch 64,
    as the runner's model runs it (a fused Conv2d -> ReLU -> MaxPool2d module is one step), and of the loss and
    the optimizer's step: [(name, forward ms, backward ms or None)]."""
    x, y = runner.batches[bench.TRAIN_BATCH]
    model, loss, opt = runner.model, runner.loss, runner.opt
    model.train()
    steps = list(model.children())  # the model as the runner trains it: fused modules where it fused
    labels = [" -> ".join(s.names) if hasattr(s, "names") else name for name, s in model.named_children()]
    fwd, bwd = [[] for _ in steps], [[] for _ in steps]
    loss_ms, opt_ms = [], []
    for _ in range(reps):
        h = x
        for i, s in enumerate(steps):
            t0 = time.perf_counter()
            h = s(h)
            fwd[i].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loss(h, y)
        g = loss.backward()
        loss_ms.append(time.perf_counter() - t0)
        for i in reversed(range(len(steps))):
            t0 = time.perf_counter()
            g = steps[i].parameter_backward(g) if i == 0 else steps[i].backward(g)
            bwd[i].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        opt.step()
        opt.zero_grad()
        opt_ms.append(time.perf_counter() - t0)
    rows = [(label, statistics.median(f) * 1e3, statistics.median(b) * 1e3) for label, f, b in zip(labels, fwd, bwd)]
    return rows + [("loss, forward and backward", statistics.median(loss_ms) * 1e3, None),
                   ("optimizer step", statistics.median(opt_ms) * 1e3, None)]


def _configured_seconds(backend, name, measure, *args):
    with configured(backend, name):
        return measure(*args)


def product_orientations(n=bench.TRAIN_BATCH, reps=21):
    """Median seconds of conv2's forward product as (64, 288) @ (288, N*196) and as (N*196, 288) @ (288, 64)."""
    rng = np.random.default_rng(0)
    w, cols = rng.standard_normal((64, 288), dtype=np.float32), rng.standard_normal((288, n * 196), dtype=np.float32)
    cols_t, w_t = np.ascontiguousarray(cols.T), np.ascontiguousarray(w.T)
    return {name: bench._product_seconds(a, b, reps, sync=lambda: None)
            for name, a, b in (("(OC, K) @ (K, N*P)", w, cols), ("(N*P, K) @ (K, OC)", cols_t, w_t))}


def run(rounds=7, steps=15, infer_calls=3, torch_reference=True):
    x, y = bench._mnist_batch(bench.INFER_BATCH)
    runner = bench._Minicnn("numba", x, y)
    backend = runner.backend
    configs = list(CONFIGS)
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        configs.remove("+ 1 BLAS thread")
    torch_runner = None
    if torch_reference and importlib.util.find_spec("torch") is not None:
        torch_runner = bench._TorchProcess(len(x))  # in a process of its own: see minicnn/bench.py
    try:
        return _measure(runner, backend, configs, torch_runner, rounds, steps, infer_calls)
    finally:
        if torch_runner is not None:
            torch_runner.close()


def _measure(runner, backend, configs, torch_runner, rounds, steps, infer_calls):
    train = {c: [] for c in configs}
    infer = {c: [] for c in configs}
    torch_train, torch_infer = [], []
    for c in configs:  # warm-up: compile every kernel of every configuration
        with configured(backend, c):
            step_seconds(runner, 2, full_backward=c == "reference conv")
            runner.infer()
    if torch_runner is not None:
        torch_runner.warm_up([bench.TRAIN_BATCH])
    for _ in range(rounds):
        for c in configs:
            with configured(backend, c):
                if "train" in MEASURED.get(c, ("train",)):
                    train[c].append(step_seconds(runner, steps, full_backward=c == "reference conv"))
                if "infer" in MEASURED.get(c, ("infer",)):
                    infer[c].append(bench.median_seconds(runner.infer, infer_calls))
        if torch_runner is not None:
            torch_train.append(torch_runner.train_median(steps))
            torch_infer.append(torch_runner.infer_median(infer_calls))
    report = {
        "machine": bench.machine_description(), "rounds": rounds, "steps": steps,
        "train_images_per_s": {c: bench.TRAIN_BATCH / statistics.median(v) for c, v in train.items() if v},
        "infer_images_per_s": {c: bench.INFER_BATCH / statistics.median(v) for c, v in infer.items() if v},
        "optimizer_step_ms": {label: _configured_seconds(backend, c, optimizer_seconds, runner) * 1e3
                              for label, c in (("a kernel per tensor", "+ fused inference"),
                                               ("one pass", "+ one Adam pass"))},
        "conv2_product_ms": {k: v * 1e3 for k, v in product_orientations().items()},
        "steps_ms": [list(row) for row in _configured_seconds(backend, "+ Winograd conv2", step_breakdown, runner)],
    }
    if torch_runner is not None:
        report["torch_train_images_per_s"] = bench.TRAIN_BATCH / statistics.median(torch_train)
        report["torch_infer_images_per_s"] = bench.INFER_BATCH / statistics.median(torch_infer)
    return report


def format_report(r) -> str:
    t_train, t_infer = r.get("torch_train_images_per_s"), r.get("torch_infer_images_per_s")
    lines = [f"Machine: {r['machine']}; medians of {r['rounds']} rounds of {r['steps']} steps", "",
             "| configuration | training img/s (batch 64) | vs PyTorch | inference img/s (batch 1000) | vs PyTorch |",
             "|---|---|---|---|---|"]
    for c in [c for c in CONFIGS if c in r["train_images_per_s"] or c in r["infer_images_per_s"]]:
        rate, inf = r["train_images_per_s"].get(c), r["infer_images_per_s"].get(c)
        lines.append(f"| {c} | {f'{rate:,.0f}' if rate else '(as above)'} | "
                     f"{f'{rate / t_train:.2f}x' if rate and t_train else '-'} | "
                     f"{f'{inf:,.0f}' if inf else '(as above)'} | "
                     f"{f'{inf / t_infer:.2f}x' if inf and t_infer else '-'} |")
    if t_train:
        lines.append(f"| pytorch-cpu | {t_train:,.0f} | 1.00x | {t_infer:,.0f} | 1.00x |")
    lines += ["", "Adam's step alone (MnistCNN's 8 tensors): " + ", ".join(
                  f"{k} {v:.2f} ms" for k, v in r["optimizer_step_ms"].items()),
              "conv2's forward product at batch 64: " + ", ".join(
                  f"{k} {v:.2f} ms" for k, v in r["conv2_product_ms"].items()),
              "", "A training pass at batch 64 as Sequential runs it, everything on (ms, medians):",
              "| step | forward | backward |", "|---|---|---|"]
    lines += [f"| {name} | {f:.2f} | {'-' if b is None else f'{b:.2f}'} |" for name, f, b in r["steps_ms"]]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_numba_levers.py", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7, help="rounds over the configurations (default 7)")
    p.add_argument("--steps", type=int, default=15, help="training steps per configuration and round (default 15)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    p.add_argument("--json", type=path_argument, help="write the report as JSON here")
    return p


def main(argv=None) -> int:
    return run_numba_script(build_parser(), argv, lambda args: run(args.rounds, args.steps, torch_reference=not args.no_torch), format_report)


if __name__ == "__main__":
    sys.exit(main())
