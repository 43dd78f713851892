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
from strategies import training_step, using

# --- the CUDA sources, compiled as C --------------------------------------

def _c_function(src: ck.KernelSource) -> str:
    """The kernel as a C loop over the thread index ``i`` (its parameters are C declarations already)."""
    return (f"void {src.name}({', '.join(('long long n_threads',) + src.params)}) {{\n"
            f"  for (long long i = 0; i < n_threads; ++i) {{ {src.body} }}\n}}\n")


@pytest.fixture(scope="module")
def c_kernels(tmp_path_factory):
    """{dtype: ctypes library} holding every kernel compiled for that element type."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc on this machine to compile the CUDA kernel sources as C")
    libs = {}
    for dtype, ctype in ck.CTYPES.items():
        folder = tmp_path_factory.mktemp(ctype)
        code = "#include <math.h>\n#include <stdbool.h>\n" + f"typedef {ctype} T;\n" + "".join(
            _c_function(s) for s in ck.SOURCES)
        (folder / "k.c").write_text(code)
        subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", str(folder / "k.so"), str(folder / "k.c"), "-lm"],
                       check=True, capture_output=True)
        libs[dtype.type] = ctypes.CDLL(str(folder / "k.so"))
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


def _source(name) -> ck.KernelSource:
    return next(s for s in ck.SOURCES if s.name == name)


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
    _call(c_kernels[dtype], _source("minicnn_im2col"), dtype, col_t.size, x, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW, pad, col_t)
    np.testing.assert_array_equal(col_t.transpose(1, 0, 2), expected)


@given(geometries)
def test_col2im_source_equals_reference(c_kernels, g):
    shape, k, s, p, dtype = _unpack(g)
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(shape, k, s, p)
    col = np.random.default_rng(1).standard_normal((N, C * KH * KW, OH * OW)).astype(dtype)
    expected = ref.col2im(col, shape, k, s, p)
    col_t = np.ascontiguousarray(col.transpose(1, 0, 2))
    img = np.empty(shape, dtype=dtype)
    _call(c_kernels[dtype], _source("minicnn_col2im"), dtype, img.size, col_t, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW, img)
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
    _call(lib, _source("minicnn_maxpool_fwd"), dtype, out.size, x, argmax, H, W, KH, KW, SH, SW, PH, PW, OH, OW, -np.inf, out)
    np.testing.assert_array_equal(out, out_ref)
    np.testing.assert_array_equal(argmax, arg_ref)  # ties go to the first maximum, as in the reference
    grad = rng.standard_normal(out.shape).astype(dtype)
    dx = np.empty(shape, dtype=dtype)
    _call(lib, _source("minicnn_maxpool_bwd"), dtype, dx.size, grad, argmax, H, W, KH, KW, SH, SW, PH, PW, OH, OW, dx)
    np.testing.assert_allclose(dx, ref.maxpool2d_backward(grad, arg_ref, shape, k, s, p), rtol=1e-6, atol=1e-6)


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 6), st.sampled_from([np.float32, np.float64]))
def test_transpose01_bias_source_equals_reference(c_kernels, A, B, P, dtype):
    rng = np.random.default_rng(3)
    a, bias = rng.standard_normal((A, B, P)).astype(dtype), rng.standard_normal(A).astype(dtype)
    out = np.empty((B, A, P), dtype=dtype)
    _call(c_kernels[dtype], _source("minicnn_transpose01_bias"), dtype, out.size, a, bias, A, B, P, out)
    np.testing.assert_array_equal(out, ref.transpose01(a, bias))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_source_equals_reference_bit_for_bit(c_kernels, dtype):
    y = np.array([-1.0, 0.0, -0.0, 2.0, np.nan, 3.0, 0.0, 1.0], dtype=dtype)
    g = np.array([1.0, 2.0, -3.0, 4.0, 5.0, np.nan, np.nan, -0.0], dtype=dtype)
    dx = np.empty_like(g)
    _call(c_kernels[dtype], _source("minicnn_relu_bwd"), dtype, dx.size, g, y, dx)
    expected = ref.relu_backward(g, y)
    np.testing.assert_array_equal(dx, expected)
    assert np.array_equal(np.signbit(dx), np.signbit(expected))  # -0 where the reference has -0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_source_updates_every_tensor_as_the_reference(c_kernels, dtype, weight_decay):
    # One launch over three tensors of different sizes, through the tables of their addresses.
    rng = np.random.default_rng(4)
    shapes = [(3, 4), (5,), (2, 1, 3)]
    params, grads, ms, vs = ([rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(4))
    vs = [np.abs(v) for v in vs]
    expected = [tuple(a.copy() for a in arrays) for arrays in zip(params, grads, ms, vs)]
    beta1, beta2, lr, eps, t = 0.9, 0.999, 1e-2, 1e-8, 3
    scalars = [dtype(s) for s in (lr, beta1, 1 - beta1, beta2, 1 - beta2, eps, 1 - beta1 ** t, 1 - beta2 ** t,
                                  weight_decay)]
    ref.adam_update_many(*(list(arrays) for arrays in zip(*expected)), *scalars)
    starts = np.concatenate([[0], np.cumsum([np.prod(s) for s in shapes])]).astype(np.int64)
    tables = [np.array([a.ctypes.data for a in arrays], dtype=np.uint64) for arrays in (params, grads, ms, vs)]
    _call(c_kernels[dtype], _source("minicnn_adam"), dtype, int(starts[-1]), len(shapes), starts, *tables, *scalars)
    for got, want in zip(zip(params, grads, ms, vs), expected):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-6 if dtype == np.float32 else 1e-14)


# --- the CUDA sources, compiled by NVRTC (needs no GPU) ----------------------

@pytest.fixture(scope="module")
def nvrtc():
    """CuPy's binding of NVRTC, NVIDIA's runtime CUDA compiler, when it and its library load."""
    try:
        from cupy_backends.cuda.libs import nvrtc
    except ImportError as exc:
        pytest.skip(f"CuPy is not installed, so NVRTC cannot be called ({exc}); "
                    f"pip install -e '.[nvrtc]' to compile the CUDA kernels here")
    try:
        nvrtc.getVersion()
    except Exception as exc:  # the library itself (libnvrtc.so) is missing
        pytest.skip(f"CuPy is installed but the NVRTC library does not load ({str(exc).splitlines()[0]}); "
                    f"pip install -e '.[nvrtc]' installs it")
    return nvrtc


def _nvrtc_compile(nvrtc, code, name, arch="compute_90"):
    """PTX of ``code``; raises with the compiler's log when it does not compile."""
    program = nvrtc.createProgram(code, name, [], [])
    try:
        nvrtc.compileProgram(program, [f"--gpu-architecture={arch}"])
    except nvrtc.NVRTCError as exc:
        raise AssertionError(f"{name} does not compile: {exc}\n{nvrtc.getProgramLog(program)}") from None
    return nvrtc.getPTX(program).decode()


@pytest.mark.parametrize("dtype", list(ck.CTYPES), ids=list(ck.CTYPES.values()))
@pytest.mark.parametrize("arch", ["compute_75", "compute_90"])  # CUDA 13's oldest target; H100/H200
def test_every_cuda_kernel_compiles_with_nvrtc(nvrtc, dtype, arch):
    ptx = _nvrtc_compile(nvrtc, ck.cuda_source(ck.CTYPES[dtype]), f"minicnn_{ck.CTYPES[dtype]}.cu", arch)
    for src in ck.SOURCES:
        assert re.search(rf"\.entry {src.name}\(", ptx), f"{src.name} is missing from the PTX"


def test_nvrtc_check_fails_on_a_broken_kernel(nvrtc):
    # The compile check can fail: an undeclared name in a kernel body is an error with the compiler's log.
    broken = ck.KernelSource(name="broken", params=("T* out",), body="out[i] = undeclared;")
    with pytest.raises(AssertionError, match="undeclared"):
        _nvrtc_compile(nvrtc, "typedef float T;\n" + ck.kernel_function(broken), "broken.cu")


def test_sources_use_64_bit_indices_only():
    for src in ck.SOURCES:
        assert not re.search(r"\bint\b", src.body), f"{src.name} declares a 32-bit int"
        for param in src.params:
            assert re.fullmatch(r"(const )?(T|long long)\*?( const\*)? \w+", param), (src.name, param)


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
    got = ck.transpose01(cupy.asarray(a), None if bias is None else cupy.asarray(bias))
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

    runs = {}
    for move in (False, True):
        cpu = minicnn.set_backend("numpy")
        model = models.MnistCNN(seed=0)
        opt = optim.Adam(model.parameters())
        training_step(model, opt, cpu, x, y)
        training_step(model, opt, cpu, x, y)
        if move:
            gpu = minicnn.set_backend("cupy")
            model.to("cupy")
            opt.load_state_dict(opt.state_dict())
            assert all(isinstance(s["exp_avg"], cupy.ndarray) for s in opt.state.values())
            training_step(model, opt, gpu, x, y)
        else:
            training_step(model, opt, cpu, x, y)
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


# --- fused kernels, training on the device, CUDA graphs ------------------------

def test_a_graphed_step_refuses_models_whose_state_a_replay_would_not_repeat():
    from minicnn import models, nn, optim
    from minicnn.cuda_graph import GraphedTrainStep

    model = models.MnistBNCNN(seed=0)
    with pytest.raises(ValueError, match="is a BatchNorm2d, whose state changes between steps"):
        GraphedTrainStep(model, nn.NLLLoss(), optim.Adam(model.parameters()))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_fused_relu_backward_and_adam_equal_reference(on_gpu, dtype):
    cupy = on_gpu
    rng = np.random.default_rng(8)
    y = np.maximum(rng.standard_normal((4, 5)), 0).astype(dtype)
    g = rng.standard_normal((4, 5)).astype(dtype)
    np.testing.assert_array_equal(ck.relu_backward(cupy.asarray(g), cupy.asarray(y)).get(), ref.relu_backward(g, y))
    shapes = [(32, 1, 3, 3), (32,), (128, 3136), (10,)]
    host = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(4)]
    host[3] = [np.abs(v) for v in host[3]]
    device = [[cupy.asarray(a) for a in arrays] for arrays in host]
    scalars = [dtype(s) for s in (1e-3, 0.9, 0.1, 0.999, 0.001, 1e-8, 1 - 0.9 ** 2, 1 - 0.999 ** 2, 0.01)]
    for _ in range(2):  # the second call reuses the cached address tables
        ref.adam_update_many(*host, *scalars)
        ck.adam_update_many(*device, *scalars)
    for h_arrays, d_arrays in zip(host, device):
        for h, d in zip(h_arrays, d_arrays):
            np.testing.assert_allclose(d.get(), h, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-7)


def _short_fit(images, labels, epochs=1):
    from minicnn import models, nn, optim
    from minicnn.data import DataLoader, mnist_train_transform
    from minicnn.training import fit

    loader = DataLoader(images, labels, batch_size=32, shuffle=True, generator=np.random.default_rng(0),
                        transform=mnist_train_transform())
    model = models.MnistCNN(seed=0)
    history = fit(model, nn.NLLLoss(), optim.Adam(model.parameters()), loader, epochs, progress=False, log=None)
    return history, {k: B.to_numpy(v) for k, v in model.state_dict().items()}


@pytest.mark.gpu
def test_gpu_fit_equals_fit_on_the_host(on_gpu):
    rng = np.random.default_rng(9)
    images, labels = rng.integers(0, 256, (256, 28, 28)).astype(np.uint8), rng.integers(0, 10, 256)
    gpu_history, gpu_weights = _short_fit(images, labels)
    minicnn.set_backend("numpy")
    host_history, host_weights = _short_fit(images, labels)
    minicnn.set_backend("cupy")
    assert gpu_history["train_loss"] == pytest.approx(host_history["train_loss"], rel=1e-4)
    for key, value in host_weights.items():
        np.testing.assert_allclose(gpu_weights[key], value, rtol=1e-3, atol=1e-5)


@pytest.mark.gpu
def test_gpu_graphed_steps_equal_ordinary_steps(on_gpu):
    from minicnn import models, nn, optim
    from minicnn.cuda_graph import GraphedTrainStep

    cupy = on_gpu
    rng = np.random.default_rng(10)
    batches = [(cupy.asarray(rng.standard_normal((16, 1, 28, 28)).astype(np.float32)),
                cupy.asarray(rng.integers(0, 10, 16))) for _ in range(6)]
    runs = {}
    for graphed in (False, True):
        model = models.MnistCNN(seed=0)
        opt = optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nn.NLLLoss()
        step = GraphedTrainStep(model, loss_fn, opt, warmup=2) if graphed else None
        losses = []
        for x, y in batches:  # 2 warm-up steps, the capture, 3 replays
            if graphed:
                loss, _ = step(x, y)
            else:
                loss = loss_fn(model(x), y)
                model.backward(loss_fn.backward())
                opt.step()
            opt.zero_grad()
            losses.append(float(loss))
        runs[graphed] = losses, {k: B.to_numpy(v) for k, v in model.state_dict().items()}
    assert step.graph is not None and step.calls == 6
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-5)
    for key, value in runs[False][1].items():
        np.testing.assert_allclose(runs[True][1][key], value, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="cannot replay a step recorded for"):
        step(batches[0][0][:8], batches[0][1][:8])
