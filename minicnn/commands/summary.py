"""``minicnn summary [--model MnistCNN] [--fuse]``: layers, output shapes and parameter counts."""
from __future__ import annotations

import argparse

import minicnn
from minicnn import models

HELP = "layers, output shapes and parameter counts"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=sorted(models.MODELS), default="MnistCNN")
    p.add_argument("--fuse", action="store_true",
                   help="the network as train, evaluate, predict and serve run it on a backend with fused "
                        "kernels (numba): each Conv2d -> ReLU (-> MaxPool2d) run one fused module")


def run(args, parser: argparse.ArgumentParser) -> None:
    """Print :func:`minicnn.summary.summary` of the network (fused with ``--fuse``)."""
    from minicnn.summary import summary

    model = models.get_model(args.model or "MnistCNN", seed=0)
    print(summary(minicnn.nn.fuse(model) if args.fuse else model))
