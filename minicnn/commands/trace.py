"""``minicnn trace [--backend numba]``: every module and kernel call of a training step and an inference batch.

The records are :func:`minicnn.tracing.trace`'s.
"""
from __future__ import annotations

import argparse

import numpy as np

import minicnn
from minicnn import models
from minicnn.recipes import add_fuse_argument

HELP = "what runs, module by module and kernel by kernel, for one training step and one inference batch"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=sorted(models.MODELS), default="MnistCNN")
    p.add_argument("--backend", choices=["numpy", "numba", "cupy"], default=None, help="array backend")
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    add_fuse_argument(p)


def run(args, parser: argparse.ArgumentParser) -> None:
    """What runs for one training step and one inference batch of a network, as minicnn.trace records it."""
    from minicnn.data import load_mnist, mnist_eval_transform
    from minicnn.nn.fusion import fuse_for
    from minicnn.tracing import trace

    images, labels = load_mnist("test")
    if not 1 <= args.batch <= len(images):
        parser.error(f"--batch must be between 1 and {len(images):,} (the test images), got {args.batch}")
    backend = minicnn.get_backend()
    model, fused = fuse_for(models.get_model(args.model, seed=0), backend, not args.no_fuse)
    x = backend.asarray(mnist_eval_transform()(images[:args.batch]))
    y = backend.asarray(labels[:args.batch].astype(np.int64))
    criterion = minicnn.nn.NLLLoss()
    optimizer = minicnn.optim.Adam(model.parameters(), lr=1e-3)
    print(f"{args.model} on the {backend.name} backend, a batch of {args.batch}"
          + (f"; {fused}" if fused else "; no fused modules (the layers one by one)"))
    print(model)
    for title, step in (("training step: forward, loss, parameter_backward, Adam", lambda: _step(model, criterion,
                                                                                                optimizer, x, y)),
                        ("inference batch, under no_grad", lambda: _infer(model, x))):
        step()  # twice before, so that compiling and first allocations are not in the times
        step()
        with trace(model) as t:
            step()
        print(f"\n{title} ({len(t.calls)} calls)")
        print(t.table())


def _step(model, criterion, optimizer, x, y):
    model.train()
    criterion(model(x), y)
    model.parameter_backward(criterion.backward())
    optimizer.step()
    optimizer.zero_grad()


def _infer(model, x):
    model.eval()
    with minicnn.no_grad():
        return model(x)
