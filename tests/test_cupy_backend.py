"""The CuPy backend.

Without a GPU: the CUDA sources of the kernels are compiled as plain C with
gcc and run on the CPU over hypothesis-drawn shapes, so their index
arithmetic is checked against the NumPy reference everywhere; and asking for
the backend gives a clear error.  With CuPy and a GPU: the kernels, the
layer gradients and a training step are checked on the device.
"""
import ctypes
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn
from minicnn import backend as B
from minicnn.backend import cupy_kernels as ck
from minicnn.backend import numpy_kernels as ref
from minicnn.nn.unfold import window
from strategies import using

# --- the CUDA sources, compiled as C --------------------------------------

_C_TYPES = {"int64": "long long", "T": "T"}


def _c_function(src: ck.KernelSource) -> str:
    """The elementwise kernel as a C loop over the thread index ``i``."""
    args = ["long long n_threads__"]
    for param in src.in_params:
        parts = param.split()
        raw = parts[0] == "raw"
        ctype, name = _C_TYPES[parts[-2]], parts[-1]
        args.append(f"{ctype}* {name}" if raw else f"{ctype} {name}")
    out_type, out_name = src.out_param.split()
    args.append(f"{_C_TYPES[out_type]}* out__")
    return (f"void {src.name}({', '.join(args)}) {{\n"
            f"#define {out_name} (out__[i])\n"
            f"  for (long long i = 0; i < n_threads__; ++i) {{ {src.body} }}\n"
            f"#undef {out_name}\n}}\n")


@pytest.fixture(scope="module")
def c_kernels(tmp_path_factory):
    """{dtype: ctypes library} holding every kernel compiled for that element type."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc on this machine to compile the CUDA kernel sources as C")
    libs = {}
    for dtype, ctype in ((np.float32, "float"), (np.float64, "double")):
        folder = tmp_path_factory.mktemp(ctype)
        code = "#include <math.h>\n#include <stdbool.h>\n" + f"typedef {ctype} T;\n" + "".join(
            _c_function(s) for s in ck.SOURCES)
        (folder / "k.c").write_text(code)
        subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", str(folder / "k.so"), str(folder / "k.c"), "-lm"],
                       check=True, capture_output=True)
        libs[dtype] = ctypes.CDLL(str(folder / "k.so"))
    return libs


def _call(lib, src, dtype, n_threads, *args):
    """Call kernel ``src``: arrays are passed as pointers, ints as long long, floats as T."""
    scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    converted = [ctypes.c_longlong(n_threads)]
    for a in args:
        if isinstance(a, np.ndarray):
            assert a.flags.c_contiguous
            converted.append(ctypes.c_void_p(a.ctypes.data))
        elif isinstance(a, (int, np.integer)):
            converted.append(ctypes.c_longlong(int(a)))
        else:
            converted.append(scalar(float(a)))
    getattr(lib, src.name)(*converted)


geometries = st.tuples(
    st.integers(1, 2), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9),  # N C H W
    st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3),  # KH KW SH SW
    st.integers(0, 2), st.integers(0, 2),                                        # PH PW
    st.sampled_from([np.float32, np.float64]),
).filter(lambda g: g[2] + 2 * g[8] >= g[4] and g[3] + 2 * g[9] >= g[5])


def _unpack(g):
    N, C, H, W, KH, KW, SH, SW, PH, PW, dtype = g
    return (N, C, H, W), (KH, KW), (SH, SW), (PH, PW), dtype


@given(geometries, st.sampled_from([0.0, -np.inf]))
def test_im2col_source_equals_reference(c_kernels, g, pad):
    shape, k, s, p, dtype = _unpack(g)
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    expected = ref.im2col(x, k, s, p, pad_value=pad)
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(shape, k, s, p)
    col_t = np.empty((C * KH * KW, N, OH * OW), dtype=dtype)
    _call(c_kernels[dtype], ck.SOURCES[0], dtype, col_t.size, x, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW, pad, col_t)
    np.testing.assert_array_equal(col_t.transpose(1, 0, 2), expected)


@given(geometries)
def test_col2im_source_equals_reference(c_kernels, g):
    shape, k, s, p, dtype = _unpack(g)
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(shape, k, s, p)
    col = np.random.default_rng(1).standard_normal((N, C * KH * KW, OH * OW)).astype(dtype)
    expected = ref.col2im(col, shape, k, s, p)
    col_t = np.ascontiguousarray(col.transpose(1, 0, 2))
    img = np.empty(shape, dtype=dtype)
    _call(c_kernels[dtype], ck.SOURCES[1], dtype, img.size, col_t, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW, img)
    np.testing.assert_allclose(img, expected, rtol=1e-6 if dtype == np.float32 else 1e-13, atol=1e-6)


@given(geometries.filter(lambda g: 2 * g[8] <= g[4] and 2 * g[9] <= g[5]), st.booleans())
def test_maxpool_sources_equal_reference(c_kernels, g, with_ties):
    shape, k, s, p, dtype = _unpack(g)
    rng = np.random.default_rng(2)
    x = (rng.integers(-2, 3, shape) if with_ties else rng.standard_normal(shape)).astype(dtype)
    out_ref, arg_ref = ref.maxpool2d_forward(x, k, s, p)
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(shape, k, s, p)
    out = np.empty((N, C, OH, OW), dtype=dtype)
    argmax = np.empty((N * C, OH * OW), dtype=np.int64)
    lib = c_kernels[dtype]
    _call(lib, ck.SOURCES[2], dtype, out.size, x, argmax, H, W, KH, KW, SH, SW, PH, PW, OH, OW, -np.inf, out)
    np.testing.assert_array_equal(out, out_ref)
    np.testing.assert_array_equal(argmax, arg_ref)  # ties go to the first maximum, as in the reference
    grad = rng.standard_normal(out.shape).astype(dtype)
    dx = np.empty(shape, dtype=dtype)
    _call(lib, ck.SOURCES[3], dtype, dx.size, grad, argmax, H, W, KH, KW, SH, SW, PH, PW, OH, OW, dx)
    np.testing.assert_allclose(dx, ref.maxpool2d_backward(grad, arg_ref, shape, k, s, p), rtol=1e-6, atol=1e-6)


def test_sources_use_64_bit_indices_only():
    for src in ck.SOURCES:
        assert not re.search(r"\bint\b(?! *64)", src.body), f"{src.name} declares a 32-bit int"
        assert all(p.split()[-2] in ("T", "int64") for p in src.in_params), src.name


def test_geometry_gives_the_kernel_arguments():
    assert window((2, 3, 7, 6), (3, 2), (2, 1), (1, 0)) == (2, 3, 7, 6, 3, 2, 2, 1, 1, 0, 4, 5)


# --- asking for the backend -------------------------------------------------

def test_missing_cupy_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail
    monkeypatch.setattr(B, "_loaded", {k: v for k, v in B._loaded.items() if k != "cupy"})
    monkeypatch.setattr(B, "_failures", {})
    monkeypatch.setattr(B, "_current", B._current)
    with pytest.raises(minicnn.BackendUnavailableError, match=r'pip install -e "\.\[gpu-cuda12\]"') as info:
        minicnn.set_backend("cupy")
    assert "Available here: numpy" in str(info.value) or "Available here: numba" in str(info.value)


# --- on a GPU -----------------------------------------------------------------

def _cupy_or_skip():
    try:
        B.load_backend("cupy")
    except minicnn.BackendUnavailableError as exc:
        pytest.skip(f"no CuPy GPU backend here: {exc}")
    import cupy

    return cupy


@pytest.fixture
def on_gpu():
    cupy = _cupy_or_skip()
    with using("cupy"):
        yield cupy


@pytest.mark.gpu
@given(geometries, st.booleans())
def test_gpu_kernels_equal_reference(g, with_ties):
    cupy = _cupy_or_skip()
    shape, k, s, p, dtype = _unpack(g)
    rng = np.random.default_rng(3)
    x = (rng.integers(-2, 3, shape) if with_ties else rng.standard_normal(shape)).astype(dtype)
    xd = cupy.asarray(x)
    np.testing.assert_array_equal(ck.im2col(xd, k, s, p).get(), ref.im2col(x, k, s, p))
    col = ref.im2col(x, k, s, p)
    np.testing.assert_allclose(ck.col2im(cupy.asarray(col), shape, k, s, p).get(),
                               ref.col2im(col, shape, k, s, p), rtol=1e-6, atol=1e-6)
    if 2 * p[0] <= k[0] and 2 * p[1] <= k[1]:
        out, arg = ck.maxpool2d_forward(xd, k, s, p)
        out_ref, arg_ref = ref.maxpool2d_forward(x, k, s, p)
        np.testing.assert_array_equal(out.get(), out_ref)
        np.testing.assert_array_equal(arg.get(), arg_ref)
        grad = rng.standard_normal(out_ref.shape).astype(dtype)
        np.testing.assert_allclose(ck.maxpool2d_backward(cupy.asarray(grad), arg, shape, k, s, p).get(),
                                   ref.maxpool2d_backward(grad, arg_ref, shape, k, s, p), rtol=1e-6, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_gpu_transpose01_equals_reference(with_bias, dtype):
    cupy = _cupy_or_skip()
    rng = np.random.default_rng(5)
    a = rng.standard_normal((3, 4, 5)).astype(dtype)
    bias = rng.standard_normal(3).astype(dtype) if with_bias else None
    got = ref.transpose01(cupy.asarray(a), None if bias is None else cupy.asarray(bias))
    assert got.dtype == dtype and got.flags.c_contiguous
    np.testing.assert_array_equal(got.get(), ref.transpose01(a, bias))


@pytest.mark.gpu
def test_gpu_gradchecks(on_gpu):
    cupy = on_gpu
    rng = np.random.default_rng(4)
    from minicnn import nn

    x = cupy.asarray(rng.standard_normal((2, 3, 7, 6)))
    assert minicnn.gradcheck(nn.Conv2d(3, 4, 3, stride=2, padding=1, dtype=np.float64), x)
    assert minicnn.gradcheck(nn.MaxPool2d(3, stride=2, padding=1), cupy.asarray(rng.permutation(252).reshape(2, 3, 7, 6) * 0.01))
    assert minicnn.gradcheck(nn.BatchNorm2d(3, dtype=np.float64), x)
    assert minicnn.gradcheck(nn.CrossEntropyLoss(), cupy.asarray(rng.standard_normal((4, 5))), cupy.asarray([0, 1, 4, 2]))


@pytest.mark.gpu
def test_gpu_training_step_equals_cpu(on_gpu):
    from minicnn import models, nn, optim

    cupy = on_gpu
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    outs = {}
    for name in ("cupy", "numpy"):
        minicnn.set_backend(name)
        model = models.MnistCNN(seed=0)
        opt = optim.Adam(model.parameters())
        crit = nn.NLLLoss()
        b = minicnn.get_backend()
        loss = crit(model(b.asarray(x)), b.asarray(y))
        model.backward(crit.backward())
        opt.step()
        outs[name] = (loss, {k: B.to_numpy(v) for k, v in model.state_dict().items()})
    minicnn.set_backend("cupy")
    assert outs["cupy"][0] == pytest.approx(outs["numpy"][0], rel=1e-5)
    for k, v in outs["numpy"][1].items():
        np.testing.assert_allclose(outs["cupy"][1][k], v, rtol=1e-4, atol=1e-6)
    assert isinstance(models.MnistCNN(seed=0).fc1.weight.data, cupy.ndarray)


@pytest.mark.gpu
def test_gpu_model_and_optimizer_move_mid_training(on_gpu):
    # Two Adam steps on the host, then model.to("cupy") and the optimizer state
    # reloaded onto the GPU; the third step must equal a third step on the host.
    from minicnn import models, nn, optim

    cupy = on_gpu
    rng = np.random.default_rng(6)
    x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 8)

    def step(model, opt, b):
        crit = nn.NLLLoss()
        crit(model(b.asarray(x)), b.asarray(y))
        model.backward(crit.backward())
        opt.step()
        opt.zero_grad()

    runs = {}
    for move in (False, True):
        cpu = minicnn.set_backend("numpy")
        model = models.MnistCNN(seed=0)
        opt = optim.Adam(model.parameters())
        step(model, opt, cpu)
        step(model, opt, cpu)
        if move:
            gpu = minicnn.set_backend("cupy")
            model.to("cupy")
            opt.load_state_dict(opt.state_dict())
            assert all(isinstance(s["exp_avg"], cupy.ndarray) for s in opt.state.values())
            step(model, opt, gpu)
        else:
            step(model, opt, cpu)
        runs[move] = {k: B.to_numpy(v) for k, v in model.state_dict().items()}
    minicnn.set_backend("cupy")
    for k, v in runs[False].items():
        np.testing.assert_allclose(runs[True][k], v, rtol=1e-4, atol=1e-6)


@pytest.mark.gpu
def test_gpu_no_grad_runs_the_batch_whole_and_equals_a_normal_forward(on_gpu):
    from minicnn import models

    cupy = on_gpu
    model = models.MnistCNN(seed=0).eval()
    sizes = []
    forward = model[0].forward
    object.__setattr__(model[0], "forward", lambda x: sizes.append(len(x)) or forward(x))
    x = cupy.asarray(np.random.default_rng(7).standard_normal((300, 1, 28, 28)).astype(np.float32))
    with minicnn.no_grad():
        out = model(x)
    assert sizes == [300] and isinstance(out, cupy.ndarray)
    np.testing.assert_allclose(B.to_numpy(out), B.to_numpy(model(x)), rtol=1e-5, atol=1e-5)
    assert model[0]._cache is not None  # the normal forward cached; the no_grad one had not
