"""Data: MNIST files, their checks, mini-batches and augmentation.

::

    idx.py         the IDX file format (MNIST's), read and validated
    checksums.py   SHA-256 of file contents and SHA256SUMS files
    mnist.py       load_mnist: the bundled MNIST, or any MNIST-style folder
    csv.py         load_mnist_csv: Kaggle's CSV layout
    download.py    download: mirrors in order, checksums, atomic writes
    transforms.py  normalize, random_affine and the MNIST input pipelines
    loader.py      DataLoader and train_val_split

A training loop over MNIST::

    import numpy as np
    from minicnn.data import DataLoader, load_mnist, mnist_train_transform

    images, labels = load_mnist("train")
    loader = DataLoader(images, labels, batch_size=64, shuffle=True,
                        generator=np.random.default_rng(0),
                        transform=mnist_train_transform())
    for x, y in loader:      # x float32 (64, 1, 28, 28), y int64 (64,), on the device
        ...

The bundled MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C.
Burges, under CC BY-SA 3.0 (see ``minicnn/data/mnist/README.md``).
"""
from minicnn.data.checksums import content_sha256, read_sha256sums
from minicnn.data.csv import load_mnist_csv
from minicnn.data.download import MNIST_MIRRORS, DownloadError, download, download_mnist
from minicnn.data.idx import DataError, read_idx
from minicnn.data.loader import DataLoader, train_val_split
from minicnn.data.mnist import MNIST_FILES, load_mnist, mnist_files
from minicnn.data.transforms import (
    MNIST_MEAN, MNIST_STD, MnistTransform, inverse_affine_matrices, mnist_eval_transform,
    mnist_train_transform, normalize, random_affine, to_float, warp_affine,
)

__all__ = [
    "DataError", "DataLoader", "DownloadError", "MNIST_FILES", "MNIST_MEAN", "MNIST_MIRRORS",
    "MNIST_STD", "MnistTransform", "content_sha256", "download", "download_mnist",
    "inverse_affine_matrices", "load_mnist", "load_mnist_csv", "mnist_files", "mnist_eval_transform",
    "mnist_train_transform", "normalize", "random_affine", "read_idx", "read_sha256sums",
    "to_float", "train_val_split", "warp_affine",
]
