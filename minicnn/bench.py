"""Benchmarks of the backends side by side: measuring training and inference throughput, per-layer times.

    python benchmarks/bench_backends.py                      # every backend that loads, + PyTorch if installed
    python benchmarks/bench_backends.py --backends numpy numba --json out.json --plot out.png

What is measured, for MnistCNN on real MNIST images:

* the first training step on a fresh model (for Numba and CuPy this includes
  compiling the kernels, or loading them from the on-disk cache), reported
  separately from the steady state;
* training throughput at batch 64 with Adam (images/second: forward, NLL
  loss, backward, optimizer step), and at any further batch sizes asked for
  (``train_batches``; the GPU check adds 256);
* inference throughput at batch 1000 in eval mode under no_grad (images/second; PyTorch under
  torch.no_grad());
* the forward and backward time of every layer at batch 64;
* the ceiling that the matrix products alone set: the floating-point
  operations of the convolutions' and linear layers' products in one
  training step and one inference batch, divided by the speed of a large
  float32 matrix product on the same device in the same run.  No backend
  built on im2col and BLAS can be faster than that, so the gap between a
  backend's rate and its ceiling is what everything else (im2col, col2im,
  pooling, ReLU, the axis swaps, the optimizer) costs.  A second ceiling
  times the products on the shapes the network really multiplies (such as
  (64, 288) @ (288, 12544) for conv2's forward at batch 64), one by one: thin
  and tall products run below the square product's speed.

Each figure is the median of ``--repeats`` rounds; the rounds visit the
backends in turn (round-robin), so a machine that slows down or speeds up
during the run affects every backend alike.  Before each timed block the
run pauses for ``--settle`` seconds: BLAS and OpenMP worker threads keep
spinning for a while after their last task, and without the pause the
threads of the backend timed just before would compete for the cores with
the one being timed.  On a GPU the data is on the device before timing
starts, and the time is the device's own, between two CUDA events recorded
before and after the timed calls (never a host clock around asynchronous
launches); the memory the run's arrays hold on the GPU is reported too
(CuPy's memory pool, PyTorch's peak allocation).  ``cupy-graph`` is the
CuPy backend training through :class:`minicnn.cuda_graph.GraphedTrainStep`.
PyTorch, when installed, runs the same network as a
reference only (:func:`torch_network` builds it from ``minicnn.models.MnistCNN``),
eagerly, with ``cudnn.benchmark`` on when on CUDA, in a process of its own
(:class:`_TorchProcess`: PyTorch would otherwise share the Numba backend's
OpenMP runtime and its sleeping threads): minicnn never imports it outside
that process and the tests.  The tables and the
chart are in :mod:`minicnn.bench_report`, the command line that prints them in
:mod:`minicnn.commands.bench`.
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

import minicnn
from minicnn import models, nn, optim
from minicnn.backend import available_backends, to_numpy
from minicnn.nn.fusion import fuse_for
from minicnn.training import forward_in_blocks

TRAIN_BATCH, INFER_BATCH = 64, 1000


def _mnist_batch(n):
    from minicnn.data import load_mnist, normalize

    images, labels = load_mnist("test")
    return normalize(images[:n]), labels[:n].astype(np.int64)


def median_seconds(fn, reps):
    """Median wall-clock seconds of one call of ``fn`` over ``reps`` calls (the benchmarks/ scripts' timer)."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _wall_seconds(fn, calls, sync):
    sync()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return time.perf_counter() - t0


def _event_seconds(cuda, fn, calls):
    """GPU seconds of ``calls`` calls of ``fn``, between two CUDA events (``cupy.cuda`` or ``torch.cuda``)."""
    if hasattr(cuda, "get_elapsed_time"):  # CuPy
        start, end = cuda.Event(), cuda.Event()
        elapsed = lambda: cuda.get_elapsed_time(start, end)  # noqa: E731
    else:  # PyTorch
        start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
        elapsed = lambda: start.elapsed_time(end)  # noqa: E731
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    end.synchronize()
    return elapsed() / 1e3


class _Runner:
    """What the measuring loop asks of a runner in this process, from its ``seconds``, ``train_step``
    and ``infer`` (:class:`_TorchProcess` answers the same from a process of its own)."""

    def train_seconds(self, batch, calls):
        """Seconds that ``calls`` training steps at ``batch`` take together."""
        return self.seconds(lambda: self.train_step(batch), calls)

    def infer_seconds(self, calls):
        """Seconds that ``calls`` inference batches take together."""
        return self.seconds(self.infer, calls)

    def warm_up(self, train_batches):
        for b in train_batches:
            self.train_step(b)
        self.infer()

    def close(self):
        pass


class _Minicnn(_Runner):
    """One minicnn backend under test; batches (of every training batch size) already on its device."""

    def __init__(self, name, x, y, train_batches=(TRAIN_BATCH,), fuse=True):
        self.name = name
        self.backend = minicnn.set_backend(name.removesuffix("-graph"))
        self.batches = {b: (self.backend.asarray(x[:b]), self.backend.asarray(y[:b])) for b in train_batches}
        self.x64, self.y64 = self.batches[TRAIN_BATCH]
        self.x_inf = self.backend.asarray(x[:INFER_BATCH])
        t0 = time.perf_counter()
        # The training steps and inference run the network as the command line does (fused where the
        # backend has fused kernels); layer_times runs the layers of the plain one, which shares its
        # parameters.
        self.plain = models.MnistCNN(seed=0)
        self.model, self.fused = fuse_for(self.plain, self.backend, fuse)
        self.opt = optim.Adam(self.model.parameters(), lr=1e-3)
        self.loss = nn.NLLLoss()
        self.train_step()
        self.sync()
        self.first_step_s = time.perf_counter() - t0

    @property
    def device(self):
        return self.backend.device

    def sync(self):
        if self.backend.device == "cuda":
            self.backend.xp.cuda.get_current_stream().synchronize()

    def seconds(self, fn, calls):
        """How long ``calls`` calls of ``fn`` take: on the GPU's clock (CUDA events) there, else the host's."""
        if self.device == "cuda":
            return _event_seconds(self.backend.xp.cuda, fn, calls)
        return _wall_seconds(fn, calls, self.sync)

    def gpu_memory_mib(self):
        """MiB CuPy's memory pool holds for this process's arrays (None off the GPU)."""
        if self.device != "cuda":
            return None
        return self.backend.xp.get_default_memory_pool().total_bytes() / 2 ** 20

    def activate(self):
        minicnn.set_backend(self.backend.name)

    def train_step(self, batch=TRAIN_BATCH, image_grad=False):
        """One Adam step; ``image_grad=True`` also computes dL/dx of the images (the full backward)."""
        x, y = self.batches[batch]
        self.model.train()
        self.loss(self.model(x), y)
        backward = self.model.backward if image_grad else self.model.parameter_backward
        backward(self.loss.backward())
        self.opt.step()
        self.opt.zero_grad()


    def infer(self):
        self.model.eval()
        # Under no_grad, as PyTorch's runner does with torch.no_grad(), and in blocks, as evaluate runs.
        return forward_in_blocks(self.model, self.x_inf)

    def layer_times(self, reps):
        """Median forward and backward seconds of each layer at batch 64."""
        self.model.train()
        rows = []
        h = self.x64
        for index, (name, layer) in enumerate(self.plain.named_children()):
            # The first layer's input (the images) needs no gradient, as in a training step.
            backward = layer.parameter_backward if index == 0 else layer.backward
            fwd, bwd = [], []
            for _ in range(reps):
                self.sync()
                t0 = time.perf_counter()
                out = layer(h)
                self.sync()
                t1 = time.perf_counter()
                backward(out)  # any gradient of the right shape times the same
                self.sync()
                fwd.append(t1 - t0)
                bwd.append(time.perf_counter() - t1)
            rows.append((name, type(layer).__name__, statistics.median(fwd), statistics.median(bwd)))
            h = out
        return rows


class _MinicnnGraph(_Minicnn):
    """The CuPy backend training through a CUDA graph per batch size (:mod:`minicnn.cuda_graph`)."""

    def __init__(self, x, y, train_batches=(TRAIN_BATCH,)):
        self.steps = {}
        super().__init__("cupy-graph", x, y, train_batches)
        for b in train_batches:  # warm-up steps and the capture, before anything is timed
            while self.steps.get(b) is None or self.steps[b].graph is None:
                self.train_step(b)

    def train_step(self, batch=TRAIN_BATCH):
        from minicnn.cuda_graph import GraphedTrainStep

        if batch not in self.steps:
            self.steps[batch] = GraphedTrainStep(self.model, self.loss, self.opt)
        self.model.train()
        self.steps[batch](*self.batches[batch])
        self.opt.zero_grad()

    def gpu_memory_mib(self):  # the graphs' own pools besides the default one
        return super().gpu_memory_mib() + sum(s.pool.total_bytes() for s in self.steps.values()) / 2 ** 20

    def layer_times(self, reps):
        return []  # the layers run as in the cupy row; the graph only changes how a whole step is launched


def torch_network(torch, model: nn.Sequential):
    """The ``torch.nn.Sequential`` with the layers of the minicnn ``model``, by name, and its weights.

    Each layer becomes the PyTorch layer of the same name and arguments (the
    names and signatures are PyTorch's), so the reference runs exactly the
    network that minicnn runs; the weights are copied by state-dict key.
    """
    from collections import OrderedDict

    tnn = torch.nn
    layers = OrderedDict()
    for name, m in model.named_children():
        if isinstance(m, nn.Conv2d):
            layers[name] = tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                                      bias=m.bias is not None)
        elif isinstance(m, nn.Linear):
            layers[name] = tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        elif isinstance(m, nn.MaxPool2d):
            layers[name] = tnn.MaxPool2d(m.kernel_size, m.stride, m.padding)
        elif isinstance(m, nn.BatchNorm2d):
            layers[name] = tnn.BatchNorm2d(m.num_features, eps=m.eps, momentum=m.momentum)
        elif isinstance(m, nn.Dropout):
            layers[name] = tnn.Dropout(m.p)
        elif isinstance(m, (nn.LogSoftmax, nn.Softmax)):
            layers[name] = getattr(tnn, type(m).__name__)(dim=m.dim)
        elif isinstance(m, (nn.ReLU, nn.Flatten)):
            layers[name] = getattr(tnn, type(m).__name__)()
        else:
            raise TypeError(f"torch_network: no PyTorch layer for {type(m).__name__} ({name!r})")
    network = tnn.Sequential(layers)
    network.load_state_dict({k: torch.from_numpy(np.array(to_numpy(v))) for k, v in model.state_dict().items()})
    return network


class _Torch(_Runner):
    """The same network in PyTorch, as a reference: eager, ``cudnn.benchmark`` on CUDA, data on the device."""

    def __init__(self, x, y, device="cpu", train_batches=(TRAIN_BATCH,)):
        import torch

        self.torch, self.device = torch, device
        self.name = f"pytorch-{device}"
        if device == "cuda":
            torch.backends.cudnn.benchmark = True  # cuDNN picks its fastest algorithms for these shapes
            torch.cuda.reset_peak_memory_stats()
        self.model = torch_network(torch, models.MnistCNN(seed=0)).to(device=device, dtype=torch.float32)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.batches = {b: (torch.from_numpy(x[:b]).to(device), torch.from_numpy(y[:b]).to(device))
                        for b in train_batches}
        self.x_inf = torch.from_numpy(x[:INFER_BATCH]).to(device)
        t0 = time.perf_counter()
        self.train_step()
        self.sync()
        self.first_step_s = time.perf_counter() - t0

    def activate(self):
        pass

    def sync(self):
        if self.device != "cpu":
            self.torch.cuda.synchronize()

    def seconds(self, fn, calls):
        if self.device == "cuda":
            return _event_seconds(self.torch.cuda, fn, calls)
        return _wall_seconds(fn, calls, self.sync)

    def gpu_memory_mib(self):
        """Peak MiB PyTorch allocated on the GPU (None on the CPU)."""
        return self.torch.cuda.max_memory_allocated() / 2 ** 20 if self.device == "cuda" else None

    def train_step(self, batch=TRAIN_BATCH):
        x, y = self.batches[batch]
        self.model.train()
        loss = self.torch.nn.functional.nll_loss(self.model(x), y)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad()

    def infer(self):
        self.model.eval()
        with self.torch.no_grad():
            return self.model(self.x_inf)

    def layer_times(self, reps):
        return []


# The PyTorch reference runs in a process of its own.  minicnn's Numba backend runs its loops on GNU
# OpenMP with sleeping threads (OMP_WAIT_POLICY=PASSIVE, read once as the runtime loads), and
# PyTorch's CPU build links the same runtime (libgomp.so.1): in one process PyTorch would share it,
# sleeping threads and all, and its training steps ran about 25% slower that way on two cores.  In
# a process of its own, started with ``import torch`` before anything else, PyTorch runs with its
# OpenMP as it sets it up itself.  The child answers one JSON line per JSON line of command.
_TORCH_CHILD = "import torch; from minicnn.bench import _serve_torch; _serve_torch()"


def _serve_torch(commands=None, replies=None):
    """The child's loop: build a :class:`_Torch` (``start``), then time what the parent asks for."""
    commands, replies = commands or sys.stdin, replies or sys.stdout
    runner = None
    for line in commands:
        command = json.loads(line)
        op = command["op"]
        try:
            if op == "start":
                x, y = _mnist_batch(command["images"])
                runner = _Torch(x, y, command["device"], tuple(command["train_batches"]))
                reply = {"name": runner.name, "first_step_s": runner.first_step_s,
                         "torch_version": sys.modules["torch"].__version__}
            elif op == "cuda_problem":
                import torch

                reply = {"value": torch_cuda_problem(torch)}
            elif op == "warm_up":
                runner.warm_up(command["train_batches"])
                reply = {}
            elif op in ("train_seconds", "train_median"):
                step = lambda: runner.train_step(command["batch"])  # noqa: E731
                reply = {"value": runner.train_seconds(command["batch"], command["calls"]) if op == "train_seconds"
                         else median_seconds(step, command["calls"])}
            elif op in ("infer_seconds", "infer_median"):
                reply = {"value": runner.infer_seconds(command["calls"]) if op == "infer_seconds"
                         else median_seconds(runner.infer, command["calls"])}
            elif op == "gpu_memory_mib":
                reply = {"value": runner.gpu_memory_mib()}
            else:
                reply = {"error": f"unknown command {op!r}"}
        except Exception as exc:  # reported to the parent, which raises it there
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


class _TorchProcess:
    """The PyTorch reference (:class:`_Torch`) in a process of its own (see ``_TORCH_CHILD`` above), with
    the runners' interface: the timings are taken in the child, on its clock or its GPU's events."""

    def __init__(self, images, device="cpu", train_batches=(TRAIN_BATCH,)):
        # The child loads no Numba (its minicnn backend is NumPy's) and nothing of minicnn's before torch.
        env = {**os.environ, "MINICNN_BACKEND": "numpy"}
        self._process = subprocess.Popen([sys.executable, "-c", _TORCH_CHILD], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True, env=env)
        self.device = device
        if device is not None:
            try:
                reply = self._ask("start", images=images, device=device, train_batches=list(train_batches))
            except BaseException:
                self.close()
                raise
            self.name, self.first_step_s = reply["name"], reply["first_step_s"]
            self.torch_version = reply["torch_version"]

    @classmethod
    def cuda_problem(cls) -> str | None:
        """:func:`torch_cuda_problem`, asked of PyTorch in a process of its own."""
        child = cls(0, device=None)
        try:
            return child._ask("cuda_problem")["value"]
        finally:
            child.close()

    def _ask(self, op, **arguments):
        if self._process.poll() is None:
            self._process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
            self._process.stdin.flush()
            line = self._process.stdout.readline()
        else:
            line = ""
        if not line:
            raise RuntimeError(f"the PyTorch reference process ended (exit code {self._process.wait()}) "
                               f"before answering {op!r}; its error is printed above")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"the PyTorch reference process, asked {op!r}: {reply['error']}")
        return reply

    def activate(self):
        pass

    def warm_up(self, train_batches):
        self._ask("warm_up", train_batches=list(train_batches))

    def train_seconds(self, batch, calls):
        return self._ask("train_seconds", batch=batch, calls=calls)["value"]

    def infer_seconds(self, calls):
        return self._ask("infer_seconds", calls=calls)["value"]

    def train_median(self, calls, batch=TRAIN_BATCH):
        """Median seconds of one training step over ``calls`` steps (the levers benchmark's timer)."""
        return self._ask("train_median", batch=batch, calls=calls)["value"]

    def infer_median(self, calls):
        return self._ask("infer_median", calls=calls)["value"]

    def gpu_memory_mib(self):
        return self._ask("gpu_memory_mib")["value"]

    def layer_times(self, reps):
        return []

    def close(self):
        """End the child: its standard input closes, its loop ends."""
        if self._process.poll() is None:
            self._process.stdin.close()
            self._process.wait()
        self._process.stdout.close()


def matmul_flops(model, x) -> int:
    """Floating-point operations of the matrix products in one forward pass of ``model`` on ``x``.

    A multiply-add counts as two operations.  Conv2d, done as im2col + GEMM, multiplies
    (OC, C*KH*KW) by (C*KH*KW, N*OH*OW): 2*N*OH*OW*OC*C*KH*KW.  Linear multiplies (N, in) by
    (in, out): 2*N*in*out.  The other layers do no products and are not counted.  The
    backward pass does two products of the same size per layer (the weight gradient and
    the input gradient), so a training step costs three times the forward count.
    """
    flops, h = 0, x
    for _, layer in model.named_children():
        out = layer(h)
        if isinstance(layer, nn.Conv2d):
            N, OC, OH, OW = out.shape
            KH, KW = layer.kernel_size
            flops += 2 * N * OH * OW * OC * layer.in_channels * KH * KW
        elif isinstance(layer, nn.Linear):
            flops += 2 * out.shape[0] * layer.in_features * layer.out_features
        h = out
    return flops


def matmul_rate(xp=np, n=1024, reps=5, sync=lambda: None) -> float:
    """This device's float32 matrix-product speed in FLOP/s: the median over ``reps`` products of two n x n matrices."""
    rng = np.random.default_rng(0)
    a, b = (xp.asarray(rng.standard_normal((n, n), dtype=np.float32)) for _ in range(2))
    return 2 * n ** 3 / _product_seconds(a, b, reps, sync)


def _product_seconds(a, b, reps, sync) -> float:
    """Median seconds of ``a @ b`` over ``reps`` products, after one warm-up (BLAS threads started,
    GPU kernels loaded)."""
    a @ b
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_shapes(model, x, training=True) -> list[tuple[int, int, int]]:
    """The (M, K, N) of every matrix product (M, K) @ (K, N) that ``model`` does on the batch ``x``.

    Conv2d forward: (OC, C*KH*KW) @ (C*KH*KW, N*OH*OW); Linear forward: (N, in) @ (in, out).
    With ``training``, each layer's two backward products follow: the weight gradient
    (OC, N*P) @ (N*P, K) and the input gradient (K, OC) @ (OC, N*P) for Conv2d, (out, N) @ (N, in)
    and (N, out) @ (out, in) for Linear.  (The first layer's input gradient is counted too, as in
    :func:`matmul_flops`.)
    """
    shapes, h = [], x
    for _, layer in model.named_children():
        out = layer(h)
        if isinstance(layer, nn.Conv2d):
            N, OC, OH, OW = out.shape
            K, NP = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1], N * OH * OW
            shapes += [(OC, K, NP)] + ([(OC, NP, K), (K, OC, NP)] if training else [])
        elif isinstance(layer, nn.Linear):
            N, fan_in, fan_out = out.shape[0], layer.in_features, layer.out_features
            shapes += [(N, fan_in, fan_out)] + ([(fan_out, N, fan_in), (N, fan_out, fan_in)] if training else [])
        h = out
    return shapes


def products_time(shapes, xp=np, reps=5, sync=lambda: None) -> float:
    """Seconds that the float32 products of ``shapes`` take on this device, one after the other:
    the sum over the shapes of the median of ``reps`` timings of each."""
    rng = np.random.default_rng(0)
    total = 0.0
    for M, K, N in shapes:
        a = xp.asarray(rng.standard_normal((M, K), dtype=np.float32))
        b = xp.asarray(rng.standard_normal((K, N), dtype=np.float32))
        total += _product_seconds(a, b, reps, sync)
    return total


def _ceiling(runner, x, settle, n=1024, reps=5) -> dict:
    """The best training and inference rates the matrix products allow on ``runner``'s device."""
    xp = runner.backend.xp
    per_image = matmul_flops(runner.model.eval(), xp.asarray(x[:1]))  # the count grows linearly with the batch
    train_flops, infer_flops = 3 * TRAIN_BATCH * per_image, INFER_BATCH * per_image
    time.sleep(settle)
    rate = matmul_rate(xp, n=n, reps=reps, sync=runner.sync)
    # The same products on the shapes the network really multiplies (thin and tall ones run slower).
    model = runner.model.eval()
    train_s = products_time(matmul_shapes(model, xp.asarray(x[:TRAIN_BATCH])), xp, reps, runner.sync)
    infer_s = products_time(matmul_shapes(model, xp.asarray(x[:INFER_BATCH]), training=False), xp, reps,
                            runner.sync)
    return {"device": runner.device, "matmul_size": n, "matmul_reps": reps, "matmul_flops_per_s": rate,
            "shapes_train_s": train_s, "shapes_infer_s": infer_s,
            "shapes_train_images_per_s": TRAIN_BATCH / train_s, "shapes_infer_images_per_s": INFER_BATCH / infer_s,
            "train_flops_per_step": train_flops, "infer_flops_per_batch": infer_flops,
            "train_images_per_s": TRAIN_BATCH * rate / train_flops,
            "infer_images_per_s": INFER_BATCH * rate / infer_flops}


def cuda_problem_of_torch() -> str | None:
    """:func:`torch_cuda_problem` as the benchmark's PyTorch reference would meet it: asked in a process
    of its own (see ``_TORCH_CHILD``), so that this one does not load PyTorch's OpenMP runtime."""
    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed"
    return _TorchProcess.cuda_problem()


def torch_cuda_problem(torch=None) -> str | None:
    """Why PyTorch cannot run on CUDA here, in a few words; None when it can."""
    if torch is None:
        try:
            import torch
        except ImportError:
            return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return (f"no CUDA: PyTorch {torch.__version__} sees no CUDA device "
                f"({'a CPU-only build' if torch.version.cuda is None else f'built for CUDA {torch.version.cuda}'})")
    return None


def run(backends=None, torch_reference=True, repeats=5, train_steps=20, infer_calls=2, layer_reps=5,
        settle=0.5, log=print, torch_devices=None, cuda_graph=False, train_batches=(TRAIN_BATCH,),
        fuse=True) -> dict:
    """Measure every requested backend (default: all that load) and return a JSON-able report.

    ``torch_devices``: where the PyTorch reference runs, ``"cpu"`` and/or
    ``"cuda"`` (default: the CPU, and CUDA too when ``cupy`` is measured and
    PyTorch sees a GPU; a CUDA that is asked for and absent is logged as
    "no CUDA" and skipped).  ``cuda_graph``: add ``cupy-graph``.
    ``train_batches``: the training batch sizes, 64 first.  ``fuse``: run each backend's network
    fused where it has fused kernels (as the command line does), each fusion logged in one line.
    """
    train_batches = tuple(dict.fromkeys((TRAIN_BATCH, *train_batches)))
    x, y = _mnist_batch(max(INFER_BATCH, *train_batches))
    names = list(backends) if backends else available_backends()
    previous = minicnn.get_backend().name
    runners = []
    for name in names:
        runners.append(_Minicnn(name, x, y, train_batches, fuse))
        if runners[-1].fused:
            log(f"{name}: {runners[-1].fused}")
        log(f"{name}: first training step {runners[-1].first_step_s:.2f}s")
    if cuda_graph:
        runners.append(_MinicnnGraph(x, y, train_batches))
        log(f"cupy-graph: first training step {runners[-1].first_step_s:.2f}s")
    devices = []
    if torch_reference:
        if importlib.util.find_spec("torch") is None:
            log("PyTorch is not installed: no reference figures")
        else:
            wants_cuda = torch_devices is None and "cupy" in names
            devices = torch_devices or ["cpu"] + (["cuda"] if wants_cuda else [])
    try:
        problem = cuda_problem_of_torch() if "cuda" in devices else None
        for device in devices:
            if device == "cuda" and problem:
                if torch_devices:  # asked for: say why it is missing
                    log(f"pytorch-cuda: skipped, {problem}")
                continue
            runners.append(_TorchProcess(len(x), device, train_batches))
        return _measure(runners, x, previous, repeats, train_steps, infer_calls, layer_reps, settle, train_batches)
    finally:
        for r in runners:
            r.close()


def _measure(runners, x, previous, repeats, train_steps, infer_calls, layer_reps, settle, train_batches):
    train = {r.name: {b: [] for b in train_batches} for r in runners}
    infer = {r.name: [] for r in runners}
    for r in runners:  # warm-up round, not counted
        r.activate()
        r.warm_up(train_batches)
    for _ in range(repeats):
        for r in runners:
            r.activate()
            for b in train_batches:
                time.sleep(settle)
                train[r.name][b].append(b * train_steps / r.train_seconds(b, train_steps))
            time.sleep(settle)
            infer[r.name].append(INFER_BATCH * infer_calls / r.infer_seconds(infer_calls))
    layers = {}
    for r in runners:
        r.activate()
        time.sleep(settle)
        layers[r.name] = [dict(layer=n, type=t, forward_ms=f * 1e3, backward_ms=b * 1e3)
                          for n, t, f, b in r.layer_times(layer_reps)]
    ceilings = {}
    for r in runners:
        if isinstance(r, _Minicnn) and r.device not in ceilings and r.device in ("cpu", "cuda"):
            r.activate()
            ceilings[r.device] = _ceiling(r, x, settle)
    minicnn.set_backend(previous)
    results = {
        r.name: {
            "device": r.device,
            "first_step_s": r.first_step_s,
            "train_images_per_s": statistics.median(train[r.name][TRAIN_BATCH]),
            "infer_images_per_s": statistics.median(infer[r.name]),
            "train_runs": train[r.name][TRAIN_BATCH],
            "infer_runs": infer[r.name],
            "train_images_per_s_by_batch": {str(b): statistics.median(v) for b, v in train[r.name].items()},
            "gpu_memory_mib": r.gpu_memory_mib(),
            "layers": layers[r.name],
        } for r in runners
    }
    versions = library_versions()
    versions.update({"torch": r.torch_version for r in runners if isinstance(r, _TorchProcess)})
    return {"machine": machine_description(), "versions": versions, "repeats": repeats,
            "settle_s": settle, "train_batch": TRAIN_BATCH, "train_batches": list(train_batches),
            "infer_batch": INFER_BATCH, "date": time.strftime("%Y-%m-%d"), "results": results,
            "ceilings": list(ceilings.values())}


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def library_versions() -> dict:
    """Versions of the libraries that set the figures (those that are imported in this process)."""
    versions = {"python": platform.python_version()}
    for name in ("numpy", "numba", "cupy", "torch"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "unknown")
    return versions
