"""benchmarks/gpu_check.sh, the one prepared GPU verification, checked where there is no GPU.

Its syntax, its plan (``--dry-run``), its usage errors, and a real run on
this machine: every step must fail cleanly, say why in one summary line, and
leave the next step to run; the figures reader is checked on files like the
ones the steps write on a GPU.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import minicnn

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
STEPS = ["nvidia-smi", "versions", "gpu-tests", "train-1epoch", "train-5epochs", "bench"]

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check_report  # noqa: E402


def _run(*args, env=None, timeout=240):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHON": sys.executable, **(env or {})})


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_dry_run_lists_every_step_within_the_time_budget_and_runs_nothing(tmp_path):
    result = _run(str(tmp_path / "out"), "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == STEPS
    limits = [int(line.split()[1].rstrip("s")) for line in lines]
    assert sum(limits) <= 9 * 60  # worst case, every step at its limit: a rerun still fits a short loan
    assert "--backend cupy --epochs 1" in lines[3] and "--backend cupy --epochs 5" in lines[4]
    assert "--backends cupy --torch-devices cuda" in lines[5]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [[], ["a", "b", "c"], ["out", "--dry"], ["--dry-run"]])
def test_usage_errors(args):
    result = _run(*args)
    assert result.returncode == 2 and result.stderr.startswith("usage:")


@pytest.mark.skipif("cupy" in minicnn.available_backends(), reason="a GPU is here: run the check itself")
@pytest.mark.skipif(shutil.which("timeout") is None, reason="no `timeout` command (GNU coreutils) here")
def test_without_a_gpu_every_step_fails_cleanly_and_the_next_one_runs(tmp_path):
    out = tmp_path / "out"
    result = _run(str(out), env={"GPU_CHECK_TIME_SCALE": "0.3"})
    assert result.returncode == 1, result.stdout + result.stderr
    lines = (out / "summary.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == STEPS
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is False and [s["step"] for s in summary["steps"]] == STEPS
    by_step = {s["step"]: s for s in summary["steps"]}
    assert all(s["status"] in ("FAIL", "TIMEOUT") for s in summary["steps"]), by_step
    assert "backend 'cupy'" in by_step["train-1epoch"]["detail"]  # the one-line error of train_mnist.py
    assert "skipped" in by_step["gpu-tests"]["detail"]  # a GPU test that skips fails the step
    assert all((out / f"{name}.log").exists() for name in STEPS)


def test_the_report_reads_the_figures_of_each_step(tmp_path):
    (tmp_path / "train-1epoch").mkdir()
    (tmp_path / "train-1epoch" / "history.json").write_text(json.dumps({"seconds": [1.93]}))
    (tmp_path / "train-1epoch" / "metrics.json").write_text(json.dumps(
        {"test_accuracy": 0.98765, "backend": "cupy", "batch_size": 64, "augment": True}))
    (tmp_path / "bench.json").write_text(json.dumps({"results": {
        "cupy": {"train_images_per_s": 51234.0, "infer_images_per_s": 401000.0, "gpu_memory_mib": 612.4,
                 "train_images_per_s_by_batch": {"64": 51234.0, "256": 90000.0}},
        "pytorch-cuda": {"train_images_per_s": 40000.0, "infer_images_per_s": 500000.0}}}))
    (tmp_path / "gpu-tests.xml").write_text(
        '<testsuites><testsuite tests="12" failures="1" errors="0" skipped="2"/></testsuites>')
    (tmp_path / "train-5epochs.log").write_text("first line\ntrain_mnist.py: error: it went wrong\n\n")
    assert gpu_check_report.detail(tmp_path, "train-1epoch") == (
        "epoch seconds 1.93; test accuracy 98.77%; backend cupy, batch 64, augment True")
    assert gpu_check_report.detail(tmp_path, "bench") == (
        "cupy train b64 51,234, train b256 90,000, infer 401,000 img/s, 612 MiB; "
        "pytorch-cuda train b64 40,000, infer 500,000 img/s")
    assert gpu_check_report.detail(tmp_path, "gpu-tests") == "9 passed, 1 failed, 0 errors, 2 skipped"
    assert gpu_check_report.detail(tmp_path, "train-5epochs") == "train_mnist.py: error: it went wrong"
    (tmp_path / "steps.tsv").write_text("bench\tok\t0\t12.5\t120\ngpu-tests\tFAIL\t1\t80.0\t150\n")
    assert gpu_check_report.summary(tmp_path) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["passed"] is False and summary["steps"][0]["seconds"] == 12.5
