"""minicnn train --resume checks a checkpoint's settings as the command line's, refuses every explicit option
that contradicts the run (one equal to the option's default too), and refuses other data than the run's."""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import shutil

import numpy as np
import pytest

from minicnn import cli
from strategies import tiny_mnist


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two tiny datasets, ``a`` and ``b``."""
    root = tmp_path_factory.mktemp("data")
    return tiny_mnist(root / "a", 0), tiny_mnist(root / "b", 1)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A complete 1-epoch run on dataset ``a``, seed 3."""
    out = tmp_path_factory.mktemp("run") / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["train", "--epochs", "1", "--seed", "3", "--data-dir", str(data[0]), "--quiet",
                         "--no-augment", "--out", str(out)]) == 0
    return out


def _copy(trained, tmp_path, **changes):
    """A copy of the run whose checkpoint's settings have ``changes`` (a value of ... removes the setting)."""
    run = tmp_path / "copy"
    shutil.copytree(trained, run)
    path = run / "checkpoint.npz"
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["__meta__"]))
    for key, value in changes.items():
        if value is ...:
            del meta["extra"]["setup"][key]
        else:
            meta["extra"]["setup"][key] = value
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    return run


def _resume(run, *argv, capsys):
    """``minicnn train --resume run argv``: (exit status, the last line of standard error)."""
    capsys.readouterr()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            status = cli.main(["train", "--quiet", "--resume", str(run), *argv])
    except SystemExit as exc:
        status = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    return status, err[-1] if err else ""


def test_the_checkpoint_records_its_data(trained, data):
    from minicnn.serialization import read_checkpoint_extra

    setup = read_checkpoint_extra(trained / "checkpoint.npz")["setup"]
    assert setup["data"]["folder"] == str(data[0].resolve())
    assert sorted(setup["data"]["sha256"]) == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                                               "train-images-idx3-ubyte", "train-labels-idx1-ubyte"]


@pytest.mark.parametrize("key, value, expected", [
    ("model", "Bogus", '"Bogus"; expected one of MnistBNCNN, MnistCNN, MnistDeepCNN, as --model takes'),
    ("model", None, "null; expected one of MnistBNCNN, MnistCNN, MnistDeepCNN, as --model takes"),
    ("optimizer", "sgd", '"sgd"; expected one of adam, rmsprop, as --optimizer takes'),
    ("seed", 1.5, "1.5; expected a non-negative integer, as --seed takes"),
    ("epochs", "x", '"x"; expected a non-negative integer, as --epochs takes'),
    ("scheduler", "bogus", '"bogus"; expected one of cosine, step, plateau, none, as --scheduler takes'),
    ("lr", -1, "-1; expected a finite number > 0, as --lr takes"),
    ("zoom_each_axis", 1, "1; expected true or false, as --zoom-each-axis takes"),
    ("limit", 0, "0; expected a positive integer or null (no --limit), as --limit takes"),
])
def test_a_bad_setting_of_the_checkpoint_is_one_line_naming_it(trained, tmp_path, capsys, key, value, expected):
    run = _copy(trained, tmp_path, **{key: value})
    status, line = _resume(run, capsys=capsys)
    assert (status, line) == (1, f"minicnn train: error: {run / 'checkpoint.npz'}: its setting {key} is {expected}")


def test_a_bad_data_setting_is_one_line(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path, data={"folder": "a"})
    assert _resume(run, capsys=capsys) == (1, f"minicnn train: error: {run / 'checkpoint.npz'}: its setting data is "
                                              f'{{"folder": "a"}}; expected {{"folder": "...", "sha256": {{file name: '
                                              f'hex digest}}}} of the 4 MNIST files')


@pytest.mark.parametrize("argv, setup, message", [
    (["--model", "MnistCNN"], dict(model="MnistDeepCNN"), "--model MnistCNN: the run in {ck} was set up with "
                                                          "--model MnistDeepCNN"),
    (["--seed", "0"], {}, "--seed 0: the run in {ck} was set up with --seed 3"),
    (["--epochs", "5"], {}, "--epochs 5: the run in {ck} was set up with --epochs 1"),
])
def test_an_explicit_option_that_contradicts_the_run_is_refused_even_at_its_default(trained, tmp_path, capsys, argv,
                                                                                    setup, message):
    run = _copy(trained, tmp_path, **setup)
    status, line = _resume(run, *argv, capsys=capsys)
    assert status == 2
    assert line.startswith("minicnn train: error: " + message.format(ck=run / "checkpoint.npz")
                           + "; --resume continues a run with its own settings")


def test_raising_the_epochs_says_why_it_is_refused(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    status, line = _resume(run, "--epochs", "2", capsys=capsys)
    assert status == 2
    assert line.endswith("--resume continues a run with its own settings (it ends where the uninterrupted run of "
                         "1 would have; its cosine schedule spans those epochs: train longer in a new run)")


def test_options_equal_to_the_runs_are_accepted(trained, data, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    assert _resume(run, "--epochs", "1", "--seed", "3", "--model", "MnistCNN", "--no-augment",
                   "--data-dir", str(data[0]), capsys=capsys) == (0, "")


def test_other_data_is_refused_naming_both(trained, data, tmp_path, capsys, monkeypatch):
    run = _copy(trained, tmp_path)
    a, b = (str(d.resolve()) for d in data)
    status, line = _resume(run, "--data-dir", str(data[1]), capsys=capsys)
    assert status == 2
    assert line.startswith(f"minicnn train: error: --resume: the run in {run / 'checkpoint.npz'} was trained on {a} "
                           f"(train-images-idx3-ubyte SHA-256 ")
    assert f"), not on {b} (from root, --data-dir on the command line; SHA-256 " in line
    assert line.endswith("); --resume continues a run on its own data")
    monkeypatch.setenv("MINICNN_DATA", str(data[1]))
    status, line = _resume(run, capsys=capsys)
    assert status == 2 and f"not on {b} (from MINICNN_DATA; SHA-256 " in line
    # The same files in another folder, gzip-compressed, are the same data.
    same = tmp_path / "same"
    same.mkdir()
    for path in data[0].iterdir():
        (same / (path.name + ".gz")).write_bytes(gzip.compress(path.read_bytes()))
    monkeypatch.setenv("MINICNN_DATA", str(same))
    assert _resume(run, capsys=capsys) == (0, "")


def test_a_checkpoint_without_its_data_resumes_as_before(trained, data, tmp_path, capsys):
    run = _copy(trained, tmp_path, data=...)
    assert _resume(run, "--data-dir", str(data[1]), capsys=capsys) == (0, "")
