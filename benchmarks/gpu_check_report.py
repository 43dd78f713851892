"""The figures of a GPU check (benchmarks/gpu_check.sh), read from the files its steps leave in OUTDIR.

    python benchmarks/gpu_check_report.py versions OUTDIR/versions.json   # the libraries and the GPU
    python benchmarks/gpu_check_report.py tests OUTDIR/gpu-tests.xml      # pytest -m gpu, no skip allowed
    python benchmarks/gpu_check_report.py detail OUTDIR STEP              # one step's figures, one line
    python benchmarks/gpu_check_report.py summary OUTDIR                  # OUTDIR/summary.json

``versions`` exits with status 1 when CuPy sees no GPU (the check cannot
pass then), and ``tests`` when a GPU test fails or skips (on the GPU machine a
skip means something the test needs is missing); a step whose files are missing gets the last line of its log as
its detail, so a failing step says why.
"""
from __future__ import annotations

import json
import platform
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from minicnn.serialization import write_json_atomic


def versions(path) -> int:
    """Write the libraries' versions and what CuPy and PyTorch see of the GPU to ``path``; 1 if CuPy sees none."""
    found = {"python": platform.python_version()}
    for name in ("numpy", "numba"):
        try:
            found[name] = __import__(name).__version__
        except ImportError as exc:
            found[name] = f"not importable: {exc}"
    gpu = False
    try:
        import cupy

        found["cupy"] = cupy.__version__
        runtime = cupy.cuda.runtime
        found["cupy_cuda_runtime"] = runtime.runtimeGetVersion()
        found["cuda_driver"] = runtime.driverGetVersion()
        found["gpu"] = runtime.getDeviceProperties(0)["name"].decode()
        found["gpu_memory_gib"] = round(runtime.getDeviceProperties(0)["totalGlobalMem"] / 2 ** 30, 1)
        gpu = True
    except Exception as exc:  # ImportError, or CUDARuntimeError without a driver or device
        found.setdefault("cupy", "not importable")
        found["cupy_error"] = f"{type(exc).__name__}: {exc}"
    try:
        import torch

        found["torch"] = torch.__version__
        found["torch_cuda"] = torch.version.cuda
        found["torch_sees_gpu"] = torch.cuda.is_available()
    except ImportError as exc:
        found["torch"] = f"not importable: {exc}"
    write_json_atomic(path, found)
    print(json.dumps(found, indent=1))
    return 0 if gpu else 1


def tests(junit_xml) -> int:
    """Run every GPU test (``pytest -m gpu``), its report in ``junit_xml``; 1 when one fails or skips."""
    import subprocess

    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
               f"--junitxml={junit_xml}", "tests"]
    print(" ".join(command), flush=True)
    code = subprocess.call(command)
    try:
        counts = _test_counts(Path(junit_xml))
    except (OSError, ElementTree.ParseError) as exc:
        print(f"no test report {junit_xml}: {exc}")
        return code or 1
    if counts["skipped"]:
        print(f"{counts['skipped']} GPU test(s) skipped: on a GPU machine every one must run (see the reasons above)")
    return 1 if code or counts["skipped"] or not counts["tests"] else 0


def _test_counts(junit_xml: Path) -> dict:
    suite = ElementTree.parse(junit_xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return f"no log {log}"
    return lines[-1].strip()[:200] if lines else "empty log"


def _tests(out: Path) -> str:
    c = _test_counts(out / "gpu-tests.xml")
    passed = c["tests"] - c["failures"] - c["errors"] - c["skipped"]
    return f"{passed} passed, {c['failures']} failed, {c['errors']} errors, {c['skipped']} skipped"


def _training(out: Path, name: str) -> str:
    folder = out / name
    history = json.loads((folder / "history.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    epochs = ", ".join(f"{s:.2f}" for s in history["seconds"])
    return (f"epoch seconds {epochs}; test accuracy {metrics['test_accuracy'] * 100:.2f}%; "
            f"backend {metrics['backend']}, batch {metrics['batch_size']}, augment {metrics['augment']}")


def _bench(out: Path) -> str:
    results = json.loads((out / "bench.json").read_text())["results"]
    def train(r):
        by_batch = r.get("train_images_per_s_by_batch") or {"64": r["train_images_per_s"]}
        return ", ".join(f"train b{b} {v:,.0f}" for b, v in by_batch.items())

    return "; ".join(f"{name} {train(r)}, infer {r['infer_images_per_s']:,.0f} img/s"
                     + (f", {r['gpu_memory_mib']:,.0f} MiB" if r.get("gpu_memory_mib") is not None else "")
                     for name, r in results.items())


def _versions(out: Path) -> str:
    v = json.loads((out / "versions.json").read_text())
    return ", ".join(f"{k} {v[k]}" for k in ("gpu", "cupy", "cupy_cuda_runtime", "torch", "torch_cuda") if k in v) \
        + (f"; {v['cupy_error']}" if "cupy_error" in v else "")


def detail(out, name: str) -> str:
    """One line of figures for step ``name`` of the check in ``out``; its log's last line when they are missing."""
    out = Path(out)
    readers = {"gpu-tests": lambda: _tests(out), "train-1epoch": lambda: _training(out, "train-1epoch"),
               "train-5epochs": lambda: _training(out, "train-5epochs"), "bench": lambda: _bench(out),
               "versions": lambda: _versions(out)}
    try:
        if name in readers:
            return readers[name]()
    except (OSError, ValueError, KeyError, TypeError, ElementTree.ParseError):
        pass
    if name == "nvidia-smi":
        log = (out / "nvidia-smi.log").read_text(errors="replace") if (out / "nvidia-smi.log").exists() else ""
        driver = next((line.strip(" |") for line in log.splitlines() if "Driver Version" in line), None)
        if driver:
            return " ".join(driver.split())
    return _last_line(out / f"{name}.log")


def summary(out) -> int:
    """OUTDIR/summary.json: every step's status, exit code, seconds, time limit, detail and log."""
    out = Path(out)
    steps = []
    for line in (out / "steps.tsv").read_text().splitlines():
        name, status, rc, seconds, limit = line.split("\t")
        steps.append({"step": name, "status": status, "exit": int(rc), "seconds": float(seconds),
                      "limit_s": int(limit), "detail": detail(out, name), "log": str(out / f"{name}.log")})
    write_json_atomic(out / "summary.json", {"steps": steps, "passed": all(s["status"] == "ok" for s in steps)})
    return 0


def main(argv) -> int:
    commands = {"versions": (versions, 1), "tests": (tests, 1), "detail": (None, 2), "summary": (summary, 1)}
    if not argv or argv[0] not in commands or len(argv) - 1 != commands[argv[0]][1]:
        print(f"usage: {Path(__file__).name} versions FILE | tests FILE | detail OUTDIR STEP | summary OUTDIR",
              file=sys.stderr)
        return 2
    if argv[0] == "detail":
        print(detail(argv[1], argv[2]))
        return 0
    return commands[argv[0]][0](argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
