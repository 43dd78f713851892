"""The header check of a weights file: every array's declared shape and dtype, before its data.

minicnn/serialization.py promises that an array the model has is read only once its .npy
header declares the model's shape (all of it, not just the first dimension) and, for a
floating entry, a floating dtype.  Each crafted file here differs from the model in one
thing only, and carries its data three ways: absent (the header alone), truncated, and
complete.  All three must give the same error, naming the array and both shapes (or the
dtype), and no member may be inflated past its header: a file whose data were read would
fail differently (a truncated member) or later (in load_state_dict).

A different *floating* dtype (float64, float16, big-endian float32) is not an error: the
values are cast to the model's dtype (test_serialization.test_load_casts_to_the_models_dtype).
Nor is Fortran order: it is a memory layout of the same logical array, which NumPy reads
back as that array; a shape or dtype mismatch in a Fortran-ordered member is refused the same way.
"""
import io
import zipfile

import numpy as np
import pytest

from minicnn import nn, optim
from minicnn.serialization import CheckpointError, load, load_checkpoint, save_checkpoint
from strategies import write_zip

HEADER_ONLY_BYTES = 2_000  # what reading the four members' headers may inflate, and far less than any data


def _model():
    """0.weight (3, 2, 3, 3), 0.bias (3,), 1.weight (32, 64), 1.bias (32,), float32."""
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.Linear(64, 32))


def _npy(shape, dtype="<f4", fortran_order=False, data="complete"):
    """A .npy member declaring ``shape`` and ``dtype``, followed by all, half or none of its data."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": dtype, "fortran_order": fortran_order, "shape": shape})
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    payload = np.random.default_rng(0).integers(1, 255, nbytes, dtype=np.uint8).tobytes()  # not a deflate bomb
    return out.getvalue() + {"complete": payload, "truncated": payload[:nbytes // 2], "absent": b""}[data]


def _weights_file(path, replace, prefix="", keep=None):
    """The model's own weights as an .npz archive, member ``key`` replaced by ``replace[key]``."""
    members = dict(keep or {})
    for key, value in _model().state_dict().items():
        members.setdefault(prefix + key, replace.get(key) or _npy(value.shape))
    return write_zip(path, members)


DATA = ["absent", "truncated", "complete"]

# (key, stored shape): only a dimension after the first differs, or the number of dimensions.
LATER_DIMENSIONS = [
    ("0.weight", (3, 2, 3, 4)),      # the last
    ("0.weight", (3, 2, 4, 3)),      # the third
    ("0.weight", (3, 1, 3, 3)),      # the second
    ("0.weight", (3, 18, 1, 1)),     # as many values, other dimensions
    ("0.weight", (3, 2, 9)),         # one dimension fewer, as many values
    ("0.weight", (3, 2, 3, 3, 1)),   # one more, as many values
    ("1.weight", (32, 65)),
    ("1.weight", (32, 63)),
    ("1.weight", (32, 64, 1)),
    ("0.bias", (3, 1)),
]


def _ids(cases):
    return [f"{key}-{'x'.join(map(str, shape))}" for key, shape in cases]


@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("fortran_order", [False, True], ids=["C", "fortran"])
@pytest.mark.parametrize("key, shape", LATER_DIMENSIONS, ids=_ids(LATER_DIMENSIONS))
def test_a_later_dimension_that_differs_is_refused_before_the_data_is_read(tmp_path, inflated, key, shape,
                                                                           fortran_order, data):
    model = _model()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    want = tuple(before[key].shape)
    path = _weights_file(tmp_path / "w.npz", {key: _npy(shape, fortran_order=fortran_order, data=data)})
    inflated.clear()
    with pytest.raises(CheckpointError) as info:
        load(model, path)
    assert str(info.value) == f"{path}: does not fit Sequential: {key}: expected shape {want}, got {shape}"
    assert sum(inflated) < HEADER_ONLY_BYTES, "only the headers are read"
    np.testing.assert_equal(model.state_dict(), before)


@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("dtype", ["<i4", "<i8", "|u1", "|b1", "<c8"])
def test_a_dtype_that_is_not_floating_is_refused_before_the_data_is_read(tmp_path, inflated, dtype, data):
    model = _model()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    path = _weights_file(tmp_path / "w.npz", {"1.weight": _npy((32, 64), dtype=dtype, data=data)})
    inflated.clear()
    with pytest.raises(CheckpointError) as info:
        load(model, path)
    assert str(info.value) == (f"{path}: does not fit Sequential: 1.weight: expected a floating-point array for "
                               f"a float32 entry, got dtype {np.dtype(dtype)} (weights stored as integers or "
                               f"booleans are not a trained model's)")
    assert sum(inflated) < HEADER_ONLY_BYTES, "only the headers are read"
    np.testing.assert_equal(model.state_dict(), before)


@pytest.mark.parametrize("data", ["absent", "truncated"])
def test_every_array_that_does_not_fit_is_named_in_one_error(tmp_path, inflated, data):
    path = _weights_file(tmp_path / "w.npz", {"0.weight": _npy((3, 2, 3, 1), data=data),
                                              "0.bias": _npy((3,), dtype="<i2", data=data),
                                              "1.weight": _npy((32, 64, 2), fortran_order=True, data=data)})
    inflated.clear()
    with pytest.raises(CheckpointError) as info:
        load(_model(), path)
    assert str(info.value) == (
        f"{path}: does not fit Sequential: 0.weight: expected shape (3, 2, 3, 3), got (3, 2, 3, 1); "
        f"0.bias: expected a floating-point array for a float32 entry, got dtype int16 (weights stored as integers "
        f"or booleans are not a trained model's); 1.weight: expected shape (32, 64), got (32, 64, 2)")
    assert sum(inflated) < HEADER_ONLY_BYTES


@pytest.mark.parametrize("data", DATA)
def test_a_checkpoints_model_arrays_get_the_same_check(tmp_path, inflated, data):
    model = _model()
    path = save_checkpoint(tmp_path / "ck.npz", model, optim.Adam(model.parameters()), epoch=3)
    with zipfile.ZipFile(path) as archive:
        kept = {info.filename[:-4]: archive.read(info) for info in archive.infolist()}
    kept["model/1.weight"] = _npy((32, 60), data=data)
    _weights_file(path, {}, prefix="model/", keep=kept)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    opt = optim.Adam(model.parameters())
    inflated.clear()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, model, opt)
    assert str(info.value) == f"{path}: does not fit Sequential: 1.weight: expected shape (32, 64), got (32, 60)"
    # __meta__ (a few hundred bytes; a fresh Adam keeps no arrays) and the headers, not model/1.weight's data
    # (7,680 bytes when complete).
    assert sum(inflated) < 4_000
    np.testing.assert_equal(model.state_dict(), before)


def test_fortran_order_is_read_as_the_same_array(tmp_path):
    """Not refused: the header's fortran_order says how the values are laid out, and NumPy reads them back
    as the array that was written.  A Fortran-ordered file of the model's own weights loads those weights,
    into C-ordered arrays as the model's own (the fast kernels take C-contiguous arrays)."""
    source = _model()
    values = {k: np.random.default_rng(i).standard_normal(v.shape).astype(np.float32)
              for i, (k, v) in enumerate(source.state_dict().items())}
    members = {}
    for key, value in values.items():
        out = io.BytesIO()
        np.lib.format.write_array(out, np.asfortranarray(value))
        members[key] = out.getvalue()
    assert b"'fortran_order': True" in members["1.weight"]
    path = tmp_path / "f.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)
    model = load(_model(), path)
    for key, value in model.state_dict().items():
        assert value.dtype == np.float32 and value.flags.c_contiguous, key
        np.testing.assert_array_equal(value, values[key], err_msg=key)


# --- the sizes a header declares, against the archive and against the budget ---------------------------

@pytest.mark.parametrize("held", [0, 4_096, 8_188], ids=["nothing", "half", "all-but-4-bytes"])
def test_a_member_holding_less_than_its_header_declares_is_named_with_both_sizes(tmp_path, held):
    """The index's size of the member is checked against the header's shape before reading: a member cut
    short is refused with what was declared and what is there, not with a parser's error from mid-array."""
    header = _npy((32, 64), data="absent")
    payload = np.arange(32 * 64, dtype="<f4").tobytes()[:held]
    path = _weights_file(tmp_path / "short.npz", {"1.weight": header + payload})
    with pytest.raises(CheckpointError) as info:
        load(_model(), path)
    assert str(info.value) == (f"{path} is not a readable .npz file (1.weight declares shape (32, 64) of float32, "
                               f"8,192 bytes, but the archive holds {held:,} bytes of it)")


def test_the_checkpoint_budget_is_for_all_its_arrays_together(tmp_path, inflated, monkeypatch):
    """Three extra arrays of 512 KiB each, each within a budget of 1 MiB and 128 bytes, 1.5 MiB together:
    refused, before any of them is read (the budget bounds what loading may allocate in all)."""
    import minicnn.serialization

    model = nn.Sequential(nn.Linear(3, 2))  # 32 bytes: a budget of 4 * 32 + _MAX_EXTRA_BYTES
    part = np.ones(2**17, np.float32)       # 512 KiB
    path = save_checkpoint(tmp_path / "ck.npz", model, a=part, b=part, c=part)
    monkeypatch.setattr(minicnn.serialization, "_MAX_EXTRA_BYTES", 2**20)
    inflated.clear()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, model)
    assert str(info.value) == (f"{path}: the optimizer, scheduler and extra arrays declare 1,572,864 bytes, more "
                               f"than a checkpoint of this model holds (at most 1,048,704); not read")
    assert sum(inflated) < 2**17
    monkeypatch.setattr(minicnn.serialization, "_MAX_EXTRA_BYTES", 2**21)  # room for all three: read
    extra = load_checkpoint(path, model)
    assert sorted(extra) == ["a", "b", "c"] and all(np.array_equal(extra[k], part) for k in "abc")
