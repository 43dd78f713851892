"""Idle connections against ``minicnn serve``: how many threads they take, the server's CPU, and whether the
page still answers.

    python benchmarks/bench_serve_connections.py                   # 200 idle connections, ulimit -n 128
    python benchmarks/bench_serve_connections.py --idle 300 --open-files 1024 --max-connections 64
    PYTHONPATH=/path/to/another/minicnn python benchmarks/bench_serve_connections.py   # another version

It starts ``minicnn serve`` (an untrained MnistCNN, numpy backend) on a free loopback port in a process
whose ``ulimit -n`` is ``--open-files``, asks for the page, opens ``--idle`` connections that send
nothing, and reports, after 1 s and again after the server's idle limit (20 s) has passed: the server's
thread count, its CPU use over 3 s, and the first line of its answer to ``GET /`` (or that none came
within 5 s). Every socket is on 127.0.0.1 and closed at the end; the server is stopped.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def page(port: int, wait: float = 5.0) -> str:
    """The first line of the server's answer to ``GET /``, or why there was none within ``wait`` s."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
            sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            return sock.recv(64).split(b"\r\n")[0].decode() or "closed without an answer"
    except OSError as exc:
        return f"no answer ({type(exc).__name__})"


def threads_and_cpu(pid: int, seconds: float = 3.0) -> tuple[int, float]:
    """The process's thread count and its CPU use (percent of one core) over ``seconds``."""
    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before = cpu()
    time.sleep(seconds)
    used = cpu() - before
    threads = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("Threads:"))
    return threads, 100 * used / seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=200, help="idle connections to open (default 200)")
    parser.add_argument("--open-files", type=int, default=128, help="the server's ulimit -n (default 128)")
    parser.add_argument("--max-connections", type=int, help="passed to minicnn serve (default: its own)")
    args = parser.parse_args(argv)

    import minicnn
    from minicnn import models

    port = _free_port()
    with tempfile.TemporaryDirectory() as folder:
        weights = minicnn.save(models.MnistCNN(seed=0), Path(folder) / "model.npz")
        command = [sys.executable, "-c", "import sys; from minicnn import cli; sys.exit(cli.main())",
                   "serve", str(weights), "--port", str(port)]
        if args.max_connections:
            command += ["--max-connections", str(args.max_connections)]
        env = dict(os.environ, MINICNN_BACKEND="numpy",
                   PYTHONPATH=os.pathsep.join([str(Path(minicnn.__file__).parents[1])]
                                              + os.environ.get("PYTHONPATH", "").split(os.pathsep)))
        server = subprocess.Popen(["bash", "-c", f'ulimit -n {args.open_files} && exec "$@"', "serve", *command],
                                  cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        idle: list[socket.socket] = []
        try:
            print(server.stdout.readline().strip())
            print(f"minicnn {minicnn.__file__}, server ulimit -n {args.open_files}")
            print(f"GET / before: {page(port)}")
            for _ in range(args.idle):
                try:
                    idle.append(socket.create_connection(("127.0.0.1", port), timeout=2))
                except OSError:
                    break
            time.sleep(1)
            threads, cpu = threads_and_cpu(server.pid)
            print(f"{len(idle)} idle connections: {threads} threads, server CPU {cpu:.0f}%, GET /: {page(port)}")
            time.sleep(21)
            threads, cpu = threads_and_cpu(server.pid)
            print(f"25 s later: {threads} threads, server CPU {cpu:.0f}%, GET /: {page(port)}")
        finally:
            for sock in idle:
                sock.close()
            server.terminate()
            server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
