"""The backend benchmark (minicnn.bench, `minicnn bench`) end to end, kept tiny: it checks what the
benchmark reports and writes, not how fast anything is."""
import ctypes.util
import io
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import minicnn
from minicnn import bench, bench_report, cli
from minicnn.commands import bench as bench_command

LAYERS = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1", "relu3", "fc2", "log_softmax"]
TINY = ["--repeats", "1", "--train-steps", "1", "--settle", "0"]
# One image through MnistCNN, counted by hand (2 operations per multiply-add):
# conv1 2*28*28*32*(1*3*3), conv2 2*14*14*64*(32*3*3), fc1 2*3136*128, fc2 2*128*10.
MNIST_CNN_FLOPS = 2 * 784 * 32 * 9 + 2 * 196 * 64 * 288 + 2 * 3136 * 128 + 2 * 128 * 10


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
    assert numpy_row["device"] == "cpu"
    [ceiling] = report["ceilings"]
    assert ceiling["device"] == "cpu" and ceiling["matmul_flops_per_s"] > 0
    assert ceiling["train_flops_per_step"] == 3 * 64 * MNIST_CNN_FLOPS
    assert ceiling["infer_flops_per_batch"] == 1000 * MNIST_CNN_FLOPS
    assert ceiling["train_images_per_s"] == pytest.approx(64 * ceiling["matmul_flops_per_s"] / (3 * 64 * MNIST_CNN_FLOPS))
    assert ceiling["shapes_train_s"] > 0 and ceiling["shapes_train_images_per_s"] == pytest.approx(64 / ceiling["shapes_train_s"])
    assert ceiling["shapes_infer_images_per_s"] == pytest.approx(1000 / ceiling["shapes_infer_s"])
    assert "Ceiling on cpu set by the matrix products alone" in out
    with Image.open(plot_path) as image:
        assert image.format == "PNG" and image.width > 500 and image.height > 200
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"
    assert minicnn.get_backend().name == before, "the benchmark must restore the active backend"


def test_table_gives_ratios_against_pytorch():
    def row(train, infer):
        return {"first_step_s": 0.5, "train_images_per_s": train, "infer_images_per_s": infer}

    report = {"results": {"numba": row(3000.0, 6000.0), "pytorch-cpu": row(2000.0, 3000.0)}}
    table = bench_report.format_table(report).splitlines()
    assert table[0].endswith("| training vs PyTorch | inference vs PyTorch |")
    assert table[2] == "| numba | 0.50 | 3,000 | 6,000 | 1.50x | 2.00x |"
    assert table[3] == "| pytorch-cpu | 0.50 | 2,000 | 3,000 | 1.00x | 1.00x |"
    without_reference = bench_report.format_table({"results": {"numba": row(3000.0, 6000.0)}})
    assert "vs PyTorch" not in without_reference


@pytest.mark.torch
def test_pytorch_reference_row(torch):
    report = bench.run(["numpy"], repeats=1, train_steps=1, infer_calls=1, layer_reps=1, settle=0, log=lambda s: None)
    assert list(report["results"]) == ["numpy", "pytorch-cpu"]
    assert report["results"]["pytorch-cpu"]["train_images_per_s"] > 0
    assert report["results"]["pytorch-cpu"]["layers"] == []


@pytest.mark.torch
def test_the_pytorch_reference_runs_in_a_process_of_its_own(torch):
    """minicnn's Numba backend loads GNU OpenMP with sleeping threads, which PyTorch would share in one
    process: the benchmark's process never imports PyTorch, and the report still names its version."""
    code = ("import sys; from minicnn import bench; "
            "r = bench.run(['numpy'], repeats=1, train_steps=1, infer_calls=1, layer_reps=1, settle=0, "
            "log=lambda s: None); print('torch' in sys.modules, r['versions']['torch'], "
            "r['results']['pytorch-cpu']['train_images_per_s'] > 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", torch.__version__, "True"]


def test_the_pytorch_process_reports_a_failed_command_and_its_own_end():
    commands = io.StringIO(json.dumps({"op": "warm_up", "train_batches": [64]}) + "\n"
                           + json.dumps({"op": "fly"}) + "\n")
    replies = io.StringIO()
    bench._serve_torch(commands, replies)
    first, second = (json.loads(line) for line in replies.getvalue().splitlines())
    assert first["error"].startswith("AttributeError")  # warm_up before start: no runner yet
    assert second == {"error": "unknown command 'fly'"}
    child = bench._TorchProcess(0, device=None)  # nothing asked yet
    child.close()
    with pytest.raises(RuntimeError, match=r"the PyTorch reference process ended \(exit code .*\) before answering "
                                           r"'train_seconds'"):
        child.train_seconds(64, 1)


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--train-steps", "0"], ["--settle", "-1"],
                                  ["--settle", "nan"], ["--settle", "inf"], ["--backends", "fortran"]])
def test_bad_options_get_usage(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "--no-torch", *argv])
    assert info.value.code == 2
    assert "usage: minicnn bench" in capsys.readouterr().err


def test_matmul_flops_counts_the_products_of_conv_and_linear_layers():
    assert MNIST_CNN_FLOPS == 8_482_304
    model = minicnn.models.MnistCNN(seed=0).eval()
    assert bench.matmul_flops(model, np.zeros((1, 1, 28, 28), np.float32)) == MNIST_CNN_FLOPS
    assert bench.matmul_flops(model, np.zeros((3, 1, 28, 28), np.float32)) == 3 * MNIST_CNN_FLOPS
    # Stride, padding and a non-square kernel: a 5x5 input padded by 1 gives a 3x3 output
    # for a (2, 3) kernel at stride 2, so 2 * 9 outputs * 3 channels * (2*2*3) = 648; ReLU adds nothing.
    odd = minicnn.nn.Sequential(minicnn.nn.Conv2d(2, 3, (2, 3), stride=2, padding=1), minicnn.nn.ReLU())
    assert bench.matmul_flops(odd, np.zeros((1, 2, 5, 5), np.float32)) == 648


def test_matmul_rate_is_a_positive_speed():
    rate = bench.matmul_rate(n=64, reps=3)
    assert np.isfinite(rate) and rate > 1e6  # any CPU multiplies 64x64 matrices faster than 1 MFLOP/s


def test_ceiling_lines_give_each_runner_its_share():
    report = {"results": {"numba": {"device": "cpu", "train_images_per_s": 1000.0, "infer_images_per_s": 2000.0},
                          "pytorch-cpu": {"device": "cpu", "train_images_per_s": 1250.0, "infer_images_per_s": 2500.0},
                          "cupy": {"device": "cuda", "train_images_per_s": 9e4, "infer_images_per_s": 9e5}},
              "ceilings": [{"device": "cpu", "matmul_size": 1024, "matmul_reps": 5, "matmul_flops_per_s": 70e9, "train_flops_per_step": 1.63e9,
                            "infer_flops_per_batch": 8.48e9, "train_images_per_s": 2500.0,
                            "infer_images_per_s": 8000.0}]}
    lines = bench_report.format_ceilings(report).splitlines()
    assert lines[1] == ("Ceiling on cpu set by the matrix products alone "
                        "(float32 product of two 1024x1024 matrices: 70 GFLOP/s, median of 5):")
    assert lines[2] == ("  training:   1.63 GFLOP per step of 64 -> at most 2,500 img/s "
                        "(numba 40%, pytorch-cpu 50%)")
    assert lines[3] == ("  inference:  8.48 GFLOP per batch of 1000 -> at most 8,000 img/s "
                        "(numba 25%, pytorch-cpu 31%)")
    assert len(lines) == 4, "the cuda backend has no ceiling in this report, so no line of its own"


def test_matmul_shapes_are_the_products_of_a_training_step():
    from minicnn import models

    shapes = bench.matmul_shapes(models.MnistCNN(seed=0).eval(), np.zeros((64, 1, 28, 28), np.float32))
    assert shapes[:6] == [(32, 9, 50176), (32, 50176, 9), (9, 32, 50176),
                          (64, 288, 12544), (64, 12544, 288), (288, 64, 12544)]
    assert shapes[6:] == [(64, 3136, 128), (128, 64, 3136), (64, 128, 3136),
                          (64, 128, 10), (10, 64, 128), (64, 10, 128)]
    assert sum(2 * m * k * n for m, k, n in shapes) == 3 * 64 * MNIST_CNN_FLOPS
    inference = bench.matmul_shapes(models.MnistCNN(seed=0).eval(), np.zeros((2, 1, 28, 28), np.float32),
                                    training=False)
    assert inference == [(32, 9, 1568), (64, 288, 392), (2, 3136, 128), (2, 128, 10)]


def test_products_time_sums_one_time_per_shape():
    one = bench.products_time([(8, 8, 8)], reps=3)
    assert 0 < one < 1 and bench.products_time([], reps=3) == 0


def test_ceiling_on_real_shapes_gives_each_runner_its_share():
    report = {"results": {"numba": {"device": "cpu", "train_images_per_s": 1000.0, "infer_images_per_s": 2000.0}},
              "ceilings": [{"device": "cpu", "matmul_size": 1024, "matmul_reps": 5, "matmul_flops_per_s": 70e9,
                            "train_flops_per_step": 1.63e9, "infer_flops_per_batch": 8.48e9,
                            "train_images_per_s": 2500.0, "infer_images_per_s": 8000.0,
                            "shapes_train_s": 0.032, "shapes_infer_s": 0.25,
                            "shapes_train_images_per_s": 2000.0, "shapes_infer_images_per_s": 4000.0}]}
    lines = bench_report.format_ceilings(report).splitlines()
    assert lines[4].startswith("The same products on the network's own shapes")
    assert lines[5] == "  training:   32.0 ms per step of 64 -> at most 2,000 img/s (numba 50%)"
    assert lines[6] == "  inference:  250.0 ms per batch of 1000 -> at most 4,000 img/s (numba 50%)"


@pytest.mark.parametrize("argv, message", [
    (["--settle", "inf"], "--settle must be a finite number of seconds >= 0, got inf"),
    (["--repeats", "0"], "--repeats must be at least 1, got 0"),
    (["--json", "{tmp}"], "--json {tmp}: is a folder, expected a file name"),
    (["--json", "{tmp}/file/bench.json"], "--json {tmp}/file/bench.json: {tmp}/file is a file, not a folder"),
    (["--plot", "{tmp}/file/bench.png"], "--plot {tmp}/file/bench.png: {tmp}/file is a file, not a folder"),
    (["--plot", "{tmp}/bench.xyz"], "--plot {tmp}/bench.xyz: matplotlib cannot write .xyz files; expected one of "),
])
def test_options_and_output_paths_are_checked_before_measuring(argv, message, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "--backends", "numpy", "--no-torch", *TINY, *(a.format(tmp=tmp_path) for a in argv)])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "", "nothing measured"
    assert captured.err.strip().splitlines()[-1].startswith(f"minicnn bench: error: {message.format(tmp=tmp_path)}")
    if argv[0] == "--plot" and "xyz" in argv[1]:
        assert ".png" in captured.err and ".svg" in captured.err


@pytest.mark.skipif("cupy" in minicnn.available_backends(), reason="CuPy loads here, so --backends cupy is no error")
def test_unavailable_backend_is_one_line_before_measuring(capsys, without_cupy):
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "--backends", "numpy", "cupy", "--no-torch", *TINY])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("minicnn bench: error: --backends cupy: backend 'cupy' needs CuPy")
    assert captured.err.endswith(f". Available here: {', '.join(minicnn.available_backends())}\n")


def test_benchmark_script_reports_errors_in_one_line(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_backends.py"
    result = subprocess.run([sys.executable, str(script), "--no-torch", *TINY, "--plot", str(tmp_path / "b.xyz")],
                            capture_output=True, text=True, env=os.environ)
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"bench_backends.py: error: --plot {tmp_path / 'b.xyz'}: matplotlib cannot write .xyz files")


def test_further_training_batch_sizes_get_their_own_figures_and_column(capsys):
    report = bench_command.main(["--backends", "numpy", "--no-torch", *TINY, "--train-batches", "8", "64"])
    row = report["results"]["numpy"]
    assert report["train_batches"] == [64, 8] and set(row["train_images_per_s_by_batch"]) == {"64", "8"}
    assert row["train_images_per_s"] == row["train_images_per_s_by_batch"]["64"]
    assert row["gpu_memory_mib"] is None  # a host backend holds no GPU memory
    assert "| backend | first step (s) | training img/s (batch 64) | training img/s (batch 8) |" in capsys.readouterr().out


def test_gpu_rows_are_compared_with_pytorch_on_the_gpu():
    def row(device, train, infer, memory=None):
        return {"device": device, "first_step_s": 1.0, "train_images_per_s": train, "infer_images_per_s": infer,
                "train_images_per_s_by_batch": {"64": train, "256": 2 * train}, "gpu_memory_mib": memory}

    report = {"train_batches": [64, 256], "results": {
        "cupy": row("cuda", 30000.0, 200000.0, 512.0), "pytorch-cpu": row("cpu", 1000.0, 2000.0),
        "pytorch-cuda": row("cuda", 20000.0, 400000.0, 300.0)}}
    table = bench_report.format_table(report).splitlines()
    assert table[0] == ("| backend | first step (s) | training img/s (batch 64) | training img/s (batch 256) | "
                        "inference img/s (batch 1000) | GPU memory (MiB) | training vs PyTorch | "
                        "inference vs PyTorch |")
    assert table[1] == "|---|---|---|---|---|---|---|---|"
    assert table[2] == "| cupy | 1.00 | 30,000 | 60,000 | 200,000 | 512 | 1.50x | 0.50x |"
    assert table[3] == "| pytorch-cpu | 1.00 | 1,000 | 2,000 | 2,000 | | 1.00x | 1.00x |"


def test_event_timing_reads_the_device_clock_between_two_events():
    class Event:
        log = []

        def __init__(self, **kwargs):
            self.kwargs = kwargs

        def record(self):
            Event.log.append(("record", self))

        def synchronize(self):
            Event.log.append(("synchronize", self))

    def get_elapsed_time(start, end):
        assert Event.log[0] == ("record", start) and Event.log[-2:] == [("record", end), ("synchronize", end)]
        return 250.0

    # cupy.cuda's interface: Event(), get_elapsed_time(start, end) in milliseconds
    CupyCuda = type("CupyCuda", (), {"Event": Event, "get_elapsed_time": staticmethod(get_elapsed_time)})

    calls = []
    assert bench._event_seconds(CupyCuda, lambda: calls.append(len(Event.log)), 3) == 0.25
    assert calls == [1, 1, 1], "the calls run between the two events"


@pytest.mark.torch
def test_pytorch_on_cuda_says_no_cuda_where_there_is_none(torch, capsys):
    if torch.cuda.is_available():
        pytest.skip("PyTorch sees a GPU here")
    logged = []
    report = bench.run(["numpy"], repeats=1, train_steps=1, infer_calls=1, layer_reps=1, settle=0,
                       log=logged.append, torch_devices=["cuda"])
    assert "pytorch-cuda" not in report["results"]
    assert any(line.startswith("pytorch-cuda: skipped, no CUDA: PyTorch") for line in logged), logged
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "--backends", "numpy", *TINY, "--torch-devices", "cuda"])
    assert info.value.code == 2
    assert "minicnn bench: error: --torch-devices cuda: no CUDA: PyTorch" in capsys.readouterr().err


@pytest.mark.skipif("cupy" in minicnn.available_backends(), reason="CuPy loads here, so --cuda-graph is no error")
def test_cuda_graph_without_cupy_is_one_line_before_measuring(capsys, without_cupy):
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "--backends", "numpy", "--no-torch", *TINY, "--cuda-graph"])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("minicnn bench: error: --cuda-graph: backend 'cupy' needs CuPy")


def _benchmark_module(name):
    """A script of benchmarks/ imported as a module."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _levers_module():
    return _benchmark_module("bench_numba_levers")


def test_numba_levers_benchmark_measures_every_configuration_and_puts_the_backend_back(tmp_path, capsys):
    pytest.importorskip("numba", reason="Numba is not installed: the levers are the numba backend's")
    levers = _levers_module()
    backend = minicnn.backend.load_backend("numba")
    before = dict(backend.overrides)
    from minicnn.backend import numba_conv

    direct_max_k = numba_conv._DIRECT_MAX_K
    out = tmp_path / "levers.json"
    assert levers.main(["--rounds", "1", "--steps", "1", "--no-torch", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    configs = set(report["train_images_per_s"])
    assert {"reference conv", "+ no image grad", "+ rows", "+ direct conv1", "+ one Adam pass", "+ ReLU in the conv",
            "+ pool in the conv", "+ Winograd conv2"} <= configs
    assert "+ rows" in report["infer_images_per_s"] and "+ Winograd conv2" not in report["infer_images_per_s"]
    assert all(rate > 0 for rate in report["train_images_per_s"].values())
    assert "+ no image grad" not in report["infer_images_per_s"]  # no backward in inference
    assert "+ one Adam pass" not in report["infer_images_per_s"] and "+ fused inference" not in configs
    assert "+ fused inference" in report["infer_images_per_s"]
    assert set(report["optimizer_step_ms"]) == {"a kernel per tensor", "one pass"}
    assert set(report["conv2_product_ms"]) == {"(OC, K) @ (K, N*P)", "(N*P, K) @ (K, OC)"}
    assert all(ms > 0 for ms in report["optimizer_step_ms"].values())
    steps = {name: (f, b) for name, f, b in report["steps_ms"]}
    assert {"conv1 -> relu1 -> pool1", "conv2 -> relu2 -> pool2", "fc1", "loss, forward and backward",
            "optimizer step"} <= set(steps)
    assert steps["optimizer step"][1] is None
    assert all(f > 0 for f, _ in steps.values()) and steps["conv2 -> relu2 -> pool2"][1] > 0
    table = capsys.readouterr().out
    assert "| + direct conv1 |" in table and "| + fused inference | (as above) |" in table
    assert "Adam's step alone" in table and "| optimizer step |" in table
    assert backend.overrides == before and numba_conv._DIRECT_MAX_K == direct_max_k and numba_conv._WINOGRAD


def test_numba_levers_configurations_switch_what_runs():
    pytest.importorskip("numba", reason="Numba is not installed: the levers are the numba backend's")
    levers = _levers_module()
    from minicnn.backend import numba_conv

    backend = minicnn.backend.load_backend("numba")
    fused, many = "conv2d_relu_maxpool2d", "adam_update_many"
    for name in ("reference conv", "+ no image grad"):
        with levers.configured(backend, name):
            assert not {"conv2d", "conv2d_backward", fused, many} & set(backend.overrides)
    with levers.configured(backend, "+ rows"):
        assert not numba_conv._uses_direct(9, (1, 1)) and fused not in backend.overrides
        assert backend.overrides["conv2d"] is numba_conv.conv2d and not numba_conv._WINOGRAD
    with levers.configured(backend, "+ direct conv1"):
        assert numba_conv._uses_direct(9, (1, 1)) and fused not in backend.overrides
    with levers.configured(backend, "+ fused inference"):
        assert backend.overrides[fused] is numba_conv.conv2d_relu_maxpool2d and many not in backend.overrides
    with levers.configured(backend, "+ one Adam pass"):
        assert {fused, many} <= set(backend.overrides) and "conv2d_relu" not in backend.overrides
    with levers.configured(backend, "+ ReLU in the conv"):
        assert backend.overrides["conv2d_relu_backward"] is numba_conv.conv2d_relu_backward
        assert "conv2d_relu_maxpool2d_train" not in backend.overrides
    with levers.configured(backend, "+ pool in the conv"):
        assert backend.overrides["conv2d_relu_maxpool2d_train"] is numba_conv.conv2d_relu_maxpool2d_train
        assert not numba_conv._WINOGRAD
    with levers.configured(backend, "+ Winograd conv2"):
        assert numba_conv._WINOGRAD
    assert backend.overrides["conv2d"] is numba_conv.conv2d and numba_conv._uses_direct(9, (1, 1))
    assert numba_conv._WINOGRAD and {fused, many} <= set(backend.overrides)
    assert backend.overrides["conv2d"] is numba_conv.conv2d and numba_conv._uses_direct(9, (1, 1))
    assert {fused, many} <= set(backend.overrides)


@pytest.mark.parametrize("argv, message", [
    (["--rounds", "0"], "--rounds must be at least 1, got 0"),
    (["--steps", "-2"], "--steps must be at least 1, got -2"),
])
def test_numba_levers_benchmark_refuses_bad_options_before_measuring(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        _levers_module().main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_numba_levers_benchmark_checks_its_json_path_first(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _levers_module().main(["--json", str(tmp_path)])  # a folder: refused before minutes of measuring
    assert exc.value.code == 2 and f"--json {tmp_path}: is a folder, expected a file name" in capsys.readouterr().err


def _process_module():
    return _benchmark_module("bench_process")


def test_process_benchmark_runs_each_configuration_in_its_own_process_and_reports_them(tmp_path, capsys, monkeypatch):
    pytest.importorskip("numba", reason="Numba is not installed: the layers are Numba's")
    process = _process_module()
    real = process.measure
    calls = []

    def measure(config, steps):
        calls.append(config)
        if config != "default":  # one real process checks the child
            return {"layer": "stand-in", "train_images_per_s": 100.0, "infer_images_per_s": 400.0, "small_loop_ms": 0.05,
                    "page_faults_per_step": 300.0}
        return real(config, steps)

    monkeypatch.setattr(process, "measure", measure)
    out = tmp_path / "process.json"
    assert process.main(["--rounds", "2", "--steps", "1", "--json", str(out)]) == 0
    assert calls == list(process.CONFIGS) * 2  # the configurations in turn, round after round
    report = json.loads(out.read_text())
    measured = report["configs"]["default"]
    # The child process ran as minicnn sets Numba up: OpenMP where the runtime loads, else workqueue.
    assert measured["layer"] == ("omp" if ctypes.util.find_library("gomp") else "workqueue")
    assert measured["page_faults_per_step"] >= 0
    assert measured["train_images_per_s"] > 0 and measured["infer_images_per_s"] > 0 and measured["small_loop_ms"] > 0
    table = capsys.readouterr().out
    assert "| workqueue | stand-in | 100 |" in table and "| freed memory kept | stand-in | 100 |" in table


def test_process_benchmark_refuses_bad_options_before_measuring(capsys):
    with pytest.raises(SystemExit) as exc:
        _process_module().main(["--rounds", "0"])
    assert exc.value.code == 2 and "--rounds must be at least 1, got 0" in capsys.readouterr().err

