"""From a photo of a handwritten digit to a prediction.

A network trained on MNIST has only ever seen digits prepared one way, so a
photo or scan must be prepared the same way before the network can read it.
MNIST's recipe (LeCun et al.): white ink on black, the digit scaled so that
its longer side is 20 pixels, then placed on a 28 x 28 canvas so that its
centre of mass lies at the centre. :func:`digit_to_mnist` repeats it:

1. **Grayscale.** A file is read only when it is a regular file (a FIFO or a
   device could keep the reading waiting for ever) whose first bytes say it is
   a PNG, JPEG, GIF, BMP, WebP or TIFF file (:func:`image_format`), and only
   that format's decoder sees it: no other of Pillow's decoders, Ghostscript
   for EPS among them, is ever given a file. A file is refused, before it is
   decoded, when it has more pixels than Pillow's ``Image.MAX_IMAGE_PIXELS``;
   one of more than :data:`MAX_WORKING_PIXELS` is decoded at a reduced scale
   (a digit needs a few hundred pixels a side; :func:`read_reduced`, which
   ``minicnn serve`` uses too). A phone photo stored sideways (its EXIF
   Orientation tag says how to show it) is first turned upright; a corrupt
   EXIF block gives a warning, and the photo is read as stored; Pillow's own
   warnings about a file are given once each, naming it. Float images (a
   float TIFF) are read as float arrays are: 0-1 or 0-255, finite. A CIELAB
   image is read by its lightness channel. RGB becomes luminance
   ``0.299 R + 0.587 G + 0.114 B``. A transparent background is composited
   onto white (dark ink) or black (light ink), whichever the ink stands out from.
2. **Polarity.** MNIST's ink is bright on a dark background. The background
   is the median of the border pixels; when it lies on the light side of the
   image's range (above the midpoint of min and max), the image is inverted,
   ``x -> 255 - x``. After this, ink is bright wherever it came from.
3. **Background and threshold.** A photo lit from one side has paper
   brighter on one side than the other: a plane ``a + b*row + c*col`` is
   fitted to the border pixels (least squares, leaving out the strokes of a
   tightly cropped digit that run into the border) and subtracted.  When
   strokes cover so much of the border that this fit lands among them (a
   blurred marker 7 whose bar runs along the whole top edge) and the image
   looks blank, the plane is fitted again to the border's paper part alone:
   the darker class of a clearly two-level border (``_paper_part_of_border``). Paper
   texture and JPEG noise are then faint but not zero; their spread is
   measured on the pixels below the fitted paper, where no ink lies. Pixels
   at or below a threshold ``t`` become 0, and the rest are stretched, ``(x - t) / (hi - t)``,
   so that the stroke reaches full brightness (``hi`` is the 90th percentile
   of the ink). ``t`` is Otsu's threshold by default: the level that splits
   the histogram into two classes (background, ink) with the largest
   between-class variance ``w0 w1 (mu0 - mu1)^2``. Marks that barely rise
   above the paper's noise mean there is no digit: a ValueError.
4. **Crop** to the bounding box of the remaining ink.
5. **Scale** the longer side to 20 pixels, keeping the aspect ratio
   (Lanczos resampling, which smooths the edges as MNIST's anti-aliasing did).
6. **Centre.** Paste onto a black 28 x 28 canvas so that the centre of mass
   ``(sum_i x_i r_i / sum_i x_i, sum_i x_i c_i / sum_i x_i)`` lands on pixel
   (14, 14), MNIST's average.

:func:`preprocess_digit` then normalises the result exactly as the training
images were, ``(x / 255 - MNIST_MEAN) / MNIST_STD``, into a (1, 28, 28)
float32 network input; :func:`minicnn.inference.predict`, a floor above
this module, runs a model over such inputs.
"""
from __future__ import annotations

import contextlib
import math
import os
import stat
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from minicnn.backend import to_numpy
from minicnn.data.transforms import normalize
from minicnn.serialization import file_kind

__all__ = ["FORMATS", "FORMATS_TEXT", "as_network_input", "describe_image", "digit_to_mnist", "image_format",
           "otsu_threshold", "preprocess_digit", "read_reduced"]

CANVAS = 28        # MNIST image side
BOX = 20           # the digit's longer side inside it
CENTRE = 14.0      # where MNIST's centre of mass lies (row and column)
MIN_CONTRAST = 16  # gray levels ink must rise above the paper
TWO_LEVEL_BORDER = 0.85  # share of the border's variance between paper and strokes for the border to be split
MAX_WORKING_PIXELS = 2048 * 2048  # a larger file is decoded or reduced to about this at once

# The formats read, by Pillow's names, and the first bytes that say a file is in one of them.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")
FORMATS_TEXT = "PNG, JPEG, GIF, BMP, WebP or TIFF"
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),                    # a JPEG's SOI marker and the next marker's 0xFF
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),     # little- and big-endian
    (b"II+\x00", "TIFF"), (b"MM\x00+", "TIFF"),     # BigTIFF
)
_BMP_HEADER_SIZES = (12, 40, 52, 56, 64, 108, 124)  # the DIB headers Pillow's BMP decoder reads
HEAD_BYTES = 32  # how many of a file's first bytes image_format looks at


# --- reading ----------------------------------------------------------------

def describe_image(image) -> str:
    """How error messages name ``image``: ``image file 'seven.png'``, ``PIL image (RGB, 640x480)`` or
    ``array of shape (28, 28)``.  A ``ValueError`` about the image itself starts with it, so a caller
    can put its own words in its place (the web page says "the image")."""
    if isinstance(image, (str, os.PathLike)):
        return f"image file {str(image)!r}"
    if isinstance(image, Image.Image):
        return f"PIL image ({image.mode}, {image.width}x{image.height})"
    return f"array of shape {np.shape(image)}"


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _composite(gray: np.ndarray, alpha: np.ndarray, name: str) -> np.ndarray:
    """Gray values with transparency (alpha in [0, 1]) flattened onto a contrasting background."""
    if alpha.sum() == 0:
        raise ValueError(f"{name} is fully transparent: there is no digit to read")
    ink = (gray * alpha).sum() / alpha.sum()  # the mean gray of what is drawn
    background = 255.0 if ink < 128 else 0.0
    return gray * alpha + background * (1 - alpha)


def image_format(head: bytes) -> str | None:
    """The format (one of :data:`FORMATS`) that a file's first bytes (:data:`HEAD_BYTES` of them) say
    it is in, or ``None`` for anything else.

    PNG: ``89 'PNG' 0D 0A 1A 0A``; JPEG: ``FF D8 FF``; GIF: ``'GIF87a'`` or ``'GIF89a'``; BMP: ``'BM'`` and
    a DIB header of a size Pillow reads (12, 40, 52, 56, 64, 108 or 124 bytes, at byte 14); WebP:
    ``'RIFF'``, a size, ``'WEBP'``; TIFF: ``'II*' 00`` or ``'MM' 00 '*'`` (``'+'`` for BigTIFF).  The
    file's name and what a browser says it is play no part.
    """
    head = bytes(head[:HEAD_BYTES])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    return next((fmt for magic, fmt in _SIGNATURES if head.startswith(magic)), None)


# What a decoder raises for a file that is damaged (Image.open turns these into UnidentifiedImageError).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error,
                 ZeroDivisionError)


def read_reduced(fp, fmt: str, name: str, check=None) -> Image.Image:
    """The image in the binary file ``fp``, in the format ``fmt`` (from :func:`image_format`), decoded at
    no more than about :data:`MAX_WORKING_PIXELS`: a new image, independent of ``fp``.

    Only the decoder of ``fmt`` sees the file (``Image.open(..., formats=[fmt])``, a second guard behind
    :func:`image_format`). ``check``, if given, is called with the opened image before a pixel is
    decoded (its size is known from the header) and may raise. A large JPEG is decoded at 1/2, 1/4 or
    1/8 scale (``Image.draft``), and any other large image reduced by averaging blocks of ``f x f``
    pixels (``Image.reduce``), ``f = ceil(sqrt(pixels / MAX_WORKING_PIXELS))``, at once, before the
    float arrays of the steps below are made from it. A bilevel or palette image is first made gray or
    RGBA, as step 1 would make it (the blocks of a 300-dpi bilevel scan average to gray levels).
    ``minicnn predict`` and ``minicnn serve`` both read files through this.

    Raises Pillow's ``DecompressionBombError`` (above ``Image.MAX_IMAGE_PIXELS``, before decoding;
    its ``DecompressionBombWarning`` when a filter makes that warning an error),
    ``UnidentifiedImageError`` (a damaged header), one of :data:`DECODE_ERRORS` (damaged pixel data),
    or a ``ValueError`` starting with ``name`` (an image too narrow to reduce), for the caller to put
    in its own words.
    """
    with Image.open(fp, formats=[fmt]) as opened:
        pixels, limit = opened.width * opened.height, Image.MAX_IMAGE_PIXELS
        if limit and pixels > limit:
            # Pillow only warns between its limit and twice that (a caller may make the warning an error,
            # as predict does, but a filter of warnings is no guard in a threaded server): refuse those too.
            raise Image.DecompressionBombError(f"Image size ({pixels} pixels) exceeds limit of {limit} pixels, "
                                               f"could be decompression bomb DOS attack.")
        if check is not None:
            check(opened)
        factor = math.ceil(math.sqrt(pixels / MAX_WORKING_PIXELS))
        if factor > 1 and opened.format in ("JPEG", "MPO"):  # MPO: a JPEG with more pictures after it
            opened.draft(opened.mode, (-(-opened.width // factor), -(-opened.height // factor)))
        opened.load()
        factor = math.ceil(math.sqrt(opened.width * opened.height / MAX_WORKING_PIXELS))
        if factor == 1:
            return opened.copy()
        if min(opened.size) // factor < 2:
            raise ValueError(f"{name} is {opened.width}x{opened.height} pixels: too narrow to hold a digit")
        image = opened
        if image.mode == "1":
            image = image.convert("L")
        elif image.mode in ("P", "PA") or "transparency" in image.info:
            image = image.convert("RGBA")  # averaging palette indices, or past a transparent colour, means nothing
        elif image.mode.startswith("I;16"):
            image = image.convert("I")
        return image.reduce(factor)  # keeps image.info, so the EXIF orientation still applies


def _open_regular_file(path: Path, name: str):
    """``path`` opened for reading in binary; ``ValueError`` naming ``name`` when it is missing, unreadable
    or not a regular file (a FIFO would block the reading until something writes to it; a device
    might never end). The kind is checked before the file is opened, and again on what was opened."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise ValueError(f"{name} does not exist") from None
    except OSError as exc:
        raise ValueError(f"{name} cannot be read: {(exc.strerror or str(exc)).lower()}") from None
    expected = f"expected a {FORMATS_TEXT} file"
    if not stat.S_ISREG(mode):
        raise ValueError(f"{name} is a {file_kind(mode)}, not an image file: {expected}")
    try:
        # O_NONBLOCK: a FIFO put in the file's place since the check opens at once instead of waiting.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise ValueError(f"{name} cannot be read: {(exc.strerror or str(exc)).lower()}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ValueError(f"{name} is a {file_kind(mode)}, not an image file: {expected}")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _read_file(path: Path, name: str) -> Image.Image:
    """The image in the file at ``path``, decoded at no more than about :data:`MAX_WORKING_PIXELS`.

    A file that is not a regular file, or not one of :data:`FORMATS` by its first bytes, is refused
    before any decoder sees it. Its pixel count is known from the header: above Pillow's
    ``Image.MAX_IMAGE_PIXELS`` the file is refused before it is decoded; a larger one than
    :data:`MAX_WORKING_PIXELS` is reduced as it is decoded (:func:`read_reduced`).
    """
    with _open_regular_file(path, name) as file:
        fmt = image_format(file.read(HEAD_BYTES))
        if fmt is None:
            raise ValueError(f"{name} cannot be read as an image: it is not a {FORMATS_TEXT} file "
                             f"(the formats minicnn reads)")
        file.seek(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)  # refused, not printed
                return read_reduced(file, fmt, name)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ValueError(f"{name} is too large to read ({exc}); resize it first: a digit needs a "
                             f"few hundred pixels a side") from None
        except UnidentifiedImageError:
            raise ValueError(f"{name} cannot be read as an image: it starts as a {fmt} file, but its header "
                             f"is damaged") from None
        except DECODE_ERRORS as exc:
            if isinstance(exc, ValueError) and str(exc).startswith(name):
                raise
            raise ValueError(f"{name} cannot be read as an image: it is damaged ({exc})") from None


@contextlib.contextmanager
def _warnings_naming(name: str):
    """Each warning given inside (Pillow's about a corrupt EXIF tag, say, which it may give twice and
    which names no file) given once at the end, starting with ``name``."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        for text, category in dict.fromkeys((str(w.message), w.category) for w in caught):
            warnings.warn(text if text.startswith(name) else f"{name}: {text}", category, stacklevel=5)


def _upright(image: Image.Image, name: str) -> Image.Image:
    """``image`` turned as its EXIF Orientation tag says; as stored, with a warning, when the EXIF is corrupt."""
    try:
        return ImageOps.exif_transpose(image)
    except (SyntaxError, ValueError, TypeError, KeyError, IndexError, OSError, struct.error) as exc:
        # Pillow's EXIF parser reports a corrupt block with any of these.
        warnings.warn(f"{name}: its EXIF data cannot be read ({exc}); read as stored, not turned upright by "
                      f"its orientation tag", UserWarning, stacklevel=4)
        return image


def _convert(image: Image.Image, mode: str, name: str) -> Image.Image:
    try:
        return image.convert(mode)
    except ValueError as exc:  # "conversion from ... to ... not supported"
        raise ValueError(f"{name} holds pixels of the kind {image.mode!r}, which cannot be read ({exc}): save it "
                         f"as RGB or grayscale") from None


def _to_gray(image) -> np.ndarray:
    """Any supported input as a float64 (H, W) array of gray levels 0..255 (step 1)."""
    if image is None or isinstance(image, (bytes, bytearray)):
        raise TypeError(f"expected a path (str or pathlib.Path), a PIL image or an array "
                        f"(H, W), (H, W, 3) or (H, W, 4), got {type(image).__name__}")
    name = describe_image(image)
    path = image if isinstance(image, (str, os.PathLike)) else None
    if path is not None or isinstance(image, Image.Image):
        # Pillow's warnings about a file (a corrupt EXIF tag, given as it is opened and again as it is
        # turned upright) once each, naming the file.
        with _warnings_naming(name) if path is not None else contextlib.nullcontext():
            if path is not None:
                image = _read_file(Path(path).expanduser(), name)
            if min(image.size) < 2:
                raise ValueError(f"{name} is too small to hold a digit")
            image = _upright(image, name)
        if image.mode == "P" or (image.mode in ("L", "RGB") and "transparency" in image.info):
            image = image.convert("RGBA")
        if image.mode == "LAB":
            image = image.getchannel("L")  # CIELAB's lightness; Pillow converts LAB to nothing else
        if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
            rgba = np.asarray(_convert(image, "RGBA", name), dtype=np.float64)
            return _composite(_luminance(rgba), rgba[..., 3] / 255, name)
        if image.mode == "I" or image.mode.startswith("I;16"):
            a = np.asarray(image.convert("F"), dtype=np.float64)
            return a * (255.0 / a.max()) if a.max() > 255 else a
        if image.mode != "F":
            return np.asarray(_convert(image, "L", name), dtype=np.float64)
        image = np.asarray(image)  # floats (a float TIFF): checked and scaled as a float array is, below

    a = to_numpy(image)
    is_float = np.issubdtype(a.dtype, np.floating)
    if a.dtype == bool:
        a = a * 255.0
    elif not (np.issubdtype(a.dtype, np.integer) or is_float):
        raise ValueError(f"{name} has dtype {a.dtype}; expected numbers (uint8 0-255 or float 0-1)")
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 3 and a.shape[0] == 1:          # (1, H, W): one channel first
        a = a[0]
    if a.ndim == 3 and a.shape[-1] == 1:         # (H, W, 1)
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ValueError(f"{name} is not an image: expected (H, W), (H, W, 1), (H, W, 3) RGB "
                         f"or (H, W, 4) RGBA")
    if min(a.shape[:2]) < 2:
        raise ValueError(f"{name} is too small to hold a digit")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if a.min() < 0 or a.max() > 255:
        raise ValueError(f"{name} has values from {a.min():.3g} to {a.max():.3g}; expected gray "
                         f"levels 0-255 or floats 0-1 (pass images before normalising them)")
    if is_float and a.max() <= 1.0:
        a = a * 255.0                            # floats in [0, 1]
    if a.ndim == 2:
        return a
    gray = _luminance(a)
    if a.shape[-1] == 4:
        return _composite(gray, a[..., 3] / 255.0, name)
    return gray


# --- the steps ----------------------------------------------------------------

def otsu_threshold(gray: np.ndarray) -> float:
    """Otsu's threshold of gray levels 0..255: the t maximising ``w0 w1 (mu0 - mu1)^2``.

    ``w0``, ``mu0`` are the weight (fraction of pixels) and mean of the levels
    ``<= t``, ``w1``, ``mu1`` of those above. Returns ``t`` as a float (the
    middle of the maximising levels when several tie).
    """
    hist = np.bincount(np.clip(np.round(gray), 0, 255).astype(np.int64).ravel(), minlength=256)
    p = hist / hist.sum()
    levels = np.arange(256)
    w0 = np.cumsum(p)                     # weight of levels 0..t
    m0 = np.cumsum(p * levels)            # w0 * mu0
    w1 = 1 - w0
    mean = m0[-1]
    # w0 w1 (mu0 - mu1)^2 rewritten without dividing by w0 or w1 separately:
    between = (mean * w0 - m0) ** 2 / np.where(w0 * w1 > 0, w0 * w1, np.inf)
    # Between two well-separated levels every t in the gap scores the same:
    # take the middle of the best ones, not the first (which hugs the background).
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    return float(best.mean())


def _border(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices, column indices and values of the pixels on the image's edge."""
    H, W = gray.shape
    rows, cols = np.indices((H, W))
    edge = np.zeros((H, W), dtype=bool)
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    return rows[edge], cols[edge], gray[edge]


def _needs_inverting(gray: np.ndarray) -> bool:
    return float(np.median(_border(gray)[2])) > (gray.min() + gray.max()) / 2


def _paper_part_of_border(gray: np.ndarray):
    """The border pixels that are paper when strokes cover much of the border, or None.

    A tightly cropped, blurred marker digit can cover half the border or more
    (a 7's bar along the whole top edge, its stem through the bottom): the
    border's median then lies in the strokes' blurred edges, and so does the
    plane fitted around it.  Ink only lies above the paper, so the paper is
    the border's darker class: the levels at or below Otsu's threshold of the
    border pixels.  Only a clearly two-level border is split so: Otsu's
    between-class variance must be at least :data:`TWO_LEVEL_BORDER` of the
    border's variance (a Gaussian's is 0.64, a uniform ramp's 0.75, the
    cropped 7's 0.89), and the paper class at least a fifth of the border.
    """
    rows, cols, values = _border(gray)
    if values.var() == 0:
        return None
    t = otsu_threshold(values)
    paper = values <= t
    if not 0.2 <= paper.mean() < 1:
        return None
    lo, hi = values[paper], values[~paper]
    between = paper.mean() * (1 - paper.mean()) * (hi.mean() - lo.mean()) ** 2
    if between < TWO_LEVEL_BORDER * values.var():
        return None
    return rows[paper], cols[paper], values[paper]


def _ink_on_the_paper_part(gray: np.ndarray, threshold, name: str):
    """Step 3 with the paper fitted to :func:`_paper_part_of_border`; None when that finds no paper or no ink."""
    paper = _paper_part_of_border(gray)
    if paper is None:
        return None
    flat = _flatten_background(gray, paper)
    try:
        return _threshold(np.clip(flat, 0, None), threshold, name, _noise_level(flat))
    except ValueError:
        return None


def _flatten_background(gray: np.ndarray, border=None) -> np.ndarray:
    """Subtract the paper's brightness, a plane ``a + b*row + c*col`` fitted to the border.

    The paper becomes noise around 0 (negative values kept), the ink stays positive.
    A photo lit from one side is brighter on that side; without this, the
    lit half of the paper can look like ink to the threshold. A tightly
    cropped digit's strokes run into the border, so the fit starts from the
    paper the border's median says, a flat ``a = median``, and leaves out the
    border pixels far from it: ``|residual| > 3 * sigma``, where
    ``sigma = 1.4826 * median(|residual|)`` (the median absolute deviation,
    which the ink, a minority of the border, cannot inflate; 1.4826 turns it
    into a standard deviation for Gaussian noise). Least squares on the pixels
    kept gives the next plane, until the same pixels are kept (at most 10 rounds).
    ``border``: (rows, cols, values) of the pixels to fit instead of the whole
    border (:func:`_paper_part_of_border`).
    """
    rows, cols, values = _border(gray) if border is None else border
    A = np.stack([np.ones_like(values), rows, cols], axis=1).astype(np.float64)
    coef = np.array([np.median(values), 0.0, 0.0])
    keep = None
    for _ in range(10):
        residual = values - A @ coef
        sigma = 1.4826 * float(np.median(np.abs(residual)))
        kept = np.abs(residual) <= max(3 * sigma, 1.0)
        if keep is not None and np.array_equal(kept, keep):
            break
        keep = kept
        coef, *_ = np.linalg.lstsq(A[keep], values[keep], rcond=None)
    H, W = gray.shape
    r, c = np.indices((H, W))
    return gray - (coef[0] + coef[1] * r + coef[2] * c)


def _noise_level(flat: np.ndarray) -> float:
    """The paper's noise as a standard deviation, ``1.4826 * median(|x|)`` over the pixels ``x < 0``.

    Ink lies above the paper, never below it, so the pixels darker than the
    fitted paper are paper, however much of the image the ink covers; for
    Gaussian noise their ``|x|`` has the median ``0.6745 sigma``.
    """
    below = flat[flat < 0]
    return 1.4826 * float(np.median(-below)) if below.size else 0.0


def _threshold(gray: np.ndarray, threshold, name: str, noise: float) -> np.ndarray:
    """Zero the faint pixels and stretch the ink to 0..255 (step 3)."""
    if threshold is None:
        t = float(gray.min()) + 0.5  # every pixel above the paper, by half a gray level
    elif isinstance(threshold, str):
        if threshold != "otsu":
            raise ValueError(f"threshold must be 'otsu', a fraction in [0, 1) or None, got {threshold!r}")
        t = otsu_threshold(gray)
    else:
        if not 0 <= float(threshold) < 1:
            raise ValueError(f"threshold must be 'otsu', a fraction in [0, 1) or None, got {threshold!r}")
        t = gray.min() + float(threshold) * (gray.max() - gray.min())
    ink = gray[gray > t]
    if ink.size == 0:
        raise ValueError(f"{name} holds no ink above the threshold {t:.1f}")
    hi = max(float(np.percentile(ink, 90)), t + 1)
    # Paper with no digit still has noise, and the threshold keeps its
    # brightest specks; they barely stand out from the noise. Ink stands far above it.
    if hi <= max(6 * noise, MIN_CONTRAST):
        raise ValueError(f"{name} looks blank: its brightest marks are {hi:.0f} gray levels above "
                         f"the paper, whose noise is +-{noise:.0f}; no digit found")
    return np.clip((gray - t) / (hi - t), 0, 1) * 255


def _centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(a.shape)
    total = a.sum()
    return float((a * rows).sum() / total), float((a * cols).sum() / total)


def digit_to_mnist(image, invert="auto", threshold="otsu") -> np.ndarray:
    """A photo or scan of one digit as a (28, 28) uint8 MNIST-style image.

    ``image``: a path, a PIL image or an array ((H, W), (H, W, 1), (H, W, 3)
    or (H, W, 4); uint8 0-255 or float 0-1), of any size.
    ``invert``: ``"auto"`` (invert when the background is light), ``True`` or
    ``False``. ``threshold``: ``"otsu"``, a fraction in [0, 1) of the
    range above the paper, or ``None`` (keep every pixel above the paper).
    See the module docstring for the steps. Raises ``ValueError`` naming the
    input for an unreadable or too large file, a wrong shape or a blank
    image, and ``TypeError`` for anything that is not an image (``None``, bytes).
    """
    name = describe_image(image)
    gray = _to_gray(image)
    if gray.max() - gray.min() < 8:
        raise ValueError(f"{name} is blank: every pixel is about {gray.mean():.0f} of 255, "
                         f"there is no digit to read")
    if invert == "auto":
        invert = _needs_inverting(gray)
    elif not isinstance(invert, (bool, np.bool_)):
        raise ValueError(f"invert must be 'auto', True or False, got {invert!r}")
    if invert:
        gray = 255 - gray
    flat = _flatten_background(gray)
    try:
        ink = _threshold(np.clip(flat, 0, None), threshold, name, _noise_level(flat))
    except ValueError as refused:
        # Strokes over most of the border put the paper fitted to it among them: fit the border's paper part.
        ink = _ink_on_the_paper_part(gray, threshold, name)
        if ink is None:
            raise refused

    rows, cols = np.nonzero(ink)
    ink = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = ink.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL sizes are (width, height)
    digit = np.asarray(Image.fromarray(ink.astype(np.float32))  # a float32 array is a mode "F" image
                       .resize(size, Image.Resampling.LANCZOS), dtype=np.float64)
    digit = np.clip(digit, 0, 255)

    cy, cx = _centre_of_mass(digit)
    top = int(np.clip(round(CENTRE - cy), 0, CANVAS - digit.shape[0]))
    left = int(np.clip(round(CENTRE - cx), 0, CANVAS - digit.shape[1]))
    canvas = np.zeros((CANVAS, CANVAS))
    canvas[top:top + digit.shape[0], left:left + digit.shape[1]] = digit
    return np.round(canvas).astype(np.uint8)


def preprocess_digit(image, invert="auto", threshold="otsu", return_raw: bool = False):
    """A photo or scan of one digit as a normalised float32 (1, 28, 28) network input.

    The steps of :func:`digit_to_mnist`, then ``(x / 255 - MNIST_MEAN) / MNIST_STD``
    as in training. With ``return_raw=True`` returns ``(input, raw)``, where
    ``raw`` is the (28, 28) uint8 image (save it to see what the network sees).
    """
    raw = digit_to_mnist(image, invert=invert, threshold=threshold)
    x = normalize(raw[None])[0]  # the training transform: (1, 1, 28, 28) -> (1, 28, 28)
    return (x, raw) if return_raw else x


# --- the network's input ------------------------------------------------------------

def as_network_input(images) -> np.ndarray:
    """Images as a float (N, 1, 28, 28) host batch the network takes.

    uint8 images, (H, W) or (N, H, W), are normalised with MNIST's mean and
    std; float images, (1, H, W) or (N, 1, H, W), are taken to be normalised
    already (as :func:`preprocess_digit` and the data transforms return them).
    """
    a = to_numpy(images)
    if a.dtype == np.uint8:
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3:
            raise ValueError(f"uint8 images must be (H, W) or (N, H, W), got shape {a.shape}")
        return normalize(a)
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"images must be uint8 (0-255) or normalised floats, got dtype {a.dtype}")
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[None]
    if a.ndim != 4 or a.shape[1] != 1:
        raise ValueError(f"float images must be (1, H, W) or (N, 1, H, W), got shape {a.shape}")
    return a

