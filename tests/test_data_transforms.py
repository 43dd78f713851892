"""Normalisation and the random affine warp: exact identity, known rotations, determinism."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicnn.data import (
    MNIST_MEAN, MNIST_STD, MnistTransform, inverse_affine_matrices, mnist_eval_transform,
    mnist_train_transform, normalize, random_affine, to_float, warp_affine,
)


def warp(images, angle=0.0, tx=0.0, ty=0.0, scale=1.0, fill=0.0):
    """Warp every image by the same explicit parameters."""
    n, (h, w) = len(images), images.shape[-2:]
    A = inverse_affine_matrices([angle] * n, [tx] * n, [ty] * n, [scale] * n, h, w)
    return warp_affine(images, A, fill)


# --- to_float and normalize --------------------------------------------------------------------

def test_to_float_scales_uint8_and_adds_the_channel_axis():
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    x = to_float(images)
    assert x.shape == (1, 1, 2, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], [[0, 1], [0.2, 0.4]], rtol=1e-6)
    assert to_float(images[:, None], np.float64).dtype == np.float64


def test_to_float_keeps_float_images_and_refuses_others():
    x = np.full((2, 1, 3, 3), 0.5, np.float32)
    assert to_float(x) is x
    with pytest.raises(ValueError, match=r"expected images of shape \(N, H, W\) or \(N, C, H, W\), "
                                         r"found \(3, 3\)"):
        to_float(np.zeros((3, 3), np.uint8))
    with pytest.raises(TypeError, match="expected uint8 .* or floating-point .* images, found int64"):
        to_float(np.zeros((1, 3, 3), np.int64))


@pytest.mark.parametrize("shape", [(4, 28, 28), (4, 1, 28, 28)])
def test_normalize(shape):
    images = np.zeros(shape, np.uint8)
    images[..., 0, 0] = 255
    x = normalize(images)
    assert x.shape == (4, 1, 28, 28) and x.dtype == np.float32
    assert x[0, 0, 1, 1] == pytest.approx((0 - MNIST_MEAN) / MNIST_STD, rel=1e-6)
    assert x[0, 0, 0, 0] == pytest.approx((1 - MNIST_MEAN) / MNIST_STD, rel=1e-6)
    assert normalize(images, dtype=np.float64).dtype == np.float64
    np.testing.assert_allclose(normalize(images, mean=0.0, std=1.0), to_float(images))
    with pytest.raises(ValueError, match="std must be positive, got 0"):
        normalize(images, std=0)


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, "int64"])
def test_integer_dtypes_are_refused(dtype):
    images = np.zeros((1, 2, 2), np.uint8)
    message = (f"dtype must be a floating-point type such as np.float32 (the pixels become fractions), "
               f"got {np.dtype(dtype).name}")
    for make in (lambda: normalize(images, dtype=dtype), lambda: to_float(images, dtype),
                 lambda: MnistTransform(dtype=dtype)):
        with pytest.raises(TypeError) as info:
            make()
        assert str(info.value) == message
    assert normalize(images, dtype=np.float16).dtype == np.float16


def test_normalized_mnist_has_mean_0_and_std_1():
    from minicnn.data import load_mnist
    x = normalize(load_mnist("test")[0])  # the constants are the training set's; the test set is close
    assert abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1) < 0.01


# --- the affine warp ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_angle_and_shift_is_the_exact_identity(rng, dtype):
    x = rng.random((5, 1, 28, 28)).astype(dtype)
    np.testing.assert_array_equal(warp(x), x)
    out = random_affine(x, np.random.default_rng(0), degrees=0.0, translate=0.0)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, x)


def test_identity_matrix_is_exact():
    A = inverse_affine_matrices([0.0], [0.0], [0.0], [1.0], 28, 28)
    np.testing.assert_array_equal(A, [[[1, 0, 0], [0, 1, 0]]])


def test_rotating_an_off_centre_pixel_by_90_degrees():
    # 9x9 image, centre (row 4, col 4); a pixel 3 to the right of the centre
    # turns counter-clockwise to 3 above it.
    x = np.zeros((1, 9, 9), np.float32)
    x[0, 4, 7] = 1.0
    out = warp(x, angle=90)
    expected = np.zeros_like(x)
    expected[0, 1, 4] = 1.0
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(warp(x, angle=-90)[0, 7, 4], 1.0, atol=1e-6)


@pytest.mark.parametrize("angle, k", [(90, 1), (180, 2), (270, 3), (-90, 3)])
@pytest.mark.parametrize("size", [8, 9])
def test_quarter_turns_match_rot90(rng, angle, k, size):
    x = rng.random((3, 1, size, size)).astype(np.float32)
    np.testing.assert_allclose(warp(x, angle=angle), np.rot90(x, k, axes=(2, 3)), atol=1e-5)


def test_whole_pixel_shift_moves_the_image_and_fills_the_gap(rng):
    x = rng.random((2, 1, 10, 12)).astype(np.float32)
    out = warp(x, tx=3, ty=-2, fill=-0.5)
    expected = np.full_like(x, -0.5)
    expected[:, :, :-2, 3:] = x[:, :, 2:, :-3]
    np.testing.assert_allclose(out, expected, atol=1e-6)


@given(tx=st.integers(-12, 12), ty=st.integers(-10, 10), seed=st.integers(0, 2**32 - 1))
def test_any_whole_pixel_shift_is_a_padded_slice(tx, ty, seed):
    x = np.random.default_rng(seed).random((1, 1, 10, 12)).astype(np.float32)
    expected = np.full((1, 1, 10 + 24, 12 + 24), 7.0, np.float32)
    expected[:, :, 12 + ty:22 + ty, 12 + tx:24 + tx] = x
    np.testing.assert_allclose(warp(x, tx=tx, ty=ty, fill=7.0), expected[:, :, 12:22, 12:24], atol=1e-5)


def test_half_pixel_shift_averages_neighbours():
    x = np.zeros((1, 1, 3, 3), np.float32)
    x[0, 0, 1, 1] = 1.0
    out = warp(x, tx=0.5)
    np.testing.assert_allclose(out[0, 0, 1], [0, 0.5, 0.5], atol=1e-6)


def test_zoom_doubles_distances_from_the_centre():
    x = np.zeros((1, 9, 9), np.float32)
    x[0, 4, 5] = 1.0
    out = warp(x, scale=2.0)
    assert out[0, 4, 6] == pytest.approx(1.0) and out[0, 4, 4] == pytest.approx(0.0)


def test_each_axis_zooms_by_its_own_factor():
    """scales_y: the horizontal factor doubles horizontal distances only, the vertical one vertical ones."""
    x = np.zeros((1, 9, 9), np.float32)
    x[0, 4, 5] = x[0, 5, 4] = 1.0  # one pixel right of the centre, one below it
    out = warp_affine(x, inverse_affine_matrices([0.0], [0.0], [0.0], [2.0], 9, 9, scales_y=[1.0]))
    assert out[0, 4, 6] == pytest.approx(1.0) and out[0, 4, 4] == pytest.approx(0.0)  # moved right
    assert out[0, 5, 4] == pytest.approx(1.0) and out[0, 5, 3] == pytest.approx(0.5)  # stayed, wider
    assert out[0, 6, 4] == pytest.approx(0.0)                                         # not taller
    out = warp_affine(x, inverse_affine_matrices([0.0], [0.0], [0.0], [1.0], 9, 9, scales_y=[2.0]))
    assert out[0, 6, 4] == pytest.approx(1.0) and out[0, 4, 4] == pytest.approx(0.0)  # moved down
    assert out[0, 4, 5] == pytest.approx(1.0) and out[0, 3, 5] == pytest.approx(0.5)  # stayed, taller
    assert out[0, 4, 6] == pytest.approx(0.0)                                         # not wider


def test_a_rotation_after_zooming_each_axis_is_the_forward_map_inverted(rng):
    """A = [M | b] sends q = c + t + R S (p - c) back to p, for S = diag(sx, sy)."""
    angles, tx, ty = rng.uniform(-40, 40, 5), rng.uniform(-4, 4, 5), rng.uniform(-4, 4, 5)
    sx, sy = rng.uniform(0.7, 1.3, 5), rng.uniform(0.7, 1.3, 5)
    A = inverse_affine_matrices(angles, tx, ty, sx, 12, 10, scales_y=sy)
    c = np.array([4.5, 5.5])
    for n in range(5):
        theta = np.deg2rad(angles[n])
        R = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
        p = rng.uniform(0, 9, 2)
        q = c + np.array([tx[n], ty[n]]) + R @ np.diag([sx[n], sy[n]]) @ (p - c)
        np.testing.assert_allclose(A[n] @ np.append(q, 1.0), p, atol=1e-12)


def test_the_zoom_of_each_axis_is_drawn_after_the_horizontal_one(rng):
    x = rng.random((6, 1, 28, 28)).astype(np.float32)
    out = random_affine(x, np.random.default_rng(3), degrees=15, translate=0.1, scale=(0.9, 1.1),
                        scale_each_axis=True)
    g = np.random.default_rng(3)
    angles, tx, ty = g.uniform(-15, 15, 6), g.uniform(-2.8, 2.8, 6), g.uniform(-2.8, 2.8, 6)
    sx, sy = g.uniform(0.9, 1.1, 6), g.uniform(0.9, 1.1, 6)
    np.testing.assert_allclose(out, warp_affine(x, inverse_affine_matrices(angles, tx, ty, sx, 28, 28, sy)),
                               atol=1e-6)
    transform = MnistTransform(degrees=15, scale=(0.9, 1.1), scale_each_axis=True)
    assert "scale_each_axis=True" in repr(transform)
    np.testing.assert_allclose(transform.draw(np.random.default_rng(3), 6, 28, 28),
                               inverse_affine_matrices(angles, tx, ty, sx, 28, 28, sy), atol=1e-12)


def test_shifting_everything_out_leaves_only_fill(rng):
    fill = (0 - MNIST_MEAN) / MNIST_STD
    out = warp(rng.random((2, 1, 28, 28)), tx=100, fill=fill)
    np.testing.assert_allclose(out, fill)


def test_channels_share_their_image_matrix(rng):
    x = rng.random((4, 3, 12, 12)).astype(np.float32)
    out = random_affine(x, np.random.default_rng(7), degrees=30, translate=0.2, scale=(0.8, 1.2))
    for c in range(3):
        single = random_affine(x[:, c], np.random.default_rng(7), degrees=30, translate=0.2, scale=(0.8, 1.2))
        np.testing.assert_allclose(out[:, c], single, atol=1e-6)


def test_random_affine_draws_in_the_documented_order(rng):
    x = rng.random((6, 1, 28, 28)).astype(np.float32)
    out = random_affine(x, np.random.default_rng(3), degrees=15, translate=0.1, scale=(0.9, 1.1))
    g = np.random.default_rng(3)
    angles, tx, ty = g.uniform(-15, 15, 6), g.uniform(-2.8, 2.8, 6), g.uniform(-2.8, 2.8, 6)
    scales = g.uniform(0.9, 1.1, 6)
    np.testing.assert_allclose(out, warp_affine(x, inverse_affine_matrices(angles, tx, ty, scales, 28, 28)),
                               atol=1e-6)


def test_random_affine_is_deterministic_given_the_seed(rng):
    x = rng.random((8, 28, 28)).astype(np.float32)
    a = random_affine(x, np.random.default_rng(1))
    b = random_affine(x, np.random.default_rng(1))
    c = random_affine(x, np.random.default_rng(2))
    assert a.shape == x.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert random_affine(x.astype(np.uint8), np.random.default_rng(1)).dtype == np.float32


@pytest.mark.parametrize("kwargs, error, message", [
    ({"degrees": -1}, ValueError, r"degrees must be a finite number >= 0 .* got -1"),
    ({"degrees": None}, ValueError, r"degrees must be a finite number >= 0 .* got None"),
    ({"degrees": float("inf")}, ValueError, r"degrees must be a finite number >= 0 .* got inf"),
    ({"degrees": "10"}, ValueError, r"degrees must be a finite number >= 0 .* got '10'"),
    ({"translate": 1.5}, ValueError, r"translate must be a number in \[0, 1\] .* got 1.5"),
    ({"translate": True}, ValueError, r"translate must be a number in \[0, 1\] .* got True"),
    ({"scale": 0.9}, ValueError, r"scale must be None or \(lo, hi\) with 0 < lo <= hi, got 0.9"),
    ({"scale": (0.9, "1.1")}, ValueError, r"scale must be None or \(lo, hi\) with 0 < lo <= hi, got \(0.9, '1.1'\)"),
    ({"scale": (1.2, 0.8)}, ValueError,
     r"scale must be None or \(lo, hi\) with 0 < lo <= hi, got \(1.2, 0.8\)"),
    ({"scale": (0, 1)}, ValueError, r"scale must be None or \(lo, hi\)"),
    ({"generator": 0}, TypeError, r"needs a numpy.random.Generator .* got int"),
])
def test_random_affine_arguments_are_checked(kwargs, error, message):
    x = np.zeros((2, 1, 5, 5), np.float32)
    kwargs = {"generator": np.random.default_rng(0), **kwargs}
    with pytest.raises(error, match=message):
        random_affine(x, **kwargs)


@pytest.mark.parametrize("batch,got", [(np.zeros((28, 28), np.float32), "shape \\(28, 28\\)"),
                                       ([[0.0]], "list")], ids=["one-image", "list"])
def test_random_affine_wants_a_batch(batch, got):
    with pytest.raises(ValueError, match=f"random_affine expects a batch of images \\(N, H, W\\) or "
                                         f"\\(N, C, H, W\\), got {got}; for one image use image\\[None\\]"):
        random_affine(batch, np.random.default_rng(0))


def test_warp_needs_one_matrix_per_image():
    with pytest.raises(ValueError, match=r"expected matrices of shape \(2, 2, 3\), one per image, "
                                         r"found \(1, 2, 3\)"):
        warp_affine(np.zeros((2, 1, 5, 5)), np.zeros((1, 2, 3)))


def test_bilinear_sampling_matches_torch_grid_sample(torch, rng):
    """PyTorch's grid_sample (bilinear, zero padding, align_corners=True) is an independent reference."""
    x = rng.random((4, 1, 28, 28))
    A = inverse_affine_matrices(rng.uniform(-40, 40, 4), rng.uniform(-4, 4, 4), rng.uniform(-4, 4, 4),
                                rng.uniform(0.7, 1.3, 4), 28, 28)
    ys, xs = np.meshgrid(np.arange(28.0), np.arange(28.0), indexing="ij")
    p = A[:, :, :2] @ np.stack([xs.ravel(), ys.ravel()]) + A[:, :, 2:]   # (N, 2, 784) input points
    grid = (p / 27 * 2 - 1).transpose(0, 2, 1).reshape(4, 28, 28, 2)      # to [-1, 1], (x, y) last
    expected = torch.nn.functional.grid_sample(torch.tensor(x), torch.tensor(grid), mode="bilinear",
                                               padding_mode="zeros", align_corners=True).numpy()
    np.testing.assert_allclose(warp_affine(x, A), expected, atol=1e-10)


@pytest.mark.gpu
def test_random_affine_on_cupy_matches_numpy(rng):
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install -e '.[gpu-cuda12]')")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver or no GPU
        pytest.skip(f"CuPy cannot reach a GPU: {exc}")
    x = rng.integers(0, 256, (16, 28, 28), dtype=np.uint8)
    host = mnist_train_transform(scale=(0.9, 1.1))(x, np.random.default_rng(5))
    device = mnist_train_transform(scale=(0.9, 1.1))(cupy.asarray(x), np.random.default_rng(5))
    assert isinstance(device, cupy.ndarray) and device.dtype == np.float32
    np.testing.assert_allclose(cupy.asnumpy(device), host, atol=1e-4)


# --- the MNIST pipelines -----------------------------------------------------------------------

def test_pipelines(rng):
    images = rng.integers(0, 256, (8, 28, 28), dtype=np.uint8)
    train = mnist_train_transform()
    x = train(images, np.random.default_rng(0))
    assert x.shape == (8, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_array_equal(x, train(images, np.random.default_rng(0)))
    expected = normalize(random_affine(to_float(images), np.random.default_rng(0)))
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(mnist_eval_transform()(images), normalize(images))
    np.testing.assert_array_equal(mnist_train_transform(augment=False)(images, None), normalize(images))
    assert "augment=True, degrees=10.0" in repr(train)
    with pytest.raises(ValueError, match="needs a numpy.random.Generator"):
        train(images, None)
    with pytest.raises(ValueError, match="degrees must be a finite number >= 0"):
        mnist_train_transform(degrees=-5)
