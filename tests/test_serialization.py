"""Weights and checkpoints: round trips, clear errors, atomic writes."""
import os

import numpy as np
import pytest

import minicnn
from minicnn import models, nn, optim
from minicnn.serialization import (CheckpointError, load, load_checkpoint, save, save_checkpoint, write_json_atomic,
                                   write_text_atomic)


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
