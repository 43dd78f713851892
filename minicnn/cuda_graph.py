"""A training step on the GPU recorded once as a CUDA graph and replayed: one launch for hundreds.

A training step of MnistCNN at batch 64 is a few hundred small kernel launches
(im2col, the products, ReLU, pooling, their backward passes, the bias sums),
and issuing one from Python costs the CPU several microseconds, about as long
as many of these kernels run: the GPU waits for the CPU.  A CUDA graph records
the launches of one step while they are issued
(``cupy.cuda.Stream.begin_capture`` ... ``end_capture``) and replays all of
them with one call (``Graph.launch``), with the same arguments, so the same
memory addresses.  :class:`GraphedTrainStep` arranges for that:

1. static inputs: every call copies its batch into the same two arrays
   ``x`` and ``y``, which the recorded forward pass reads;
2. a private memory pool: everything the step allocates while it runs under
   the graph's pool stays the graph's, so no other array is ever given an
   address that a replay writes;
3. ``warmup`` ordinary steps first, in that pool, on the static inputs:
   kernels compiled, cuBLAS initialised, the pool holding blocks of the sizes
   the step asks for;
4. then forward, loss and backward are captured, the graph launched for that
   batch, and replayed for every later one.  The optimizer step runs after
   each replay, outside the graph (with CuPy's Adam one fused launch), since
   its scalars (the learning rate, the bias corrections) change every step.

A replay repeats the recorded work exactly, so the step must keep no state of
its own that changes between steps: BatchNorm's running statistics (replaced,
not updated in place) and Dropout's masks (drawn on the host) are refused.
Each call returns ``(loss, output)`` as new device arrays (copies: the next
replay rewrites the recorded ones), read by nobody until the caller does.
The graph works on its own stream, ordered after and before the caller's
stream by events, so the caller's arrays are always ready when it reads them.

Docs: docs/backends.md#cuda-graphs
"""
from __future__ import annotations

from minicnn.backend import device_backend
from minicnn.nn.batchnorm import BatchNorm2d
from minicnn.nn.dropout import Dropout


class GraphedTrainStep:
    """``step(x, y) -> (loss, output)``: forward, loss, backward and ``optimizer.step()`` of one batch.

    The first ``warmup`` calls run the step as usual (in the graph's memory
    pool), the next one records it; every batch must have the shape and dtype
    of the first (a loader with ``drop_last=True``, or :meth:`fits` to check).
    """

    def __init__(self, model, loss_fn, optimizer, warmup: int = 2):
        for name, m in model.named_modules():
            if isinstance(m, (BatchNorm2d, Dropout)):
                raise ValueError(f"GraphedTrainStep: {name or 'the model'} is a {type(m).__name__}, whose "
                                 f"state changes between steps in a way a replayed graph does not repeat; "
                                 f"train this model without a CUDA graph")
        if not isinstance(warmup, int) or warmup < 1:
            raise ValueError(f"GraphedTrainStep: warmup must be an int >= 1 (steps before the capture), "
                             f"got {warmup!r}")
        import cupy

        self.model, self.loss_fn, self.optimizer, self.warmup = model, loss_fn, optimizer, warmup
        self.cupy = cupy
        self.pool = cupy.cuda.MemoryPool()
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.x = self.y = self.graph = None
        self.calls = 0
        self._outputs = None  # (loss, output, gradients) of the recorded step: the arrays a replay rewrites

    def fits(self, x, y) -> bool:
        """True when ``(x, y)`` can go through the graph: the static inputs' shapes and dtypes, on the GPU."""
        if self.x is None:
            return device_backend(x) is not None and device_backend(x).name == "cupy"
        return (x.shape, x.dtype, y.shape, y.dtype) == (self.x.shape, self.x.dtype, self.y.shape, self.y.dtype)

    def _forward_backward(self):
        output = self.model(self.x)
        loss = self.loss_fn(output, self.y)
        self.model.parameter_backward(self.loss_fn.backward())  # the images need no gradient
        return loss, output

    def __call__(self, x, y):
        cupy = self.cupy
        if not self.fits(x, y):
            raise ValueError(f"GraphedTrainStep: a batch of shape {tuple(x.shape)} ({x.dtype}) with targets "
                             f"{tuple(y.shape)} ({y.dtype}) cannot replay a step recorded for "
                             f"{tuple(self.x.shape) if self.x is not None else 'GPU arrays'}")
        params = list(self.model.parameters())
        caller = cupy.cuda.get_current_stream()
        self.stream.wait_event(caller.record())  # the batch and the last optimizer step come first
        with cupy.cuda.using_allocator(self.pool.malloc), self.stream:
            if self.x is None:
                self.x, self.y = cupy.empty_like(x), cupy.empty_like(y)
            self.x[...] = x
            self.y[...] = y
            self.calls += 1
            if self.calls <= self.warmup:
                self.optimizer.zero_grad()
                loss, output = self._forward_backward()
            else:
                if self.graph is None:
                    self.optimizer.zero_grad()  # the recorded backward writes fresh gradient arrays
                    self.stream.begin_capture()
                    loss, output = self._forward_backward()
                    self.graph = self.stream.end_capture()
                    self._outputs = (loss, output, [p.grad for p in params])
                self.graph.launch(stream=self.stream)
                loss, output, grads = self._outputs
                for p, g in zip(params, grads):
                    p.grad = g  # what the replay just wrote, whatever zero_grad did since
        caller.wait_event(self.stream.record())
        # On the caller's stream and its ordinary pool: the optimizer step, and copies of the loss and
        # output, which the next replay overwrites in place.
        self.optimizer.step()
        return loss.copy(), output.copy()
