"""Draw the pictures in docs/images/ from the code itself: ``python docs/figures.py [--out DIR]``.

im2col.png    an image numbered 1..16 and col = im2col(x), windows and their columns in one colour
col2im.png    col2im(ones) offset by offset and summed: how many windows hold each pixel
maxpool.png   max-pooling forward and dx = dy routed to the winners, disjoint and overlapping windows
feature_maps.png  one test digit after each conv block of MnistCNN trained for a moment

The first three come from :mod:`minicnn.diagrams`, which runs the reference kernels; each PNG keeps
a digest of the arrays it shows (PNG text key ``Source``), so ``tests/test_docs.py`` fails when the
kernels' output changes and the pictures were not drawn again.  The feature maps come from
:func:`minicnn.plots.plot_feature_maps` after ``FEATURE_TRAINING`` (one epoch on the first 2,048
training images, seed 0): a few seconds, enough for the filters to find strokes and edges.
CI runs this script (tests/test_docs.py); the files are replaced together (see
:func:`minicnn.paths.write_together`).

Docs: docs/convolution.md, docs/layers.md, docs/overview.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from minicnn import diagrams
from minicnn.plots import DPI
from minicnn.run_folder import write_together
from minicnn.serialization import write_atomic

IMAGES = Path(__file__).resolve().parent / "images"

#: The pictures drawn from a :class:`minicnn.diagrams.Example`: file name -> (examples, plot function).
DIAGRAMS = {
    "im2col.png": (lambda: [diagrams.im2col_example(4, 2, 1)], lambda exs: diagrams.plot_im2col(exs[0])),
    "col2im.png": (lambda: [diagrams.col2im_example(4, 2, 1, 0), diagrams.col2im_example(6, 3, 2, 0)],
                   diagrams.plot_col2im),
    "maxpool.png": (lambda: [diagrams.maxpool_example(2, 2), diagrams.maxpool_example(2, 1)],
                    diagrams.plot_maxpool),
}
FEATURE_MAPS = "feature_maps.png"
FEATURE_TRAINING = {"images": 2048, "epochs": 1, "seed": 0, "batch_size": 64, "lr": 1e-3}


def source_digest(examples) -> str:
    """One line naming what a picture shows: the digests of its examples, joined by spaces."""
    return " ".join(ex.digest() for ex in examples)


def _save(fig, path: Path, source: str | None = None) -> None:
    # "Software" left out: the PNG then depends on what is drawn, not on the matplotlib version.
    metadata = {"Software": None, **({"Source": source} if source else {})}
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=DPI, metadata=metadata))


def trained_model():
    """MnistCNN after ``FEATURE_TRAINING``, in eval mode."""
    from minicnn import models, nn, optim
    from minicnn.data import DataLoader, load_mnist, mnist_train_transform
    from minicnn.training import fit

    t = FEATURE_TRAINING
    images, labels = load_mnist("train")
    rng = np.random.default_rng(t["seed"])
    model = models.MnistCNN(seed=t["seed"])
    loader = DataLoader(images[:t["images"]], labels[:t["images"]], batch_size=t["batch_size"], shuffle=True,
                        generator=rng, transform=mnist_train_transform())
    fit(model, nn.NLLLoss(), optim.Adam(model.parameters(), lr=t["lr"]), loader, epochs=t["epochs"],
        progress=False, log=None)
    return model.eval()


def draw(out: Path) -> list[str]:
    """Write every picture into the folder ``out`` (replacing them together); returns the file names."""
    from minicnn.data import load_mnist
    from minicnn.plots import plot_feature_maps

    def write(folder: Path) -> list[str]:
        for name, (make, plot) in DIAGRAMS.items():
            examples = make()
            _save(plot(examples), folder / name, source_digest(examples))
        digit = load_mnist("test")[0][0]
        _save(plot_feature_maps(trained_model(), digit, max_maps=32), folder / FEATURE_MAPS)
        return [*DIAGRAMS, FEATURE_MAPS]

    out.mkdir(parents=True, exist_ok=True)
    return write_together(out, write)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="docs/figures.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=IMAGES, help=f"folder for the PNGs (default {IMAGES})")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file, expected a folder")
    try:
        names = draw(args.out)
    except OSError as e:
        parser.error(f"cannot write the pictures to {args.out}: {e.strerror or e}")
    print(f"Wrote {', '.join(names)} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
