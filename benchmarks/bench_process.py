"""Settings chosen once per process, side by side: Numba's threading layer, OpenBLAS's threads and glibc's
malloc thresholds.

    python benchmarks/bench_process.py                  # MnistCNN, batch 64 training, batch 1000 inference
    python benchmarks/bench_process.py --rounds 5 --json process.json

Numba picks its threads when it first starts them, OpenBLAS reads its settings when it is loaded
and glibc's malloc reads its tunables when the process starts, so each configuration runs in a
process of its own, with its environment:

    default               as minicnn runs: Numba's loops on GNU OpenMP with sleeping threads (minicnn
                          sets OMP_WAIT_POLICY=PASSIVE while the runtime loads, where it can;
                          else the workqueue layer), OpenBLAS's threads asleep soon after each
                          product (minicnn sets OPENBLAS_THREAD_TIMEOUT=4 when it loads before
                          NumPy), malloc as glibc starts it (a large array mapped afresh from the
                          system, and given back when freed)
    workqueue             Numba's own thread pool, whose threads sleep too, but whose calling thread
                          hands the whole loop to them and waits (NUMBA_THREADING_LAYER=workqueue)
    freed memory kept     glibc told to serve arrays up to 32 MB from its heap and keep what is
                          freed (GLIBC_TUNABLES mmap_threshold, trim_threshold): fewer page faults
    omp, short spin       GNU OpenMP's threads spinning for 3,000 rounds of their wait loop after each
                          loop before they sleep (GOMP_SPINCOUNT=3000, no wait policy): a loop that
                          follows soon finds them awake
    omp, spinning         GNU OpenMP told to keep its threads spinning after each loop, waiting for
                          the next (NUMBA_THREADING_LAYER=omp, OMP_WAIT_POLICY=ACTIVE)
    BLAS threads spinning OpenBLAS as it starts by default, its threads spinning for about 2^28 cycles
                          after each product (OPENBLAS_THREAD_TIMEOUT=28) while Numba's loops want
                          the same cores
    1 BLAS thread         OpenBLAS with no threads of its own (OPENBLAS_NUM_THREADS=1): the products
                          run on the calling thread alone

The rounds visit the configurations in turn, so a machine that speeds up or slows down affects
them alike; each figure is the median over the rounds of one process's median.  Each process
also counts the page faults of a training step and times one parallel loop on a small array
(im2col of one conv2 input image), where starting the threads is most of the time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from minicnn.cli import run_numba_script
from minicnn.paths import path_argument

#: Each configuration's changes to the environment (None: the variable removed), from minicnn's own
#: settings (every variable that one of them changes removed).
_AS_MINICNN = dict.fromkeys(("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY", "GLIBC_TUNABLES", "OPENBLAS_THREAD_TIMEOUT",
                             "OPENBLAS_NUM_THREADS", "GOMP_SPINCOUNT"))
_KEEP = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"
CONFIGS = {
    "default": dict(_AS_MINICNN),
    "workqueue": {**_AS_MINICNN, "NUMBA_THREADING_LAYER": "workqueue"},
    "freed memory kept": {**_AS_MINICNN, "GLIBC_TUNABLES": _KEEP},
    "omp, short spin": {**_AS_MINICNN, "NUMBA_THREADING_LAYER": "omp", "GOMP_SPINCOUNT": "3000"},
    "omp, spinning": {**_AS_MINICNN, "NUMBA_THREADING_LAYER": "omp", "OMP_WAIT_POLICY": "ACTIVE"},
    "BLAS threads spinning": {**_AS_MINICNN, "OPENBLAS_THREAD_TIMEOUT": "28"},
    "1 BLAS thread": {**_AS_MINICNN, "OPENBLAS_NUM_THREADS": "1"},
}

# What one process measures; it prints one JSON line.
_CHILD = """
import json, resource, statistics, sys
import minicnn  # before NumPy, as the command line loads them
import numpy as np
from minicnn import bench
minicnn.set_backend("numba")
from minicnn.backend import numba_kernels
import numba

steps = int(sys.argv[1])
x, y = bench._mnist_batch(bench.INFER_BATCH)
runner = bench._Minicnn("numba", x, y)

median_seconds = bench.median_seconds

for _ in range(3):
    runner.train_step()
runner.infer()
image = np.random.default_rng(0).standard_normal((1, 32, 14, 14), dtype=np.float32)
cols = np.empty((288, 1, 196), np.float32)
loop = lambda: numba_kernels._im2col(image, 3, 3, 1, 1, 1, 1, 14, 14, np.float32(0), cols)
loop()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
train_s = median_seconds(runner.train_step, steps)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
print(json.dumps({
    "layer": numba.threading_layer(),
    "page_faults_per_step": faults,
    "train_images_per_s": bench.TRAIN_BATCH / train_s,
    "infer_images_per_s": bench.INFER_BATCH / median_seconds(runner.infer, 3),
    "small_loop_ms": median_seconds(loop, 101) * 1e3,
}))
"""


def measure(config: str, steps: int) -> dict:
    """One process with ``config``'s environment: its layer, training and inference rates, small-loop time."""
    env = dict(os.environ)
    for name, value in CONFIGS[config].items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    done = subprocess.run([sys.executable, "-c", _CHILD, str(steps)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{config}: the measuring process failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(rounds=3, steps=20) -> dict:
    from minicnn import bench

    seen = {c: [] for c in CONFIGS}
    for _ in range(rounds):
        for c in CONFIGS:
            seen[c].append(measure(c, steps))
    return {
        "machine": bench.machine_description(), "rounds": rounds, "steps": steps,
        "configs": {c: {"layer": runs[0]["layer"],
                        **{k: statistics.median(r[k] for r in runs)
                           for k in ("train_images_per_s", "infer_images_per_s", "small_loop_ms",
                                     "page_faults_per_step")}}
                    for c, runs in seen.items()},
    }


def format_report(r) -> str:
    default = r["configs"]["default"]
    lines = [f"Machine: {r['machine']}; medians of {r['rounds']} processes of {r['steps']} steps each", "",
             "| configuration | layer | training img/s (batch 64) | vs default | inference img/s (batch 1000) "
             "| vs default | page faults per step | one small parallel loop (ms) |", "|---|---|---|---|---|---|---|---|"]
    for c, m in r["configs"].items():
        lines.append(f"| {c} | {m['layer']} | {m['train_images_per_s']:,.0f} | "
                     f"{m['train_images_per_s'] / default['train_images_per_s']:.2f}x | "
                     f"{m['infer_images_per_s']:,.0f} | {m['infer_images_per_s'] / default['infer_images_per_s']:.2f}x | "
                     f"{m['page_faults_per_step']:,.0f} | {m['small_loop_ms']:.3f} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_process.py", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="processes per configuration (default 3)")
    p.add_argument("--steps", type=int, default=20, help="training steps per process (default 20)")
    p.add_argument("--json", type=path_argument, help="write the report as JSON here")
    return p


def main(argv=None) -> int:
    return run_numba_script(build_parser(), argv, lambda args: run(args.rounds, args.steps), format_report)


if __name__ == "__main__":
    sys.exit(main())
