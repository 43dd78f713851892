"""The minicnn command end to end on a small model."""
import contextlib
import errno
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

import minicnn
from minicnn import cli, models, run_folder
from minicnn.data import load_mnist
from minicnn.imaging import preprocess_digit
from strategies import fused_lines


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Weights, history and metrics from a short `minicnn train` run."""
    out = tmp_path_factory.mktemp("run")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["train", "--epochs", "1", "--limit", "512", "--no-augment", "--quiet", "--out", str(out)]) == 0
    (out / "stdout.txt").write_text(printed.getvalue())
    return out


def test_train_prints_its_setup_first(trained):
    first = (trained / "stdout.txt").read_text().splitlines()[0]
    assert first.startswith(f"minicnn {minicnn.__version__}: MnistCNN on 512 training images, backend ")
    assert ", 1 epoch, batch 64, Adam lr 0.001, scheduler cosine, augmentation off" in first


def test_train_writes_weights_history_metrics_and_reports(trained):
    for name in ("model.npz", "history.json", "metrics.json", "curves.png", "confusion_matrix.png",
                 "classification_report.txt"):
        assert (trained / name).stat().st_size > 0, name
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and 0.5 < metrics["test_accuracy"] <= 1.0
    assert "macro avg" in (trained / "classification_report.txt").read_text()


def test_evaluate_prints_accuracy_and_report_and_saves_plots(trained, tmp_path, capsys):
    assert cli.main(["evaluate", str(trained / "model.npz"), "--out", str(tmp_path), "--limit", "1000"]) == 0
    out = capsys.readouterr().out
    assert "on 1,000 images" in out
    assert "precision    recall  f1-score   support" in out
    for name in ("confusion_matrix.png", "curves.png", "predictions.png", "misclassified.png", "explanations.png",
                 "filters.png", "feature_maps.png", "classification_report.txt"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_predict_reads_photographed_style_digits(trained, tmp_path, capsys):
    images, labels = load_mnist("test")
    files = []
    for i in range(3):  # dark ink on light paper, larger than 28x28, RGB
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(255 - images[i]).resize((140, 168)).convert("RGB").save(path)
        files.append(str(path))
    assert cli.main(["predict", str(trained / "model.npz"), *files, "--save-input", str(tmp_path / "seen")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for line, f in zip(lines, files):
        name, rest = line.rsplit(": ", 1)
        digit, prob = rest.split(" ")
        assert name == f and 0 <= int(digit) <= 9 and 0 < float(prob.strip("(%)")) <= 100
    assert len(list((tmp_path / "seen").glob("*_28x28.png"))) == 3


def test_evaluate_full_test_set_matches_training_metrics(trained, capsys):
    assert cli.main(["evaluate", str(trained / "model.npz")]) == 0
    expected = json.loads((trained / "metrics.json").read_text())["test_accuracy"]
    assert f"Test accuracy: {expected:.4f}" in capsys.readouterr().out


def test_summary_counts_parameters(capsys):
    assert cli.main(["summary"]) == 0
    assert "Total params: 421,642" in capsys.readouterr().out
    assert cli.main(["summary", "--model", "MnistBNCNN"]) == 0
    assert "bn1 (BatchNorm2d)" in capsys.readouterr().out


def test_missing_and_mismatched_weights_are_named(tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path / "nope.npz")]) == 1
    assert "no such weights file" in capsys.readouterr().err
    path = minicnn.save(models.MnistCNN(seed=0), tmp_path / "cnn.npz")
    assert cli.main(["evaluate", str(path), "--model", "MnistBNCNN", "--limit", "10"]) == 1
    err = capsys.readouterr().err
    assert "cnn.npz" in err and "missing keys: bn1.weight" in err and "Expected keys: conv1.weight" in err


def test_blank_image_is_a_clear_error(trained, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((50, 50), 255, np.uint8)).save(blank)
    assert cli.main(["predict", str(trained / "model.npz"), str(blank)]) == 1
    assert "blank.png" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["evaluate"], ["train", "--epochs", "x"], ["predict", "w.npz"], ["evaluate", "w.npz", "--limit", "0"],
                                  ["frobnicate"]])
def test_bad_arguments_get_usage(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage: minicnn" in capsys.readouterr().err


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "minicnn.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"minicnn {minicnn.__version__}"


# --- errors a user can cause: one line, the right exit status, found before the long work --------------

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = ["train", "--epochs", "1", "--limit", "64", "--no-augment", "--quiet"]
CUPY_LOADS = "cupy" in minicnn.available_backends()


def _last_error_line(capsys):
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.out, captured.err.strip().splitlines()[-1]


def _run_script(*argv, env=None):
    """Run a Python file or module in a fresh interpreter: (exit status, stderr lines)."""
    result = subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True,
                            env={**os.environ, **(env or {})})
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stderr.strip().splitlines()


@pytest.mark.parametrize("where, blocker", [("run.txt", "run.txt"), ("run.txt/sub/dir", "run.txt"),
                                            ("x" * 300, None)])
def test_train_checks_out_before_training(where, blocker, tmp_path, capsys):
    (tmp_path / "run.txt").write_text("not a folder")
    out = tmp_path / where
    with pytest.raises(SystemExit) as info:
        cli.main([*TINY_TRAIN, "--out", str(out)])
    assert info.value.code == 2
    printed, line = _last_error_line(capsys)
    assert printed == "", "the check comes before any training"
    problem = f"{tmp_path / blocker} is a file, not a folder" if blocker else "File name too long"
    assert line == f"minicnn train: error: --out {out}: {problem}"


def test_train_usage_and_option_errors_name_the_subcommand_and_option(capsys):
    for argv, message in ((["--seed", "-1"], "--seed must be non-negative, got -1"),
                          (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
                          (["--lr", "-1"], "--lr must be a finite number > 0, got -1.0"),
                          (["--limit", "1", "--val-split", "0.9"],
                           "--val-split 0.9 of 1 image (--limit 1) leaves 0 training images"),
                          (["--limit", "2", "--val-split", "0.2"],
                           "--val-split 0.2 of 2 images (--limit 2) leaves 0 validation images")):
        with pytest.raises(SystemExit) as info:
            cli.main(["train", "--epochs", "1", "--quiet", *argv])
        assert info.value.code == 2, argv
        captured = capsys.readouterr()
        assert captured.err.startswith("usage: minicnn train "), argv
        assert captured.err.strip().splitlines()[-1] == f"minicnn train: error: {message}"
        assert "Epoch" not in captured.out, "checked before any training"


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_diverging_training_is_one_line(capsys):
    assert cli.main(["train", "--lr", "1e30", "--epochs", "1", "--limit", "256", "--no-augment", "--quiet"]) == 1
    _, line = _last_error_line(capsys)
    assert line.startswith("minicnn train: error: loss became nan at epoch 1, batch ")
    assert line.endswith("; the model holds the weights from the end of epoch 0 (try a lower learning rate)")


@pytest.mark.parametrize("argv, status, message", [
    (["--lr", "1e30", "--limit", "256"], 1, "loss became nan at epoch 1, batch "),
    (["--data-dir", "{tmp}/nowhere"], 1, "the MNIST data folder {tmp}/nowhere "),
    (["--data-dir", "{tmp}"], 1, "train-images-idx3-ubyte not found: "),
    (["--out", "{tmp}/file"], 2, "--out {tmp}/file: {tmp}/file is a file, not a folder"),
])
def test_example_script_reports_errors_as_minicnn_train_does(argv, status, message, tmp_path):
    (tmp_path / "file").write_text("")
    argv = [a.format(tmp=tmp_path) for a in argv]
    code, err = _run_script(ROOT / "examples" / "train_mnist.py", "--epochs", "1", "--limit", "64", "--no-augment",
                            "--quiet", *argv)
    assert code == status
    assert err[-1].startswith(f"train_mnist.py: error: {message.format(tmp=tmp_path)}")


@pytest.mark.parametrize("command", [["summary"], ["train", "--limit", "64"], ["evaluate", "w.npz"],
                                     ["predict", "w.npz", "x.png"], ["bench", "--no-torch"]])
def test_unusable_backend_setting_is_one_line(command):
    code, err = _run_script("-m", "minicnn.cli", *command, env={"MINICNN_BACKEND": "fortran"})
    assert code == 2
    assert err == [f"minicnn {command[0]}: error: MINICNN_BACKEND=fortran: unknown backend 'fortran'; the known "
                   f"backends are 'numpy', 'numba', 'cupy'. Available here: {', '.join(minicnn.available_backends())}"]


@pytest.mark.skipif(CUPY_LOADS, reason="CuPy loads here, so MINICNN_BACKEND=cupy is no error")
def test_missing_cupy_in_the_environment_is_one_line(without_cupy):
    code, err = _run_script("-m", "minicnn.cli", "summary", env={"MINICNN_BACKEND": "cupy", **without_cupy})
    assert code == 2 and len(err) == 1
    assert err[0].startswith("minicnn summary: error: MINICNN_BACKEND=cupy: backend 'cupy' needs CuPy")


def test_evaluate_and_predict_check_their_output_folder_first(trained, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    weights = str(trained / "model.npz")
    for argv, option in ((["evaluate", weights, "--limit", "100"], "--out"),
                         (["predict", weights, "x.png"], "--save-input")):
        with pytest.raises(SystemExit) as info:
            cli.main([*argv, option, str(tmp_path / "file" / "sub")])
        assert info.value.code == 2
        printed, line = _last_error_line(capsys)
        assert printed == "", "no report before the check"
        assert line == f"minicnn {argv[0]}: error: {option} {tmp_path / 'file' / 'sub'}: {tmp_path / 'file'} " \
                       f"is a file, not a folder"


def test_a_file_that_cannot_be_written_is_named_in_one_line(capsys):
    def fails(args, parser):
        raise PermissionError(13, "Permission denied", "/some/where/report.txt")

    parser = cli.build_parser()
    assert cli.run_command(parser, parser.parse_args(["summary"]), fails) == 1
    assert capsys.readouterr().err == "minicnn: error: /some/where/report.txt: Permission denied\n"


def after_fused_line(err: list) -> list:
    """The lines of standard error after the one in which predict names what it fused (on numba)."""
    fused = fused_lines()
    assert err[:len(fused)] == fused
    return err[len(fused):]


def test_saved_inputs_of_the_same_name_are_all_kept(trained, tmp_path, capsys):
    images, _ = load_mnist("test")
    files = []
    for i, folder in enumerate(("a", "b", "c")):
        (tmp_path / folder).mkdir()
        files.append(tmp_path / folder / "digit.png")
        Image.fromarray(255 - images[i]).save(files[-1])
    seen = tmp_path / "seen"
    assert cli.main(["predict", str(trained / "model.npz"), *map(str, files), "--save-input", str(seen)]) == 0
    assert sorted(p.name for p in seen.iterdir()) == ["digit_28x28.png", "digit_2_28x28.png", "digit_3_28x28.png"]
    for i, name in enumerate(["digit_28x28.png", "digit_2_28x28.png", "digit_3_28x28.png"]):
        _, raw = preprocess_digit(str(files[i]), return_raw=True)
        assert np.array_equal(np.asarray(Image.open(seen / name)), raw), name
    err = after_fused_line(capsys.readouterr().err.splitlines())
    assert err == [f"minicnn predict: warning: {seen / 'digit_28x28.png'} holds the input of {files[0]}, so the "
                   f"input of {files[i]} is saved as {seen / name}"
                   for i, name in ((1, "digit_2_28x28.png"), (2, "digit_3_28x28.png"))]


def test_failed_train_out_leaves_the_old_run_as_it_was(trained, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}

    def disk_full(*args, path=None, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(minicnn.plots, "plot_confusion_matrix", disk_full)
    assert cli.main([*TINY_TRAIN, "--seed", "1", "--out", str(run)]) == 1
    _, line = _last_error_line(capsys)
    assert line == (f"minicnn train: error: {run / 'confusion_matrix.png'}: No space left on device; {run} holds the "
                    f"rest as it was, and this run's checkpoint: minicnn train --resume {run} writes its files")
    after = {p.name: p.read_bytes() for p in run.iterdir()}
    # Only the checkpoint, written after every epoch, is the new run's: no new weights beside the old plots.
    assert after.pop("checkpoint.npz") != before.pop("checkpoint.npz")
    assert after == before, "no new file beside the old ones"
    monkeypatch.undo()
    assert cli.main(["train", "--resume", str(run), "--quiet"]) == 0
    model = minicnn.load(models.MnistCNN(seed=0), run / "model.npz")
    checkpointed = minicnn.load(models.MnistCNN(seed=0), run / "checkpoint.npz")
    np.testing.assert_equal(model.state_dict(), checkpointed.state_dict())
    assert json.loads((run / "metrics.json").read_text())["seed"] == 1


def test_evaluate_will_not_replace_the_training_reports_unless_asked(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(SystemExit) as info:
        cli.main(["evaluate", str(run / "model.npz"), "--limit", "50", "--out", str(run)])
    assert info.value.code == 2
    printed, line = _last_error_line(capsys)
    assert printed == ""
    assert line == (f"minicnn evaluate: error: --out {run} holds the training reports of {run / 'model.npz'} "
                    f"(curves.png, confusion_matrix.png, classification_report.txt), which this evaluation would "
                    f"replace; choose another folder, such as {run / 'report'}, or add --overwrite")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert cli.main(["evaluate", str(run / "model.npz"), "--limit", "50", "--out", str(run), "--overwrite"]) == 0
    assert "on 50 images" in capsys.readouterr().out
    assert "50" in (run / "classification_report.txt").read_text()


def test_evaluate_says_which_files_it_wrote(trained, tmp_path, capsys):
    shutil.copy(trained / "model.npz", tmp_path / "model.npz")
    assert cli.main(["evaluate", str(tmp_path / "model.npz"), "--limit", "50", "--out", str(tmp_path / "r")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2:] == [f"No history.json beside {tmp_path / 'model.npz'}: no training curves",
                          "Wrote confusion_matrix.png, classification_report.txt, predictions.png, misclassified.png, "
                          f"explanations.png, filters.png, feature_maps.png to {tmp_path / 'r'}"]
    assert not (tmp_path / "r" / "curves.png").exists()


@pytest.mark.parametrize("content, problem", [
    ("{", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ("[1, 2]", 'expected per-epoch columns of numbers, {"train_loss": [...], ...}, as train --out writes them'),
    ('{"train_loss": [1.0, "x"]}', 'expected per-epoch columns of numbers, {"train_loss": [...], ...}, '
                                   'as train --out writes them'),
])
def test_unusable_history_skips_the_curves_with_a_warning(content, problem, trained, tmp_path, capsys):
    shutil.copy(trained / "model.npz", tmp_path / "model.npz")
    (tmp_path / "history.json").write_text(content)
    assert cli.main(["evaluate", str(tmp_path / "model.npz"), "--limit", "50", "--out", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    assert captured.err == f"minicnn evaluate: warning: {tmp_path / 'history.json'}: {problem}; no training curves\n"
    assert captured.out.strip().splitlines()[-1].startswith("Wrote confusion_matrix.png, ")
    assert not (tmp_path / "r" / "curves.png").exists()


def test_weights_folder_and_non_finite_weights_are_named(trained, tmp_path, capsys):
    assert cli.main(["evaluate", str(trained), "--limit", "10"]) == 1
    assert capsys.readouterr().err == (f"minicnn evaluate: error: {trained} is a folder; expected a weights file "
                                       f"such as {trained / 'model.npz'}\n")
    model = minicnn.load(models.MnistCNN(seed=0), trained / "model.npz")
    model.fc1.weight.data[0, 0] = np.nan
    path = minicnn.save(model, tmp_path / "nan.npz")
    for argv in (["evaluate", str(path), "--limit", "10"], ["predict", str(path), "x.png"]):
        assert cli.main(argv) == 1
        assert capsys.readouterr().err == (f"minicnn {argv[0]}: error: {path}: NaN or infinite values in fc1.weight; "
                                           f"every prediction would be meaningless (did the training diverge?)\n")


# --- paths, faults and interruptions: one meaning, nothing lost, one line ----------------------------------

def _digit_png(path, blank=False):
    image = Image.new("L", (60, 60), 255)
    if not blank:
        from PIL import ImageDraw
        ImageDraw.Draw(image).line([(12, 12), (48, 12), (22, 50)], fill=0, width=6)  # a 7
    image.save(path)
    return path


def test_a_tilde_after_an_equals_sign_means_home_everywhere(trained, tmp_path, monkeypatch, capsys):
    home, cwd = tmp_path / "h", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    shutil.copy(trained / "model.npz", cwd / "m.npz")
    assert cli.main(["train", "--limit", "10", "--epochs", "0", "--quiet", "--out=~/tt"]) == 0
    assert (home / "tt" / "model.npz").is_file()
    assert cli.main(["evaluate", "--limit", "20", "--out=~/ev", "~/tt/model.npz"]) == 0
    assert (home / "ev" / "classification_report.txt").is_file()
    _digit_png(home / "seven.png")
    assert cli.main(["predict", "~/tt/model.npz", "~/seven.png", "--save-input=~/seen"]) == 0
    assert (home / "seen" / "seven_28x28.png").is_file()
    assert os.listdir(cwd) == ["m.npz"], "no folder named '~'"
    assert "Traceback" not in capsys.readouterr().err


def test_evaluate_help_names_where_the_data_comes_from(capsys):
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    assert "(default: MINICNN_DATA, else the bundled MNIST)" in " ".join(capsys.readouterr().out.split())


def test_a_folder_in_the_way_stops_train_before_any_work(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    shutil.rmtree(run / "confusion_matrix.png", ignore_errors=True)
    (run / "confusion_matrix.png").unlink(missing_ok=True)
    (run / "confusion_matrix.png").mkdir()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(SystemExit) as info:
        cli.main([*TINY_TRAIN, "--out", str(run)])
    assert info.value.code == 2
    printed, line = _last_error_line(capsys)
    assert printed == ""
    assert line == (f"minicnn train: error: --out {run}: {run / 'confusion_matrix.png'} is a folder, where this run "
                    f"writes a file; move it away or choose another folder")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_evaluate_on_a_full_disk_replaces_nothing_and_names_the_file(trained, tmp_path, monkeypatch, capsys):
    report = tmp_path / "report"
    argv = ["evaluate", str(trained / "model.npz"), "--limit", "30", "--out", str(report)]
    assert cli.main(argv) == 0
    before = {p.name: p.read_bytes() for p in report.iterdir()}
    fsync, calls = os.fsync, []

    def full_disk(fd):
        calls.append(fd)
        if len(calls) == 5:  # the fifth of the eight files
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    assert cli.main([*argv[:3], "50", *argv[4:]]) == 1
    _, line = _last_error_line(capsys)
    assert line == f"minicnn evaluate: error: {report / 'misclassified.png'}: No space left on device"
    assert {p.name: p.read_bytes() for p in report.iterdir()} == before, "the old reports, all of them"


def test_reports_a_run_does_not_make_are_not_left_beside_its_results(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    assert cli.main(["train", "--epochs", "0", "--limit", "64", "--quiet", "--out", str(run)]) == 0
    assert not (run / "curves.png").exists() and not (run / "checkpoint.npz").exists(), "an older run's"
    assert json.loads((run / "history.json").read_text()) == {}
    report = tmp_path / "report"
    report.mkdir()
    shutil.copy(trained / "curves.png", report / "curves.png")
    assert cli.main(["evaluate", str(run / "model.npz"), "--limit", "20", "--out", str(report)]) == 0
    assert not (report / "curves.png").exists()
    assert (f"{run / 'history.json'}: expected per-epoch columns of numbers" in capsys.readouterr().err)


def test_predict_prints_every_image_it_can_read_and_fails_for_the_rest(trained, tmp_path, capsys):
    good, blank, other = _digit_png(tmp_path / "good.png"), _digit_png(tmp_path / "blank.png", True), \
        _digit_png(tmp_path / "other.png")
    bad_exif = tmp_path / "exif.jpg"
    Image.open(good).convert("RGB").save(bad_exif, exif=b"Exif\0\0" + b"\xff" * 40)
    assert cli.main(["predict", str(trained / "model.npz"), str(good), str(blank), str(other), str(bad_exif)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(good), str(other), str(bad_exif)]
    err = after_fused_line(captured.err.strip().splitlines())
    assert len(err) == 3 and "Traceback" not in captured.err
    assert err[0].startswith(f"minicnn predict: error: image file {str(blank)!r} is blank")
    assert err[1].startswith(f"minicnn predict: warning: image file {str(bad_exif)!r}: its EXIF data cannot be read")
    assert err[2] == "minicnn predict: error: 1 of 4 images could not be read"


def test_a_killed_runs_leftovers_are_removed_by_the_next_run(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / ".writing-8kq2m1x0").mkdir()
    (run / ".writing-8kq2m1x0" / run_folder.STAGING_MARK).touch()
    (run / ".writing-8kq2m1x0" / "model.npz").write_bytes(b"half a file")
    (run / ".checkpoint.npz.x1y2z3w4.tmp").write_bytes(b"half a file")
    assert cli.main(["train", "--epochs", "0", "--limit", "64", "--quiet", "--out", str(run)]) == 0
    assert (f"Removed what an interrupted run left in {run}: .checkpoint.npz.x1y2z3w4.tmp, .writing-8kq2m1x0"
            in capsys.readouterr().out)
    assert not [p.name for p in run.iterdir() if p.name.startswith(".") and p.name != ".minicnn.lock"]


@pytest.mark.skipif(fcntl is None, reason="no fcntl (advisory file locks) on this platform")
def test_a_second_train_into_the_same_folder_stops_at_once(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    # Another minicnn train holding the folder: an exclusive flock on its lock file, which names the process.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys\n"
                               f"with open({str(out / '.minicnn.lock')!r}, 'w') as lock:\n"
                               "    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
                               "    lock.write(f'process {os.getpid()} (minicnn train)'); lock.flush()\n"
                               "    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert cli.main([*TINY_TRAIN, "--out", str(out)]) == 1
        printed, line = _last_error_line(capsys)
        assert line == (f"minicnn train: error: {out} is in use by process {holder.pid} (minicnn train), which is "
                        f"writing there; wait for it to finish or choose another folder")
        assert "Epoch" not in printed and not (out / "model.npz").exists()
    finally:
        holder.communicate("")


def test_a_diverging_run_prints_one_line_and_no_numpy_warnings():
    code, err = _run_script("-m", "minicnn.cli", "train", "--lr", "1e30", "--epochs", "1", "--limit", "256",
                            "--no-augment", "--quiet")
    assert code == 1
    assert len(err) == 1 and err[0].startswith("minicnn train: error: loss became nan at epoch 1, batch ")


RESUMABLE = ["train", "--epochs", "2", "--limit", "128", "--val-split", "0.25", "--quiet"]  # 2 batches an epoch


def _stop_at_step(monkeypatch, n, error=KeyboardInterrupt):
    """Make the n-th optimizer step raise ``error`` (Ctrl-C), as it would arrive in the middle of an epoch."""
    step, calls = minicnn.optim.Adam.step, []

    def stopping_step(self):
        calls.append(1)
        if len(calls) == n:
            raise error()
        step(self)

    monkeypatch.setattr(minicnn.optim.Adam, "step", stopping_step)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The run that --resume must reproduce, uninterrupted."""
    out = tmp_path_factory.mktemp("straight")
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main([*RESUMABLE, "--out", str(out)]) == 0
    return out


def test_ctrl_c_keeps_the_last_complete_epoch_and_resume_continues_bit_identically(straight, tmp_path, monkeypatch,
                                                                                    capsys):
    run = tmp_path / "run"
    _stop_at_step(monkeypatch, 3)  # the first step of epoch 2
    assert cli.main([*RESUMABLE, "--out", str(run)]) == 130
    _, line = _last_error_line(capsys)
    assert line == (f"minicnn train: interrupted during training; {run} holds the weights and checkpoint of epoch 1: "
                    f"continue with minicnn train --resume {run}")
    assert sorted(p.name for p in run.iterdir()) == [".minicnn.lock", "checkpoint.npz", "history.json", "model.npz"]
    assert json.loads((run / "history.json").read_text())["epoch"] == [1]
    monkeypatch.undo()
    assert cli.main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "Epoch [2/2]" in capsys.readouterr().out
    for name in ("model.npz", "checkpoint.npz"):
        with np.load(run / name) as resumed, np.load(straight / name) as expected:
            for key in expected.files:
                if key != "__meta__":
                    np.testing.assert_array_equal(resumed[key], expected[key], err_msg=f"{name}: {key}")
    resumed, expected = (json.loads((folder / "history.json").read_text()) for folder in (run, straight))
    assert {k: v for k, v in resumed.items() if k != "seconds"} == {k: v for k, v in expected.items() if k != "seconds"}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_accuracy"] == json.loads((straight / "metrics.json").read_text())["test_accuracy"]
    # The training time is the whole run's: both epochs, the one before the interruption included.
    assert metrics["seconds"] == pytest.approx(sum(resumed["seconds"]))
    assert len(resumed["seconds"]) == 2 and all(t > 0 for t in resumed["seconds"])


def test_a_diverged_epoch_keeps_the_last_good_one_to_resume_from(trained, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)  # an older run's files, reports and all
    loss, calls = minicnn.nn.NLLLoss.__call__, []

    def diverging(self, output, target):
        calls.append(1)
        # Epoch 1 calls the loss for its 2 batches and its validation batch; then epoch 2, batch 1.
        return float("nan") if len(calls) == 4 else loss(self, output, target)

    monkeypatch.setattr(minicnn.nn.NLLLoss, "__call__", diverging)
    assert cli.main([*RESUMABLE, "--no-augment", "--out", str(run)]) == 1
    _, line = _last_error_line(capsys)
    assert line == (f"minicnn train: error: loss became nan at epoch 2, batch 1; the model holds the weights from the "
                    f"end of epoch 1 (try a lower learning rate); {run} holds the weights and checkpoint of epoch 1: "
                    f"continue with minicnn train --resume {run}")
    assert sorted(p.name for p in run.iterdir() if p.name != "stdout.txt") == [
        ".minicnn.lock", "checkpoint.npz", "history.json", "model.npz"], "the older run's reports are gone"
    weights = minicnn.load(models.MnistCNN(seed=0), run / "model.npz").state_dict()
    np.testing.assert_equal(weights, minicnn.load(models.MnistCNN(seed=0), run / "checkpoint.npz").state_dict())


def test_ctrl_c_before_an_epoch_is_complete_leaves_the_folder_as_it_was(trained, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    _stop_at_step(monkeypatch, 1)
    assert cli.main([*RESUMABLE, "--out", str(run)]) == 130
    _, line = _last_error_line(capsys)
    assert line == f"minicnn train: interrupted during training; no epoch was complete, so {run} is as it was"
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_resume_takes_the_runs_settings_and_refuses_others(straight, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--resume", str(straight), "--lr", "0.01"])
    assert info.value.code == 2
    _, line = _last_error_line(capsys)
    assert line == (f"minicnn train: error: --lr 0.01: the run in {straight / 'checkpoint.npz'} was set up with "
                    f"--lr 0.001; --resume continues a run with its own settings")
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--resume", str(tmp_path)])
    assert info.value.code == 2
    _, line = _last_error_line(capsys)
    assert line == (f"minicnn train: error: --resume {tmp_path}: no checkpoint {tmp_path / 'checkpoint.npz'} "
                    f"(minicnn train --out DIR writes DIR/checkpoint.npz after every epoch)")
    weights_only = minicnn.save(models.MnistCNN(seed=0), tmp_path / "w.npz")
    assert cli.main(["train", "--resume", str(weights_only)]) == 1
    _, line = _last_error_line(capsys)
    assert line == (f"minicnn train: error: {weights_only} holds weights only, not a training checkpoint "
                    f"(written by minicnn.save, not minicnn.save_checkpoint)")
