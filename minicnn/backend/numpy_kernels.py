"""The reference kernels as plain functions, under the names the backends override.

Their home is :mod:`minicnn.nn.functional` (:mod:`minicnn.nn.fused` for the fused
layers', :mod:`minicnn.optim.adam` for Adam's step), where each is marked :func:`minicnn.backend.kernel` and so runs a
backend's override when there is one.  The names here are the references
themselves, never an override: the tests check the Numba and CuPy kernels
against them.
"""
from minicnn.nn import functional as _functional
from minicnn.nn import fused as _fused
from minicnn.nn.unfold import output_size  # noqa: F401  (geometry, for the readers of this module)
from minicnn.optim import adam as _adam

im2col = _functional.im2col.reference
col2im = _functional.col2im.reference
maxpool2d_forward = _functional.maxpool2d_forward.reference
maxpool2d_backward = _functional.maxpool2d_backward.reference
transpose01 = _functional.transpose01.reference
relu_forward = _functional.relu_forward.reference
relu_backward = _functional.relu_backward.reference
adam_update = _adam.adam_update.reference
adam_update_many = _adam.adam_update_many.reference
conv2d = _functional.conv2d.reference
conv2d_backward = _functional.conv2d_backward.reference
conv2d_relu = _fused.conv2d_relu.reference
conv2d_relu_backward = _fused.conv2d_relu_backward.reference
conv2d_relu_maxpool2d = _fused.conv2d_relu_maxpool2d.reference
conv2d_relu_maxpool2d_train = _fused.conv2d_relu_maxpool2d_train.reference
conv2d_relu_maxpool2d_backward = _fused.conv2d_relu_maxpool2d_backward.reference
