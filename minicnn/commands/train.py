"""``minicnn train [--epochs 5 ...]``: the documented MNIST training.

The options and the run are :mod:`minicnn.recipes`'s, which ``examples/train_mnist.py`` runs too.
"""
from __future__ import annotations

import argparse

from minicnn import recipes

HELP = "train on MNIST (the options of examples/train_mnist.py)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    recipes.add_arguments(p)


def run(args, parser: argparse.ArgumentParser) -> None:
    """Train as the options say (:func:`minicnn.recipes.run`): data, model, optimizer, epochs, reports."""
    recipes.run(parser, args)
