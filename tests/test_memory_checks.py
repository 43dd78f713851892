"""A training step that cannot fit in memory is refused with one line before anything is allocated.

The machine's memory is faked (``minicnn.memory.available_bytes``), so no test allocates much.
"""
import argparse
import tracemalloc

import numpy as np
import pytest

from minicnn import cli, memory, models, nn, optim, recipes  # noqa: F401  (recipes: imported before a test patches
# minicnn.data.load_mnist, which it imports by name)

GB = 10**9


@pytest.fixture
def machine(monkeypatch):
    """Set the fake machine's available memory in bytes: ``machine(8 * GB)``."""
    def set_memory(n):
        monkeypatch.setattr(memory, "available_bytes", lambda: n)
    return set_memory


@pytest.mark.parametrize("name, sizes", [("MnistCNN", {}), ("MnistCNN", {"filters": 4, "units": 8}),
                                         ("MnistCNN", {"filters": 64, "units": 32}),
                                         ("MnistBNCNN", {}), ("MnistDeepCNN", {})])
def test_the_walk_counts_the_parameters_the_models_have(name, sizes):
    kwargs = sizes if name == "MnistCNN" else {}
    model = models.get_model(name, seed=0, **kwargs)
    params, _, _ = memory._walk(name, sizes.get("filters", 32), sizes.get("units", 128))
    assert params == sum(p.data.size for p in model.parameters())


def test_the_documented_mnistcnn_formula():
    for f, u in ((4, 8), (32, 128), (100, 7)):
        params, kept, largest = memory._walk("MnistCNN", f, u)
        assert kept + 2 * largest == 7_860 + 9_114 * f + 2 * u
        assert params == 18 * f * f + 12 * f + 98 * f * u + 11 * u + 10


def test_the_estimate_bounds_a_measured_training_step():
    """tracemalloc sees numpy's allocations: one Adam step of a small MnistCNN stays under the estimate.

    (Measured on the 2-core machine, numba backend, float32: batch 64 at f=32, u=128 peaks at 54 MB
    against the estimate's 83 MB; by resident memory, batch 1000: 0.95 GB against 1.2 GB.)"""
    n, f, u = 64, 16, 32
    model = models.MnistCNN(filters=f, units=u, seed=0)
    opt, loss_fn = optim.Adam(model.parameters(), lr=1e-3), nn.NLLLoss()
    x = np.random.default_rng(0).standard_normal((n, 1, 28, 28)).astype(np.float32)
    y = np.zeros(n, dtype=np.int64)

    def step():
        loss_fn(model(x), y)
        model.parameter_backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()

    step()  # compiles the kernels (their objects are no training memory), makes Adam's state
    tracemalloc.start()
    try:
        step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= memory.step_bytes("MnistCNN", n, filters=f, units=u)


def test_check_fits_refuses_with_one_line_and_passes_what_fits(machine):
    machine(24 * GB)
    assert memory.check_fits("MnistCNN", 64) == memory.step_bytes("MnistCNN", 64)
    with pytest.raises(ValueError) as exc:
        memory.check_fits("MnistCNN", 60_000)  # train --batch-size 100000 on the full set: one batch of 60,000
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith("a training step of MnistCNN (filters 32, units 128, batch 60,000) needs about 72")
    assert message.endswith("more than the 24.0 GB this machine has available")
    with pytest.raises(ValueError, match=r"MnistDeepCNN \(batch 100,000\) needs about"):
        memory.check_fits("MnistDeepCNN", 100_000)
    with pytest.raises(ValueError, match="unknown model 'Nope'"):
        memory.check_fits("Nope", 1)


def test_extra_bytes_count(machine):
    need = memory.step_bytes("MnistCNN", 64)
    machine(need + 10)
    memory.check_fits("MnistCNN", 64, extra_bytes=10)
    with pytest.raises(ValueError):
        memory.check_fits("MnistCNN", 64, extra_bytes=11)


def test_available_bytes_reads_the_machine():
    assert 0 < memory.available_bytes()


@pytest.mark.parametrize("argv, shown", [
    (["--filters", "100000"], "(filters 100000, units 128, batch 64)"),
    (["--units", "8", "--filters", "32", "--batch-size", "100000", "--limit", "0"],
     "(filters 32, units 8, batch 100,000)"),
])
def test_tune_refuses_a_space_that_cannot_fit_before_any_work(tmp_path, capsys, machine, monkeypatch, argv, shown):
    """--filters 100000 was a MemoryError traceback after the data was read and the study made."""
    pytest.importorskip("optuna")
    import minicnn.data

    machine(24 * GB)
    monkeypatch.setattr(minicnn.data, "load_mnist", lambda *a, **k: pytest.fail("read the data"))
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exc:
        cli.main(["tune", "--out", str(out), *argv])
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert exc.value.code == 2 and "Traceback" not in err and "MemoryError" not in err
    assert last.startswith(f"minicnn tune: error: a training step of MnistCNN {shown} needs about ")
    assert last.endswith("more than the 24.0 GB this machine has available")
    assert not out.exists()


def test_tune_with_a_space_that_fits_passes_the_check(machine):
    pytest.importorskip("optuna")
    from minicnn.commands import tune as command

    machine(24 * GB)
    parser = command.add_arguments(argparse.ArgumentParser())
    command._check(parser, parser.parse_args(["--filters", "128", "--units", "128", "--batch-size", "256"]))


def test_train_refuses_a_batch_that_cannot_fit_before_training(monkeypatch, capsys):
    from minicnn import cli, memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 2 ** 30)  # a machine with 1 GiB free
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--limit", "3000", "--batch-size", "3000", "--epochs", "1", "--quiet"])
    assert info.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("minicnn train: error: a training step of MnistCNN (filters 32, units 128, batch 3,000) "
                           "needs about ") and "more than the 1.1 GB this machine has available" in line
