"""What the web page's tests draw and read: a small trained model and a photographed-style 7."""
import functools

import numpy as np
from PIL import Image, ImageDraw

import minicnn
from minicnn import models, nn, optim
from minicnn.data import DataLoader, load_mnist, mnist_eval_transform
from minicnn.training import fit


@functools.lru_cache(maxsize=1)
def small_model():
    """MnistCNN after one epoch on 2,048 training images (about 90% right), trained once per test run."""
    images, labels = load_mnist("train")
    model = models.MnistCNN(seed=0)
    loader = DataLoader(images[:2048], labels[:2048], 64, shuffle=True, transform=mnist_eval_transform(),
                        generator=np.random.default_rng(0))
    fit(model, nn.NLLLoss(), optim.Adam(model.parameters(), lr=1e-3), loader, epochs=1, progress=False, log=None)
    return model


def save_small_model(path):
    """:func:`small_model`'s weights in a file at ``path``, as ``minicnn train --out`` leaves them."""
    return minicnn.save(small_model(), path)


def photo_of_a_seven():
    """A dark 7 on light paper, cropped so that its bar touches the top edge."""
    img = Image.new("RGB", (150, 190), (228, 224, 210))
    ImageDraw.Draw(img).line([(4, 6), (146, 6), (60, 186)], fill=(30, 30, 45), width=16)
    return img
