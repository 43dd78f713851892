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

import minicnn
from minicnn.recipes import main

if __name__ == "__main__":
    try:
        main()
    except (ValueError, minicnn.BackendUnavailableError) as exc:
        sys.exit(f"error: {exc}")
