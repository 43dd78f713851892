"""minicnn tune end to end on a small slice: trials, pruning, the files it writes, and a study that resumes."""
import csv
import json
import sqlite3
import time
import warnings

import pytest

from minicnn import cli

optuna = pytest.importorskip("optuna", reason='minicnn tune needs Optuna: pip install -e ".[tune]"')

SMALL = ["tune", "--epochs", "2", "--limit", "300", "--val-split", "0.2", "--filters", "4", "8",
         "--units", "8", "16", "--lr", "1e-2", "1e-3"]


def _tune(out, *extra):
    assert cli.main([*SMALL, "--out", str(out), *extra]) == 0
    return json.loads((out / "trials.json").read_text())


def test_tune_writes_the_trials_table_best_parameters_and_plot(tmp_path, capsys):
    rows = _tune(tmp_path, "--trials", "4")
    assert [r["number"] for r in rows] == [0, 1, 2, 3]
    for r in rows:
        assert r["state"] in ("COMPLETE", "PRUNED")
        assert r["filters"] in (4, 8) and r["units"] in (8, 16) and r["lr"] in (1e-2, 1e-3)
        assert 0.0 <= r["val_accuracy"] <= 1.0 and r["epochs"] == (2 if r["state"] == "COMPLETE" else 1)
    with open(tmp_path / "trials.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [int(r["number"]) for r in table] == [0, 1, 2, 3]
    assert [float(r["val_accuracy"]) for r in table] == pytest.approx([r["val_accuracy"] for r in rows])
    best = json.loads((tmp_path / "best.json").read_text())
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    top = max(complete, key=lambda r: r["val_accuracy"])
    assert best["best"]["number"] == top["number"]
    assert best["best"]["params"] == {"filters": top["filters"], "units": top["units"], "lr": top["lr"]}
    assert (tmp_path / "accuracy_by_trial.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "0 finished trials, running 4 more; 240 training and 60 validation images" in out
    assert f"Best: trial {top['number']}, filters {top['filters']}" in out
    assert (tmp_path / "study.db").is_file()


def test_a_stopped_study_resumes_with_the_trials_it_had(tmp_path, capsys):
    first = _tune(tmp_path, "--trials", "2")
    again = _tune(tmp_path, "--trials", "2")  # nothing missing: no trial runs
    assert again == first
    assert "2 finished trials, running 0 more" in capsys.readouterr().out
    resumed = _tune(tmp_path, "--trials", "4")
    assert resumed[:2] == first  # the stored trials are kept as they were
    assert [r["number"] for r in resumed] == [0, 1, 2, 3]
    assert "2 finished trials, running 2 more" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "study.db") as db:
        assert db.execute("select count(*) from trials").fetchone() == (4,)


def test_a_trial_left_running_by_a_stopped_run_is_taken_up_again(tmp_path, monkeypatch):
    """A run killed during trial 1 leaves it RUNNING; the next run fails it and retries its parameters."""
    from minicnn import tune

    _tune(tmp_path, "--trials", "1")
    with warnings.catch_warnings():  # heartbeats are experimental, and meant for Study.optimize
        warnings.simplefilter("ignore")
        storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_interval=1)
        study = optuna.load_study(study_name="minicnn-tune", storage=storage)
        stale = study.ask({"filters": optuna.distributions.CategoricalDistribution([4, 8]),
                           "units": optuna.distributions.CategoricalDistribution([8, 16]),
                           "lr": optuna.distributions.CategoricalDistribution([1e-2, 1e-3])})
        storage.record_heartbeat(stale._trial_id)  # the stopped run's last sign of life
    monkeypatch.setattr(tune, "GRACE", 1)
    time.sleep(2)  # longer ago than the grace period
    rows = _tune(tmp_path, "--trials", "2")
    states = [r["state"] for r in rows]
    assert states[1] == "FAIL" and len(rows) == 3
    retried = rows[2]
    assert {k: retried[k] for k in ("filters", "units", "lr")} == stale.params
    assert retried["state"] in ("COMPLETE", "PRUNED")


def test_pruning_stops_trials_below_the_median(tmp_path):
    # lr 1e-4 learns next to nothing in one epoch, so with two good trials before, later ones are pruned.
    rows = _tune(tmp_path, "--trials", "6", "--lr", "1e-4", "1e-2", "--seed", "1")
    assert any(r["state"] == "PRUNED" and r["epochs"] == 1 for r in rows)
    no_prune = _tune(tmp_path / "all", "--trials", "3", "--no-prune")
    assert all(r["state"] == "COMPLETE" for r in no_prune)


@pytest.mark.parametrize("argv, message", [
    (["--trials", "0"], "--trials must be at least 1, got 0"),
    (["--val-split", "0"], "--val-split must be in (0, 1)"),
    (["--lr", "0"], "--lr values must be finite numbers > 0"),
    (["--storage", "study.db"], "--storage study.db: expected an Optuna storage URL such as sqlite:///study.db"),
    (["--storage", "sqlite:////nonexistent/x.db"], "--storage sqlite:////nonexistent/x.db: (sqlite3.OperationalError)"),
    (["--storage", "foo://bar"], "--storage foo://bar: foo:// is not a storage minicnn tune can use; "
                                 "expected sqlite:///path.db, mysql://user@host/db or postgresql://user@host/db"),
    (["--storage", "redis://localhost:6379"], "--storage redis://localhost:6379: redis:// is not a storage"),
])
def test_bad_options_are_one_line_usage_errors(tmp_path, argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["tune", "--out", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and "Traceback" not in err
    assert err.splitlines()[-1].startswith("minicnn tune: error: ") and "sqlalche.me" not in err


def test_an_unusable_storage_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """foo://bar was SQLAlchemy's NoSuchModuleError traceback; now one line, and no --out folder, no data read."""
    import minicnn.data

    monkeypatch.setattr(minicnn.data, "load_mnist", lambda *a, **k: pytest.fail("read the data"))
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exc:
        cli.main(["tune", "--out", str(out), "--storage", "foo://bar"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err and "sqlalchemy" not in err.lower()
    assert err.splitlines()[-1].startswith("minicnn tune: error: --storage foo://bar: ")
    assert "sqlite:///path.db" in err.splitlines()[-1]
    assert not out.exists()


@pytest.mark.parametrize("url", ["sqlite:///x.db", "sqlite+pysqlite:///x.db", "SQLite:///x.db",
                                 "mysql+pymysql://u@h/db", "postgresql://u@h/db"])
def test_the_sql_storage_urls_pass_the_check(url):
    from minicnn import tune

    tune.check_storage_url(url)  # no error
