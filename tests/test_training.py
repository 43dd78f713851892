"""fit / evaluate on small synthetic problems: learning, history, schedulers, divergence, resume."""
import numpy as np
import pytest

from minicnn import nn, optim
from minicnn.training import History, TrainingDivergedError, evaluate, fit


class ListLoader:
    """The smallest loader: fixed batches, optionally reshuffled each epoch by a seeded generator."""

    def __init__(self, x, y, batch_size, generator=None):
        self.x, self.y, self.batch_size, self.generator = x, y, batch_size, generator

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        order = self.generator.permutation(len(self.x)) if self.generator is not None else np.arange(len(self.x))
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.x[idx], self.y[idx]


def blobs(n=240, seed=0):
    """Three well-separated Gaussian clusters in 2-D."""
    rng = np.random.default_rng(seed)
    centres = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    y = rng.integers(0, 3, n)
    x = (centres[y] + rng.standard_normal((n, 2)) * 0.5).astype(np.float32)
    return x, y.astype(np.int64)


def make_model(seed):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(2, 16, generator=rng), nn.ReLU(), nn.Linear(16, 3, generator=rng),
                         nn.LogSoftmax(dim=1))


def test_fit_learns_and_records_history():
    x, y = blobs()
    model = make_model(0)
    opt = optim.Adam(model.parameters(), lr=0.05)
    lines = []
    history = fit(model, nn.NLLLoss(), opt, ListLoader(x, y, 32, np.random.default_rng(0)), epochs=5,
                  val_loader=ListLoader(*blobs(90, seed=1), 30), progress=False, log=lines.append)
    assert len(history) == 5 and len(lines) == 5
    assert lines[0].startswith("Epoch [1/5] Loss: ")
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_accuracy"][-1] > 0.95
    assert set(history.to_dict()) >= {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                                      "lr", "seconds"}
    assert History.from_dict(history.to_dict()).epochs == history.epochs


def test_evaluate_is_batched_restores_mode_and_returns_predictions():
    x, y = blobs(100)
    model = make_model(0)
    model.train()
    result = evaluate(model, ListLoader(x, y, 7), nn.NLLLoss(), return_predictions=True)
    assert model.training
    assert result["samples"] == 100
    assert result["predictions"].shape == (100,) and np.array_equal(result["targets"], y)
    assert result["accuracy"] == pytest.approx(np.mean(result["predictions"] == y))
    full = model(x)
    assert result["loss"] == pytest.approx(nn.NLLLoss()(full, y), rel=1e-5)


def test_plateau_scheduler_gets_the_validation_loss():
    x, y = blobs()
    model = make_model(0)
    opt = optim.SGD(model.parameters(), lr=0.0)  # no progress: the loss plateaus at once
    sched = optim.ReduceLROnPlateau(opt, factor=0.5, patience=0, eps=0.0)
    opt.param_groups[0]["lr"] = 1e-12
    history = fit(model, nn.NLLLoss(), opt, ListLoader(x, y, 60), epochs=3,
                  val_loader=ListLoader(x, y, 60), scheduler=sched, progress=False, log=None)
    assert history["lr"][0] == pytest.approx(1e-12)
    assert opt.param_groups[0]["lr"] < 1e-12


def test_a_plateau_subclass_gets_the_loss_too():
    """fit steps every scheduler with the epoch's loss: it does not recognise the plateau by its class name."""
    class Patient(optim.ReduceLROnPlateau):
        pass

    x, y = blobs()
    model = make_model(0)
    opt = optim.SGD(model.parameters(), lr=0.0)
    sched = Patient(opt, factor=0.5, patience=0, eps=0.0)
    opt.param_groups[0]["lr"] = 1e-12
    fit(model, nn.NLLLoss(), opt, ListLoader(x, y, 60), epochs=3, scheduler=sched, progress=False, log=None)
    assert sched.last_epoch == 3
    assert opt.param_groups[0]["lr"] < 1e-12


def test_plateau_scheduler_gets_the_column_plateau_metric_names():
    x, y = blobs()
    model = make_model(0)
    opt = optim.SGD(model.parameters(), lr=0.1)
    sched = optim.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=10)
    history = fit(model, nn.NLLLoss(), opt, ListLoader(x, y, 20), epochs=3, val_loader=ListLoader(x[:50], y[:50], 25),
                  scheduler=sched, progress=False, log=None, plateau_metric="val_accuracy")
    assert sched.last_epoch == 3
    assert sched.best == max(history["val_accuracy"])  # mode "max" keeps the best accuracy it was given
    with pytest.raises(ValueError, match=r"plateau_metric must be one of train_loss, train_accuracy \(no val_loader\)"):
        fit(model, nn.NLLLoss(), opt, ListLoader(x, y, 20), epochs=1, scheduler=sched, plateau_metric="val_accuracy")


def test_on_epoch_sees_each_record_and_can_stop_the_training():
    x, y = blobs()
    model = make_model(0)
    opt = optim.SGD(model.parameters(), lr=0.1)
    seen = []

    class Stop(Exception):
        pass

    def on_epoch(record):
        seen.append(dict(record))
        if record["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        fit(model, nn.NLLLoss(), opt, ListLoader(x, y, 20), epochs=5, val_loader=ListLoader(x, y, 50),
            progress=False, log=None, on_epoch=on_epoch)
    assert [r["epoch"] for r in seen] == [1, 2]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"} <= set(seen[0])


def test_batch_interval_scheduler_steps_every_batch():
    x, y = blobs(64)
    model = make_model(0)
    opt = optim.SGD(model.parameters(), lr=1.0)
    sched = optim.StepLR(opt, step_size=1, gamma=0.5)
    fit(model, nn.NLLLoss(), opt, ListLoader(x, y, 16), epochs=1, scheduler=sched,
        scheduler_interval="batch", progress=False, log=None)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 ** 4)


def test_non_finite_loss_stops_and_keeps_last_good_weights():
    x, y = blobs(64)
    model = make_model(0)
    opt = optim.SGD(model.parameters(), lr=0.1)
    loader = ListLoader(x, y, 16)
    fit(model, nn.NLLLoss(), opt, loader, epochs=1, progress=False, log=None)
    good = {k: v.copy() for k, v in model.state_dict().items()}
    x_bad = x.copy()
    x_bad[40] = np.nan  # third batch
    with pytest.raises(TrainingDivergedError, match="epoch 1, batch 3") as info:
        fit(model, nn.NLLLoss(), opt, ListLoader(x_bad, y, 16), epochs=1, progress=False, log=None)
    assert info.value.epoch == 1 and info.value.batch == 3
    assert all(np.array_equal(good[k], v) for k, v in model.state_dict().items())


def test_same_seed_same_weights():
    def run():
        x, y = blobs()
        model = make_model(3)
        fit(model, nn.NLLLoss(), optim.Adam(model.parameters(), lr=0.01),
            ListLoader(x, y, 32, np.random.default_rng(7)), epochs=2, progress=False, log=None)
        return model.state_dict()

    a, b = run(), run()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_resume_from_checkpoint_matches_an_uninterrupted_run(tmp_path):
    x, y = blobs()

    def setup():
        model = make_model(5)
        opt = optim.Adam(model.parameters(), lr=0.02)
        sched = optim.StepLR(opt, step_size=1, gamma=0.5)
        return model, opt, sched, ListLoader(x, y, 32, np.random.default_rng(11))

    model, opt, sched, loader = setup()
    straight = fit(model, nn.NLLLoss(), opt, loader, epochs=4, scheduler=sched, progress=False, log=None)

    model2, opt2, sched2, loader2 = setup()
    ck = tmp_path / "ck.npz"
    fit(model2, nn.NLLLoss(), opt2, loader2, epochs=2, scheduler=sched2, progress=False, log=None,
        checkpoint_path=ck)
    model3, opt3, sched3, loader3 = setup()
    resumed = fit(model3, nn.NLLLoss(), opt3, loader3, epochs=4, scheduler=sched3, progress=False, log=None,
                  resume_from=ck)
    assert [r["epoch"] for r in resumed.epochs] == [1, 2, 3, 4]
    assert resumed["train_loss"] == pytest.approx(straight["train_loss"], rel=1e-6)
    a, b = model.state_dict(), model3.state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_bad_arguments():
    x, y = blobs(10)
    model = make_model(0)
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="epochs must be a non-negative int"):
        fit(model, nn.NLLLoss(), opt, ListLoader(x, y, 5), epochs=-1)
    with pytest.raises(ValueError, match="scheduler_interval"):
        fit(model, nn.NLLLoss(), opt, ListLoader(x, y, 5), epochs=1, scheduler_interval="step")
    with pytest.raises(ValueError, match="yielded no samples"):
        evaluate(model, ListLoader(x[:0], y[:0], 5))


@pytest.mark.parametrize("extra, message", [
    (dict(history=5), "AttributeError: 'int' object has no attribute 'values'"),
    (dict(epoch="two"), "ValueError: invalid literal for int"),
    (dict(rng_states={"loader": {"bit_generator": "PCG64", "state": "x"}}), "(TypeError|ValueError|KeyError)"),
], ids=["history", "epoch", "rng-state"])
def test_a_checkpoint_whose_training_state_does_not_fit_is_a_checkpoint_error(tmp_path, extra, message):
    from minicnn.serialization import CheckpointError, save_checkpoint

    x, y = blobs(40)
    model = make_model(0)
    opt = optim.Adam(model.parameters(), lr=0.01)
    path = save_checkpoint(tmp_path / "ck.npz", model, opt, **extra)
    with pytest.raises(CheckpointError, match=rf"ck\.npz: its epoch, history or random-generator states cannot be "
                                              rf"resumed from \({message}"):
        fit(model, nn.NLLLoss(), opt, ListLoader(x, y, 8, np.random.default_rng(0)), epochs=2, progress=False,
            log=None, resume_from=path)
