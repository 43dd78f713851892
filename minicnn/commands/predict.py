"""``minicnn predict WEIGHTS IMAGE [IMAGE ...]``: the digit in each photo or scan, with its probability."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from minicnn.commands.common import add_model_arguments, error, load_model, warn
from minicnn.paths import output_folder, path_argument

HELP = "read the digit in each image file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("images", nargs="+", help="image files, one handwritten digit each")
    p.add_argument("--save-input", metavar="DIR", type=path_argument,
                   help="also save each preprocessed 28x28 input there, as NAME_28x28.png "
                        "(NAME_2_28x28.png, ... for inputs of the same name)")


def _input_name(path: str, taken: dict) -> str:
    """``digit_28x28.png`` for ``digit.png``, or ``digit_2_28x28.png``, ``digit_3_28x28.png``... if that is taken."""
    stem = Path(path).stem
    name, n = f"{stem}_28x28.png", 1
    while taken.get(name, path) != path:
        n += 1
        name = f"{stem}_{n}_28x28.png"
    taken[name] = path
    return name


def run(args, parser: argparse.ArgumentParser) -> int:
    """Print each image's digit, or its error; status 1 when any image could not be read."""
    from PIL import Image

    from minicnn.imaging import preprocess_digit
    from minicnn.inference import predict
    from minicnn.serialization import write_atomic

    model, say_fused = load_model(args)
    folder = output_folder(parser, "--save-input", args.save_input) if args.save_input else None
    say_fused(sys.stderr)  # standard output holds the digits alone
    taken, failed = {}, 0
    for path in args.images:
        try:
            x, raw = preprocess_digit(path, return_raw=True)
        except ValueError as exc:
            error(parser, exc)
            failed += 1
            continue
        (digit,), (confidence,) = predict(model, x)
        print(f"{path}: {digit} ({confidence * 100:.1f}%)", flush=True)
        if folder:
            name = _input_name(path, taken)
            first = f"{Path(path).stem}_28x28.png"
            if name != first:
                warn(parser, f"{folder / first} holds the input of {taken[first]}, so the input of {path} "
                             f"is saved as {folder / name}")
            write_atomic(folder / name, lambda f: Image.fromarray(raw).save(f, format="PNG"))
    if failed and len(args.images) > 1:
        error(parser, f"{failed} of {len(args.images)} images could not be read")
    return 1 if failed else 0
