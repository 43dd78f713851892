"""Turning uint8 digit images into network inputs, and augmenting them.

Notation
--------
N   images in a batch        C   channels (1 for MNIST)
H   image height (rows)      W   image width (columns)

Every function here is array code on ``xp = get_array_module(x)``, so it runs
where its input lives: NumPy arrays on the host, CuPy arrays on the GPU.

Normalising
-----------
``to_float`` maps uint8 pixels 0..255 to floats in [0, 1] and adds the channel
axis: (N, H, W) -> (N, 1, H, W). ``normalize`` then standardises,
``(x - mean) / std``, with MNIST's training-set mean 0.1307 and standard
deviation 0.3081 of the [0, 1] pixels, so the network sees inputs of mean 0 and
standard deviation 1. The black background (0) becomes (0 - 0.1307) / 0.3081
= -0.4242.

Random affine augmentation
--------------------------
Each image is rotated by an angle theta, zoomed by a factor s and shifted by
t = (tx, ty) pixels, all three drawn per image. Pixel (row y, column x) has
its centre at the point p = (x, y); the image centre is c = ((W-1)/2, (H-1)/2).
The *forward* map sends an input point p to the output point q::

    q = c + t + s R (p - c),      R = [[ cos theta, sin theta],
                                       [-sin theta, cos theta]]

(with y pointing down the screen, this R turns the picture counter-clockwise
for theta > 0, as ``PIL.Image.rotate`` and torchvision do). To build the
output we need the opposite: for every output pixel q, the input point it
shows. Inverting the forward map, with R^-1 = R(-theta)::

    p = c + (1/s) R(-theta) (q - c - t)  =  M q + b,
    M = (1/s) [[cos theta, -sin theta],   b = c - M (c + t)
               [sin theta,  cos theta]],

a 2x3 matrix ``A = [M | b]`` per image, so that ``p = A @ (qx, qy, 1)``.

(Zooming each axis by its own factor, as Keras's ``zoom_range`` does, puts
S = diag(sx, sy) in the place of s: q = c + t + R S (p - c), so M = S^-1 R(-theta):
its first row has 1/sx where the one above has 1/s, its second row 1/sy.)

The point p rarely falls on a pixel centre, so the value there is read by
*bilinear interpolation* from the four surrounding pixels. With
x0 = floor(px), y0 = floor(py), fx = px - x0, fy = py - y0::

    value = (1-fy) * ((1-fx) I[y0, x0]   + fx I[y0, x0+1])
          +    fy  * ((1-fx) I[y0+1, x0] + fx I[y0+1, x0+1])

Pixels outside the image read as ``fill``. With theta = 0, s = 1, t = 0 the
matrix is exactly [[1, 0, 0], [0, 1, 0]], so p = q, fx = fy = 0 and the
output equals the input bit for bit.

``fill`` is the value the background has *in the array being warped*: 0 for
[0, 1] images (the pipeline below augments before it normalises), or
``(0 - MNIST_MEAN) / MNIST_STD`` if you warp normalised images.

Docs: docs/data.md#augmentation-a-random-affine-warp
"""
from __future__ import annotations

import numpy as np

from minicnn.backend import get_array_module
from minicnn.validate import is_finite_real

__all__ = [
    "MNIST_MEAN", "MNIST_STD", "MnistTransform", "inverse_affine_matrices", "mnist_eval_transform",
    "mnist_train_transform", "normalize", "random_affine", "random_affine_matrices", "to_float", "warp_affine",
]

#: Mean and standard deviation of the MNIST training pixels, scaled to [0, 1].
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def to_float(images, dtype=np.float32):
    """Images as floats of shape (N, C, H, W): uint8 divided by 255, floats kept.

    (N, H, W) input gets the channel axis, (N, 1, H, W); float input is taken
    to be in [0, 1] already and only cast to ``dtype``, a floating-point type.
    """
    _check_float_dtype(dtype)
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim != 4:
        raise ValueError(f"expected images of shape (N, H, W) or (N, C, H, W), found {images.shape}")
    if images.dtype == np.uint8:
        return images.astype(dtype) / 255
    if np.issubdtype(images.dtype, np.floating):
        return images.astype(dtype, copy=False)
    raise TypeError(f"expected uint8 (0-255) or floating-point (0-1) images, found {images.dtype}")


def _check_float_dtype(dtype) -> None:
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"dtype must be a floating-point type such as np.float32 (the pixels become "
                        f"fractions), got {np.dtype(dtype).name}")


def normalize(images, mean: float = MNIST_MEAN, std: float = MNIST_STD, dtype=np.float32):
    """``(to_float(images) - mean) / std``: shape (N, C, H, W), dtype ``dtype``."""
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    return (to_float(images, dtype) - mean) / std


def inverse_affine_matrices(angles, tx, ty, scales, height: int, width: int, scales_y=None) -> np.ndarray:
    """The (N, 2, 3) matrices ``A = [M | b]`` mapping output pixels to input points.

    ``angles`` in degrees (counter-clockwise), ``tx``/``ty`` in pixels
    (right/down), ``scales`` zoom factors; each of length N. ``scales_y``,
    if given, zooms the vertical axis by its own factors and ``scales`` is
    then the horizontal one's. float64, host.
    """
    theta = np.deg2rad(np.asarray(angles, dtype=np.float64))
    tx, ty, sx = (np.asarray(v, dtype=np.float64) for v in (tx, ty, scales))
    sy = sx if scales_y is None else np.asarray(scales_y, dtype=np.float64)
    cos, sin = np.cos(theta), np.sin(theta)  # M = S^-1 R(-theta) = [[cos, -sin] / sx, [sin, cos] / sy]
    cx, cy = (width - 1) / 2, (height - 1) / 2
    A = np.empty(theta.shape + (2, 3))
    A[:, 0, 0], A[:, 0, 1] = cos / sx, -sin / sx
    A[:, 1, 0], A[:, 1, 1] = sin / sy, cos / sy
    A[:, :, 2] = np.array([cx, cy]) - (A[:, :, :2] @ np.stack([cx + tx, cy + ty], axis=-1)[..., None])[..., 0]
    return A  # (the last line: b = c - M (c + t))


def warp_affine(batch, matrices, fill: float = 0.0):
    """Resample each image at the points ``A @ (x, y, 1)``, bilinearly.

    ``batch``: (N, H, W) or (N, C, H, W); ``matrices``: (N, 2, 3) from
    :func:`inverse_affine_matrices`, every channel of image n using
    ``matrices[n]``. Returns the same shape, in the batch's float dtype
    (float32 for integer input), on the batch's device.
    """
    xp = get_array_module(batch)
    N, (H, W) = batch.shape[0], batch.shape[-2:]
    C = batch.shape[1] if batch.ndim == 4 else 1
    dtype = batch.dtype if np.issubdtype(batch.dtype, np.floating) else np.dtype(np.float32)
    if np.shape(matrices) != (N, 2, 3):
        raise ValueError(f"expected matrices of shape ({N}, 2, 3), one per image, "
                         f"found {np.shape(matrices)}")
    A = xp.asarray(matrices, dtype=dtype)
    if C > 1:
        A = xp.repeat(A, C, axis=0)  # one matrix per (image, channel)
    images = batch.reshape(N * C, H, W).astype(dtype, copy=False)

    # 1. The input point p = A @ (x, y, 1) of every output pixel, all at once.
    ys, xs = xp.meshgrid(xp.arange(H, dtype=dtype), xp.arange(W, dtype=dtype), indexing="ij")
    q = xp.stack([xs.ravel(), ys.ravel(), xp.ones(H * W, dtype=dtype)])  # (3, H*W)
    p = A @ q                                                            # (N*C, 2, H*W)

    # 2. Split p into the top-left neighbour (x0, y0) and the fractions (fx, fy).
    # Clipping p to [-1, W] x [-1, H] changes no value (a point that far
    # outside has only fill around it) and keeps every index in the frame below.
    px, py = xp.clip(p[:, 0], -1, W), xp.clip(p[:, 1], -1, H)  # (N*C, H*W) each
    x0, y0 = xp.floor(px), xp.floor(py)
    fx, fy = px - x0, py - y0

    # 3. Read the four neighbours from images framed in fill: one pixel before
    # (for index -1) and two after (for index W and its right neighbour W+1).
    Hp, Wp = H + 3, W + 3
    framed = xp.full((N * C, Hp, Wp), fill, dtype=dtype)
    framed[:, 1:H + 1, 1:W + 1] = images
    flat = framed.reshape(-1)
    rows, cols = y0.astype(np.intp) + 1, x0.astype(np.intp) + 1  # in the framed image
    i00 = xp.arange(N * C)[:, None] * (Hp * Wp) + rows * Wp + cols  # flat index of (y0, x0)
    v00, v01, v10, v11 = (xp.take(flat, i00 + offset) for offset in (0, 1, Wp, Wp + 1))

    # 4. Bilinear interpolation, as two linear blends a + f (b - a) along x, one along y.
    top = v00 + fx * (v01 - v00)
    bottom = v10 + fx * (v11 - v10)
    return (top + fy * (bottom - top)).reshape(batch.shape)


def random_affine(batch, generator: np.random.Generator, degrees: float = 10.0,
                  translate: float = 0.1, scale: tuple[float, float] | None = None,
                  fill: float = 0.0, scale_each_axis: bool = False):
    """Rotate, shift and zoom every image of ``batch`` by its own random amounts.

    Per image: an angle uniform in [-degrees, degrees], a shift uniform in
    [-translate*W, translate*W] by [-translate*H, translate*H] pixels, and a
    zoom uniform in ``scale = (lo, hi)`` (none when None; with
    ``scale_each_axis``, one for each axis, as Keras zooms). The parameters
    are drawn on the host from ``generator``, so one seed gives one result on
    every device; ``fill`` is the background value (see the module docstring).
    """
    if getattr(batch, "ndim", None) not in (3, 4):
        raise ValueError(f"random_affine expects a batch of images (N, H, W) or (N, C, H, W), got "
                         f"{'shape ' + str(tuple(batch.shape)) if hasattr(batch, 'shape') else type(batch).__name__}"
                         f"; for one image use image[None]")
    N, (H, W) = batch.shape[0], batch.shape[-2:]
    return warp_affine(batch, random_affine_matrices(generator, N, H, W, degrees, translate, scale,
                                                     scale_each_axis), fill)


def random_affine_matrices(generator: np.random.Generator, n: int, height: int, width: int,
                           degrees: float = 10.0, translate: float = 0.1,
                           scale: tuple[float, float] | None = None,
                           scale_each_axis: bool = False) -> np.ndarray:
    """The (n, 2, 3) matrices of :func:`random_affine`, drawn on the host: the randomness without the warp.

    Draws, in this order, n angles, n horizontal shifts, n vertical shifts and
    (with ``scale``) n zooms, then n vertical zooms with ``scale_each_axis``
    (the first n being the horizontal ones), so calling it batch after batch,
    or once for the batches of a whole epoch in turn, gives the same numbers.
    """
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"random_affine needs a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(generator).__name__}")
    _check_affine_args(degrees, translate, scale)
    angles = generator.uniform(-degrees, degrees, n)
    tx = generator.uniform(-translate * width, translate * width, n)
    ty = generator.uniform(-translate * height, translate * height, n)
    scales = np.ones(n) if scale is None else generator.uniform(scale[0], scale[1], n)
    scales_y = generator.uniform(scale[0], scale[1], n) if scale is not None and scale_each_axis else None
    return inverse_affine_matrices(angles, tx, ty, scales, height, width, scales_y)


_real = is_finite_real  # a finite real number (a bool is not one)


def _check_affine_args(degrees, translate, scale) -> None:
    if not _real(degrees) or not degrees >= 0:
        raise ValueError(f"degrees must be a finite number >= 0 (angles are drawn from [-degrees, degrees]), "
                         f"got {degrees!r}")
    if not _real(translate) or not 0 <= translate <= 1:
        raise ValueError(f"translate must be a number in [0, 1] (a fraction of the image size), got {translate!r}")
    if scale is not None and (not isinstance(scale, (tuple, list)) or len(scale) != 2
                              or not all(_real(v) for v in scale) or not 0 < scale[0] <= scale[1]):
        raise ValueError(f"scale must be None or (lo, hi) with 0 < lo <= hi, got {scale!r}")


class MnistTransform:
    """The MNIST input pipeline: uint8 batch -> [0, 1] -> (augment) -> normalise.

    Call it as ``transform(images, generator)``; it runs on the device the
    images are on. It is also two halves, which
    :class:`~minicnn.data.loader.DataLoader` calls apart: ``draw(generator, n,
    H, W)``, the random matrices of n images on the host (None without
    augmentation), and ``apply(images, matrices)``, the warp and the
    normalisation on the images' device.  The loader draws a whole epoch's
    matrices at the start of the epoch (the same numbers, in the same order, as
    batch by batch) and copies them to the device once.
    """

    def __init__(self, augment: bool = True, degrees: float = 10.0, translate: float = 0.1,
                 scale: tuple[float, float] | None = None, dtype=np.float32, scale_each_axis: bool = False):
        _check_affine_args(degrees, translate, scale)
        _check_float_dtype(dtype)
        self.augment, self.degrees, self.translate, self.scale = augment, degrees, translate, scale
        self.scale_each_axis = bool(scale_each_axis)
        self.dtype = np.dtype(dtype)

    def __call__(self, images, generator: np.random.Generator | None = None):
        if getattr(images, "ndim", None) not in (3, 4):
            raise ValueError(f"expected images of shape (N, H, W) or (N, C, H, W), found "
                             f"{getattr(images, 'shape', type(images).__name__)}")
        return self.apply(images, self.draw(generator, len(images), *images.shape[-2:]))

    def draw(self, generator: np.random.Generator | None, n: int, height: int, width: int):
        """The (n, 2, 3) host matrices of n images' random warps, or None when not augmenting."""
        if not self.augment:
            return None
        if generator is None:
            raise ValueError("this transform augments at random and needs a numpy.random.Generator; "
                             "give the DataLoader generator=np.random.default_rng(seed)")
        return random_affine_matrices(generator, n, height, width, self.degrees, self.translate, self.scale,
                                      self.scale_each_axis)

    def apply(self, images, matrices):
        """[0, 1] floats, warped by ``matrices`` (from :meth:`draw`, on any device; None: no warp), normalised."""
        x = to_float(images, self.dtype)
        if matrices is not None:
            x = warp_affine(x, matrices, fill=0.0)
        return normalize(x, dtype=self.dtype)

    def __repr__(self) -> str:
        if not self.augment:
            return f"MnistTransform(augment=False, dtype={self.dtype.name})"
        return (f"MnistTransform(augment=True, degrees={self.degrees}, translate={self.translate}, "
                f"scale={self.scale}{', scale_each_axis=True' if self.scale_each_axis else ''}, "
                f"dtype={self.dtype.name})")


def mnist_train_transform(augment: bool = True, degrees: float = 10.0, translate: float = 0.1,
                          scale: tuple[float, float] | None = None, scale_each_axis: bool = False) -> MnistTransform:
    """Training pipeline: random affine (unless ``augment=False``), then normalise."""
    return MnistTransform(augment, degrees, translate, scale, scale_each_axis=scale_each_axis)


def mnist_eval_transform() -> MnistTransform:
    """Evaluation pipeline: normalise only (no randomness)."""
    return MnistTransform(augment=False)
