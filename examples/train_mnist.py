"""Train the documented MNIST network and report its test accuracy.

    python examples/train_mnist.py                       # 5 epochs, the documented setup
    python examples/train_mnist.py --epochs 1 --limit 6000 --no-augment   # a quick look
    python examples/train_mnist.py --model MnistBNCNN --epochs 15 --out runs/bn
    python examples/train_mnist.py --help                # every option

The whole recipe (data, model, optimizer, schedule, training loop,
evaluation) is ``minicnn/recipes.py``, short enough to read in one go; the
``minicnn train`` command runs the same code.
"""
import sys

from minicnn.cli import run_command
from minicnn.commands import train
from minicnn.recipes import build_parser
from minicnn.recipes import main  # noqa: F401 - main(["--epochs", "1"]): the same run from Python, returns the metrics

if __name__ == "__main__":
    parser = build_parser()
    # Errors as `minicnn train` reports them: one line, exit status 1 or 2, no traceback.
    sys.exit(run_command(parser, parser.parse_args(), train.run))
