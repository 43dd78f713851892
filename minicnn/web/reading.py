"""What the page shows for one image: the digit read, its ten probabilities and what the network saw.

    bytes  -> open_upload            a PIL image (a PNG, JPEG, GIF, BMP, WebP or TIFF file by its first bytes,
                                     at most MAX_PIXELS pixels, reduced as predict reduces a file)
    image  -> preprocess_digit       x (1, 28, 28), raw (28, 28) uint8: exactly what `minicnn predict` does
    x      -> predict                p (10,) = softmax(model(x)), digit = argmax p
    x      -> feature_maps           (C, H, W) maps at the end of each conv block
    x      -> minicnn.explain        one cell of a map, term by term; saliency and Grad-CAM (explain_api.py)

Each block's maps are tiled 8 to a row into one picture, coloured
``viridis((m - low) / (high - low))`` with ``low = min(0, min m)`` and
``high = max m`` over the whole block (one scale, as in
:func:`minicnn.plots.plot_feature_maps`), transparent between the tiles.
Pictures travel as ``data:image/png;base64,...`` URLs inside the JSON answer.

Docs: docs/serve.md
"""
from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib import colormaps
from PIL import Image, UnidentifiedImageError

from minicnn.imaging import (DECODE_ERRORS, FORMATS_TEXT, HEAD_BYTES, describe_image, image_format,
                             preprocess_digit, read_reduced)
from minicnn.inference import predict
from minicnn.plots import feature_maps, mosaic

__all__ = ["MAX_PIXELS", "open_upload", "prepare", "read_digit"]

MAX_PIXELS = 25_000_000  # a 25-megapixel photo; larger ones take seconds and gigabytes to prepare
TILES_PER_ROW = 8


def open_upload(data: bytes, max_pixels: int | None = None) -> Image.Image:
    """The uploaded bytes as a decoded PIL image; ``ValueError`` saying what is wrong with them.

    Read as ``minicnn predict`` reads a file: only a PNG, JPEG, GIF, BMP, WebP or TIFF file, as its
    first bytes say (:func:`minicnn.imaging.image_format`), is given to a decoder, that format's
    alone; the size is read from the file's header and checked against ``max_pixels`` (default
    :data:`MAX_PIXELS`) before any pixel is decoded; an image of more than
    :data:`~minicnn.imaging.MAX_WORKING_PIXELS` is reduced as it is decoded
    (:func:`minicnn.imaging.read_reduced`).
    """
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    if not data:
        raise ValueError(f"the upload is empty: choose an image file ({FORMATS_TEXT})")
    fmt = image_format(data[:HEAD_BYTES])
    if fmt is None:
        raise ValueError(f"the upload is not an image that can be read here ({FORMATS_TEXT})")

    def check(image):
        if image.width * image.height > max_pixels:
            raise ValueError(f"the image is {image.width}x{image.height}, {image.width * image.height / 1e6:.3g} "
                             f"million pixels, more than the limit of {max_pixels / 1e6:g} million: resize it "
                             f"first (a digit needs a few hundred pixels a side)")

    try:
        return read_reduced(io.BytesIO(data), fmt, "the image", check)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(f"the image has more than {max_pixels / 1e6:g} million pixels, the limit: "
                         f"resize it first (a digit needs a few hundred pixels a side)") from None
    except UnidentifiedImageError:
        raise ValueError(f"the image file is damaged and cannot be decoded: it starts as a {fmt} file, but its "
                         f"header cannot be read") from None
    except DECODE_ERRORS as exc:  # truncated or corrupt pixel data
        if isinstance(exc, ValueError) and str(exc).startswith("the image "):
            raise
        raise ValueError(f"the image file is damaged and cannot be decoded: {exc}") from None


def _png_data_url(rgb_or_gray: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(rgb_or_gray).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _block_picture(maps: np.ndarray) -> np.ndarray:
    """(C, H, W) maps as one RGBA uint8 mosaic on the block's colour scale."""
    low, high = min(0.0, float(maps.min())), max(float(maps.max()), 1e-12)
    tiled = mosaic(maps.astype(np.float64), min(TILES_PER_ROW, len(maps)))
    scaled = np.ma.masked_invalid((tiled - low) / (high - low))
    colours = colormaps["viridis"].with_extremes(bad=(0, 0, 0, 0))
    return np.round(colours(scaled) * 255).astype(np.uint8)


def prepare(image):
    """``(x, raw)``: the (1, 28, 28) network input and the (28, 28) uint8 digit, as ``minicnn predict`` makes
    them; a ``ValueError`` (a blank image, say) calls the image "the image" rather than by its type and size."""
    try:
        return preprocess_digit(image, return_raw=True)
    except ValueError as exc:
        raise ValueError(str(exc).replace(describe_image(image), "the image", 1)) from None


def read_digit(model, image) -> dict:
    """Everything the page shows for ``image`` (anything :func:`minicnn.imaging.preprocess_digit` takes).

    Returns a JSON-ready dict: ``digit`` (int), ``probabilities`` (ten floats
    summing to 1, digit 0 first), ``input`` (the 28x28 input as a PNG data
    URL) and ``blocks``, one ``{name, channels, height, width, columns, picture}``
    per conv block (``columns``: tiles to a row). A ``ValueError`` (a blank
    image, say) names the problem with the image called "the image" rather
    than by its type and size.
    """
    x, raw = prepare(image)
    digits, _, probs = predict(model, x, return_all_probs=True)
    blocks = [{"name": name, "channels": int(maps.shape[0]), "height": int(maps.shape[1]),
               "width": int(maps.shape[2]), "columns": min(TILES_PER_ROW, len(maps)),
               "picture": _png_data_url(_block_picture(maps))}
              for name, maps in feature_maps(model, x)]
    return {"digit": int(digits[0]), "probabilities": [float(p) for p in probs[0]],
            "input": _png_data_url(raw), "blocks": blocks}
