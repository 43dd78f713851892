"""Benchmark minicnn's backends side by side (and PyTorch, when installed, as a reference).

    python benchmarks/bench_backends.py --json bench.json --plot bench.png

See minicnn/bench.py for what is measured and how, minicnn/bench_report.py for the report,
minicnn/commands/bench.py for the options (those of ``minicnn bench``).
"""
import sys

from minicnn.cli import run_command
from minicnn.commands.bench import build_parser, run

if __name__ == "__main__":
    parser = build_parser()
    # Errors as `minicnn bench` reports them: one line, exit status 1 or 2, no traceback.
    sys.exit(run_command(parser, parser.parse_args(), run))
