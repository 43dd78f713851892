"""Weights and checkpoints: round trips, clear errors, atomic writes."""
import io
import os
import re

import numpy as np
import pytest

import minicnn
from minicnn import models, nn, optim
from minicnn.serialization import (CheckpointError, load, load_checkpoint, save, save_checkpoint, write_json_atomic,
                                   write_text_atomic)
from strategies import write_zip


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(np.array_equal(sa[k], sb[k]) for k in sa)


def test_weights_round_trip_keeps_names_and_values(tmp_path):
    model = models.MnistBNCNN(seed=1)
    path = save(model, tmp_path / "w.npz")
    with np.load(path, allow_pickle=False) as data:
        assert list(data.files) == list(model.state_dict())
        assert data["conv1.weight"].shape == (32, 1, 3, 3)
        assert data["bn1.num_batches_tracked"].dtype == np.int64
    other = models.MnistBNCNN(seed=2)
    assert not _same_state(model, other)
    load(other, path)
    assert _same_state(model, other)


def test_load_casts_to_the_models_dtype(tmp_path):
    path = save(models.MnistCNN(seed=0).to(np.float64), tmp_path / "w64.npz")
    model = load(models.MnistCNN(seed=1), path)
    assert all(p.dtype == np.float32 for p in model.parameters())


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such weights file: .*nope.npz"):
        load(models.MnistCNN(seed=0), tmp_path / "nope.npz")


def test_corrupt_file_is_named(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="bad.npz is not a .npz file: expected a zip archive") as info:
        load(models.MnistCNN(seed=0), bad)
    assert "pickle" not in str(info.value)


def test_truncated_file_is_named(tmp_path):
    path = save(models.MnistCNN(seed=0), tmp_path / "w.npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"w\.npz is not a \.npz file.*truncated"):
        load(models.MnistCNN(seed=0), path)


def test_object_arrays_are_refused_not_unpickled(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, **{"conv1.weight": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(CheckpointError, match=r"obj\.npz is not a readable \.npz file \(.*allow_pickle"):
        load(models.MnistCNN(seed=0), path)


def test_mismatched_weights_name_file_keys_and_shapes(tmp_path):
    path = save(models.MnistBNCNN(seed=0), tmp_path / "bn.npz")
    with pytest.raises(CheckpointError, match=r"bn\.npz.*unexpected keys: bn1\.weight.*Expected keys: conv1\.weight"):
        load(models.MnistCNN(seed=0), path)
    small = nn.Sequential(nn.Linear(3, 2))
    path = save(small, tmp_path / "small.npz")
    with pytest.raises(CheckpointError, match=r"0\.weight: expected shape \(4, 3\), got \(2, 3\)"):
        load(nn.Sequential(nn.Linear(3, 4)), path)


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path, monkeypatch):
    model = models.MnistCNN(seed=0)
    path = save(model, tmp_path / "w.npz")
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save(models.MnistCNN(seed=1), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["w.npz"]


def test_written_files_get_the_usual_permissions_not_mkstemps(tmp_path):
    from minicnn.plots import new_figure, save_figure

    old = os.umask(0o027)
    try:
        files = [save(models.MnistCNN(seed=0), tmp_path / "w.npz"),
                 write_text_atomic(tmp_path / "r.txt", "x\n"),
                 write_json_atomic(tmp_path / "m.json", {"a": 1}),
                 save_figure(new_figure(1, 1), tmp_path / "f.png")]
    finally:
        os.umask(old)
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {
        "w.npz": "0o640", "r.txt": "0o640", "m.json": "0o640", "f.png": "0o640"}
    assert (tmp_path / "m.json").read_text() == '{\n  "a": 1\n}\n'


def test_text_write_replaces_whole_file_or_leaves_it(tmp_path):
    path = write_text_atomic(tmp_path / "sub" / "report.txt", "first\n")
    assert path.read_text() == "first\n"
    write_text_atomic(path, "second, longer\n")
    assert path.read_text() == "second, longer\n"

    class Unencodable(str):
        def encode(self, *args, **kwargs):
            raise UnicodeError("cannot encode")

    with pytest.raises(UnicodeError):
        write_text_atomic(path, Unencodable("third"))
    assert path.read_text() == "second, longer\n"
    assert os.listdir(path.parent) == ["report.txt"]


def test_saving_to_a_directory_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        save(models.MnistCNN(seed=0), tmp_path)


def test_checkpoint_restores_model_optimizer_and_extra(tmp_path):
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(4, 3, generator=rng))
    opt = optim.Adam(model.parameters(), lr=0.01)
    x, y = rng.standard_normal((5, 4)).astype(np.float32), np.array([0, 1, 2, 0, 1])
    loss = nn.CrossEntropyLoss()
    for _ in range(3):
        loss(model(x), y)
        model.backward(loss.backward())
        opt.step()
        opt.zero_grad()
    path = save_checkpoint(tmp_path / "ck.npz", model, opt, epoch=3, history={"train_loss": [1.0, 0.5, 0.25]})
    fresh = nn.Sequential(nn.Linear(4, 3, generator=np.random.default_rng(9)))
    fresh_opt = optim.Adam(fresh.parameters(), lr=0.5)
    extra = load_checkpoint(path, fresh, fresh_opt)
    assert extra == {"epoch": 3, "history": {"train_loss": [1.0, 0.5, 0.25]}}
    assert _same_state(model, fresh)
    assert fresh_opt.param_groups[0]["lr"] == 0.01
    # A checkpoint also loads as plain weights.
    assert _same_state(load(nn.Sequential(nn.Linear(4, 3)), path), model)
    # One more identical step from both gives identical weights: the moments came back too.
    for m, o in ((model, opt), (fresh, fresh_opt)):
        loss(m(x), y)
        m.backward(loss.backward())
        o.step()
    assert _same_state(model, fresh)


def test_weights_file_is_not_a_checkpoint(tmp_path):
    path = save(models.MnistCNN(seed=0), tmp_path / "w.npz")
    with pytest.raises(CheckpointError, match="weights only"):
        load_checkpoint(path, models.MnistCNN(seed=0))


def test_top_level_names():
    assert minicnn.save is save and minicnn.load is load


def _trained(rng, model, opt, steps=2):
    x, y = rng.standard_normal((5, 4)).astype(np.float32), np.array([0, 1, 2, 0, 1])
    loss = nn.CrossEntropyLoss()
    for _ in range(steps):
        loss(model(x), y)
        model.backward(loss.backward())
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("saved_scheduler, other_model, message", [
    (lambda opt: optim.StepLR(opt, step_size=2), False,
     "the scheduler state does not fit: ExponentialLR.load_state_dict: missing keys [], "
     "unexpected keys ['step_size']"),
    (lambda opt: optim.ExponentialLR(opt, gamma=0.9), True,
     "state dict does not fit Sequential: missing keys: 0.weight, 0.bias; unexpected keys: 1.weight, 1.bias. "
     "Expected keys: 0.weight, 0.bias"),
    (lambda opt: None, False, "holds no scheduler state"),
], ids=["scheduler", "model", "no-scheduler"])
def test_failed_checkpoint_load_changes_nothing(tmp_path, saved_scheduler, other_model, message):
    rng = np.random.default_rng(0)
    saved = nn.Sequential(nn.ReLU(), nn.Linear(4, 3, generator=rng)) if other_model else \
        nn.Sequential(nn.Linear(4, 3, generator=rng))  # the same parameter shapes, other names
    saved_opt = optim.Adam(saved.parameters(), lr=0.01)
    _trained(rng, saved, saved_opt, steps=3)
    path = save_checkpoint(tmp_path / "ck.npz", saved, saved_opt, saved_scheduler(saved_opt), epoch=3)

    model = nn.Sequential(nn.Linear(4, 3, generator=np.random.default_rng(9)))
    opt = optim.Adam(model.parameters(), lr=0.5)
    _trained(rng, model, opt, steps=1)
    scheduler = optim.ExponentialLR(opt, gamma=0.5)
    scheduler.step()
    weights = {k: v.copy() for k, v in model.state_dict().items()}
    opt_state, scheduler_state = opt.state_dict(), scheduler.state_dict()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, model, opt, scheduler)
    assert str(info.value) == f"{path}{' ' if message.startswith('holds') else ': '}{message}"
    np.testing.assert_equal(model.state_dict(), weights)
    np.testing.assert_equal(opt.state_dict(), opt_state)
    assert opt.state_dict()["state"][0]["step"] == 1 and opt.param_groups[0]["lr"] == 0.25
    assert scheduler.state_dict() == scheduler_state


@pytest.mark.parametrize("extra, error, message", [
    (dict(foo={1, 2}), TypeError, "extra['foo'] is a set; a checkpoint holds numbers, strings, booleans, None, "
                                  "arrays, and lists, tuples and dicts of these"),
    (dict(history={"val": [0.5, 1j]}), TypeError, "extra['history']['val'][1] is a complex; a checkpoint holds "
                                                  "numbers, strings, booleans, None, arrays, and lists, tuples "
                                                  "and dicts of these"),
    (dict(foo=np.array([{"a": 1}], dtype=object)), TypeError,
     "extra['foo'] is an array of Python objects, which loading without pickle cannot read; expected an array "
     "of numbers, booleans or strings"),
    (dict(foo={"__array__": "x"}), ValueError,
     "extra['foo'] has the key '__array__', which checkpoints reserve to mark arrays"),
], ids=["set", "nested-complex", "object-array", "array-marker"])
def test_extras_a_checkpoint_cannot_hold_are_named_and_nothing_is_written(tmp_path, extra, error, message):
    with pytest.raises(error) as info:
        save_checkpoint(tmp_path / "ck.npz", nn.Sequential(nn.Linear(2, 2)), **extra)
    assert str(info.value) == f"save_checkpoint: {message}"
    assert os.listdir(tmp_path) == []


def test_extra_keys_with_slashes_keep_their_arrays_apart(tmp_path):
    extra = {"a/b": np.array([1.0]), "a": {"b": np.array([2.0]), "c%2Fd": np.array([3.0]), "c/d": np.array([4.0])},
             "train/loss": [0.5, 0.25], "__array__x": "kept"}
    path = save_checkpoint(tmp_path / "ck.npz", nn.Sequential(nn.Linear(2, 2)), **extra)
    np.testing.assert_equal(load_checkpoint(path, nn.Sequential(nn.Linear(2, 2))), extra)


def test_paths_may_start_with_a_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    model = nn.Sequential(nn.Linear(2, 2))
    assert save(model, "~/w.npz") == tmp_path / "home" / "w.npz"
    assert save_checkpoint("~/ck.npz", model, epoch=1) == tmp_path / "home" / "ck.npz"
    assert sorted(os.listdir(tmp_path)) == ["home"]  # no folder named "~"
    load(model, "~/w.npz")
    assert load_checkpoint("~/ck.npz", model) == {"epoch": 1}


def test_directories_and_files_in_the_way_are_named(tmp_path):
    model = nn.Sequential(nn.Linear(2, 2))
    for call in (lambda p: load(model, p), lambda p: load_checkpoint(p, model)):
        with pytest.raises(CheckpointError) as info:
            call(tmp_path)
        assert str(info.value) == (f"{tmp_path} is a directory; expected a file path such as "
                                   f"{tmp_path / 'model.npz'}")
    (tmp_path / "notes.txt").write_text("a file")
    for call in (lambda p: save(model, p), lambda p: save_checkpoint(p, model), lambda p: load(model, p),
                 lambda p: load_checkpoint(p, model)):
        target = tmp_path / "notes.txt" / "runs" / "w.npz"
        with pytest.raises(CheckpointError) as info:
            call(target)
        assert str(info.value) == f"{target}: {tmp_path / 'notes.txt'} is a file, not a directory"
    assert os.listdir(tmp_path) == ["notes.txt"]


# --- crafted files: nothing is read before its declared size is checked -------------------

def _npy_member(shape, dtype="<f4", payload=b""):
    """The bytes of a .npy file whose header declares ``shape`` and ``dtype``, followed by ``payload``."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    return header.getvalue() + payload  # the header starts with the magic string


def test_a_huge_declared_shape_is_refused_before_reading(tmp_path, inflated):
    path = write_zip(tmp_path / "huge.npz", {"0.weight": _npy_member((2**40,)), "0.bias": _npy_member((2,))})
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(CheckpointError) as info:
        load(model, path)
    assert str(info.value) == f"{path}: does not fit Sequential: 0.weight: expected shape (2, 3), got (1099511627776,)"
    assert sum(inflated) < 2_000  # the headers only


def test_a_member_larger_than_its_header_declares_is_not_inflated(tmp_path, inflated):
    # 4 bytes of float32 declared, 50 MB of zeros stored (about 50 kB compressed).
    path = write_zip(tmp_path / "bomb.npz", {"0.weight": _npy_member((1, 1), payload=bytes(50 * 2**20))})
    with pytest.raises(CheckpointError, match=r"bomb\.npz is not a readable \.npz file \(0\.weight declares shape "
                                              r"\(1, 1\) of float32, 4 bytes, but the archive holds 52,428,800 bytes"):
        load(nn.Sequential(nn.Linear(1, 1, bias=False)), path)
    assert sum(inflated) < 2**20


def test_keys_the_model_does_not_have_are_never_read(tmp_path, inflated):
    model = nn.Sequential(nn.Linear(3, 2))
    members = {k: _npy_member(v.shape, payload=np.asarray(v, "<f4").tobytes()) for k, v in model.state_dict().items()}
    members["junk"] = _npy_member((50 * 2**18,), payload=bytes(50 * 2**20))  # a 50 MB deflate bomb
    path = write_zip(tmp_path / "extra.npz", members)
    with pytest.raises(CheckpointError, match=r"unexpected keys: junk"):
        load(model, path)
    load(model, path, strict=False)
    names = minicnn.serialization.stored_names(path)
    assert names == ["0.weight", "0.bias", "junk"]
    assert sum(inflated) < 2**20


def test_weights_stored_as_integers_are_refused(tmp_path):
    model = nn.Sequential(nn.Linear(3, 2))
    path = tmp_path / "int.npz"
    np.savez(path, **{k: np.round(v * 10).astype(np.int32) for k, v in model.state_dict().items()})
    with pytest.raises(CheckpointError) as info:
        load(model, path)
    assert str(info.value) == (f"{path}: does not fit Sequential: 0.weight: expected a floating-point array for a "
                               f"float32 entry, got dtype int32 (weights stored as integers or booleans are not a "
                               f"trained model's); 0.bias: expected a floating-point array for a float32 entry, got "
                               f"dtype int32 (weights stored as integers or booleans are not a trained model's)")
    # An integer buffer (BatchNorm's counter) is stored as integers, as it should be.
    load(models.MnistBNCNN(seed=1), save(models.MnistBNCNN(seed=0), tmp_path / "bn.npz"))


def _with_meta(tmp_path, meta):
    """A checkpoint of a small model and Adam, its ``__meta__`` replaced by ``meta``."""
    model = nn.Sequential(nn.Linear(3, 2))
    path = save_checkpoint(tmp_path / "ck.npz", model, optim.Adam(model.parameters()), epoch=1)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["__meta__"] = meta if isinstance(meta, np.ndarray) else np.array(meta)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("meta, message", [
    ("{", r"__meta__ does not describe a checkpoint: Expecting property name"),
    ("5", r'__meta__ does not describe a checkpoint: expected \{"optimizer": \.\.\., "scheduler": \.\.\., '
          r'"extra": \{\.\.\.\}\}'),
    ('{"extra": {}}', r"__meta__ does not describe a checkpoint: expected"),
    ('{"optimizer": null, "scheduler": null, "extra": []}', r"__meta__ does not describe a checkpoint: expected"),
    ('{"optimizer": 5, "scheduler": null, "extra": {}}', r"the optimizer state does not fit"),
    ('{"optimizer": {"__array__": "state/nope"}, "scheduler": null, "extra": {}}',
     r"__meta__ refers to arrays the file does not hold: state/nope"),
    ('{"optimizer": {"__array__": 5}, "scheduler": null, "extra": {}}',
     r"__meta__ does not describe a checkpoint: an array marker names 5"),
    ('{"optimizer": {"__array__": "model/0.weight"}, "scheduler": null, "extra": {}}',
     r"__meta__ refers to arrays the file does not hold: model/0\.weight"),
    ("[" * 100_000 + "]" * 100_000, r"__meta__ is nested too deeply"),
    (np.array(5), r"__meta__ is a int64 array of shape \(\); expected the JSON text"),
    (np.array(["{}", "{}"]), r"__meta__ is a <U2 array of shape \(2,\); expected the JSON text"),
], ids=["not-json", "number", "no-parts", "extra-list", "optimizer-number", "missing-array", "marker-number",
        "marker-model", "deep", "int-meta", "meta-list"])
def test_a_malformed_meta_is_a_checkpoint_error(tmp_path, meta, message):
    path = _with_meta(tmp_path, meta)
    model = nn.Sequential(nn.Linear(3, 2))
    weights = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: {message}"):
        load_checkpoint(path, model, optim.Adam(model.parameters()))
    np.testing.assert_equal(model.state_dict(), weights)


def test_optimizer_arrays_beyond_what_the_model_needs_are_not_read(tmp_path, inflated, monkeypatch):
    model = nn.Sequential(nn.Linear(3, 2))
    big = np.zeros(2**20, np.float32)  # 4 MiB, against a model of 32 bytes
    path = save_checkpoint(tmp_path / "ck.npz", model, big=big)
    monkeypatch.setattr(minicnn.serialization, "_MAX_EXTRA_BYTES", 2**20)
    inflated.clear()
    with pytest.raises(CheckpointError, match=r"ck\.npz: the optimizer, scheduler and extra arrays declare "
                                              r"4,194,304 bytes, more than a checkpoint of this model holds "
                                              r"\(at most 1,048,704\); not read"):
        load_checkpoint(path, model)
    assert sum(inflated) < 2**20
    monkeypatch.setattr(minicnn.serialization, "_MAX_EXTRA_BYTES", 2**23)
    np.testing.assert_array_equal(load_checkpoint(path, model)["big"], big)
