"""Benchmark minicnn's backends side by side (and PyTorch, when installed, as a reference).

    python benchmarks/bench_backends.py --json bench.json --plot bench.png

See minicnn/bench.py for what is measured and how.
"""
from minicnn.bench import main

if __name__ == "__main__":
    main()
