"""The backend benchmark (minicnn.bench, `minicnn bench`) end to end, kept tiny: it checks what the
benchmark reports and writes, not how fast anything is."""
import json
import platform

import numpy as np
import pytest
from PIL import Image

import minicnn
from minicnn import bench, cli

LAYERS = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1", "relu3", "fc2", "log_softmax"]
TINY = ["--repeats", "1", "--train-steps", "1", "--settle", "0"]


def test_bench_command_prints_table_and_writes_json_and_plot(tmp_path, capsys):
    before = minicnn.get_backend().name
    report_path, plot_path = tmp_path / "bench.json", tmp_path / "bench.png"
    assert cli.main(["bench", "--backends", "numpy", "--no-torch", *TINY,
                     "--json", str(report_path), "--plot", str(plot_path)]) == 0
    out = capsys.readouterr().out
    assert "| numpy |" in out and "per-layer time at batch 64" in out
    assert f"cores; Python {platform.python_version()}, numpy {np.__version__}" in out
    report = json.loads(report_path.read_text())
    assert list(report["results"]) == ["numpy"]
    assert report["versions"]["numpy"] == np.__version__
    assert report["train_batch"] == 64 and report["infer_batch"] == 1000 and report["repeats"] == 1
    numpy_row = report["results"]["numpy"]
    assert numpy_row["first_step_s"] > 0
    assert numpy_row["train_images_per_s"] > 0 and numpy_row["infer_images_per_s"] > 0
    assert len(numpy_row["train_runs"]) == len(numpy_row["infer_runs"]) == 1
    assert [row["layer"] for row in numpy_row["layers"]] == LAYERS
    assert all(row["forward_ms"] > 0 and row["backward_ms"] > 0 for row in numpy_row["layers"])
    with Image.open(plot_path) as image:
        assert image.format == "PNG" and image.width > 500 and image.height > 200
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"
    assert minicnn.get_backend().name == before, "the benchmark must restore the active backend"


def test_table_gives_ratios_against_pytorch():
    def row(train, infer):
        return {"first_step_s": 0.5, "train_images_per_s": train, "infer_images_per_s": infer}

    report = {"results": {"numba": row(3000.0, 6000.0), "pytorch-cpu": row(2000.0, 3000.0)}}
    table = bench.format_table(report).splitlines()
    assert table[0].endswith("| training vs PyTorch | inference vs PyTorch |")
    assert table[2] == "| numba | 0.50 | 3,000 | 6,000 | 1.50x | 2.00x |"
    assert table[3] == "| pytorch-cpu | 0.50 | 2,000 | 3,000 | 1.00x | 1.00x |"
    without_reference = bench.format_table({"results": {"numba": row(3000.0, 6000.0)}})
    assert "vs PyTorch" not in without_reference


@pytest.mark.torch
def test_pytorch_reference_row(torch):
    report = bench.run(["numpy"], repeats=1, train_steps=1, infer_calls=1, layer_reps=1, settle=0, log=lambda s: None)
    assert list(report["results"]) == ["numpy", "pytorch-cpu"]
    assert report["results"]["pytorch-cpu"]["train_images_per_s"] > 0
    assert report["results"]["pytorch-cpu"]["layers"] == []


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--train-steps", "0"], ["--settle", "-1"],
                                  ["--settle", "nan"], ["--backends", "fortran"]])
def test_bad_options_get_usage(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "--no-torch", *argv])
    assert info.value.code == 2
    assert "usage: minicnn bench" in capsys.readouterr().err
