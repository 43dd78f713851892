"""What several commands share: a problem or a warning in one line, and the network a weights file holds.

    error(parser, message)      "minicnn COMMAND: error: ..." on stderr; returns 1, the exit status
    warn(parser, message)       "minicnn COMMAND: warning: ..." on stderr
    add_model_arguments(p)      WEIGHTS, --model, --backend and --no-fuse (evaluate, predict, serve)
    load_model(args)            the network of WEIGHTS, fused where the backend has fused kernels
"""
from __future__ import annotations

import argparse
import sys

import minicnn
from minicnn import models
from minicnn.paths import path_argument


def error(parser: argparse.ArgumentParser, message) -> int:
    """Print ``message`` as one line, ``PROG: error: message``, on stderr; return 1 (the exit status)."""
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return 1


def warn(parser: argparse.ArgumentParser, message) -> None:
    """Print ``message`` as one line, ``PROG: warning: message``, on stderr."""
    print(f"{parser.prog}: warning: {message}", file=sys.stderr)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The weights file, ``--model``, ``--backend`` and ``--no-fuse``: what a command that runs saved weights takes."""
    from minicnn.recipes import add_fuse_argument

    p.add_argument("weights", type=path_argument,
                   help="a .npz weights file (from --out of training, or minicnn.save)")
    p.add_argument("--model", choices=sorted(models.MODELS), default=None,
                   help="the network the weights belong to (default: read from the file's keys)")
    p.add_argument("--backend", choices=["numpy", "numba", "cupy"], default=None, help="array backend")
    add_fuse_argument(p)


def load_model(args):
    """``(model, say)``: the model of ``args.weights``, fused where the backend has fused kernels (unless
    ``--no-fuse``), and ``say(file)``, which prints the line naming what was fused (if anything was)."""
    from minicnn.inference import model_for_weights
    from minicnn.nn.fusion import fuse_for

    model, fused = fuse_for(model_for_weights(args.weights, args.model), minicnn.get_backend(), not args.no_fuse)
    return model, lambda file=None: fused and print(fused, file=file or sys.stdout, flush=True)
