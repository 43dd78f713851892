"""The benchmark's report: the tables and the chart of a :func:`minicnn.bench.run` result.

:func:`minicnn.bench.run` measures and returns the report as a dict (the
JSON that ``--json`` writes); the functions here only read that dict.  The
command that runs both, ``minicnn bench`` (and ``benchmarks/bench_backends.py``),
is minicnn/commands/bench.py.
"""
from __future__ import annotations

from minicnn.bench import INFER_BATCH, TRAIN_BATCH


def describe(report: dict) -> str:
    """The machine and the library versions, in one line: ``AMD EPYC, 2 cores; Python 3.11.7, numpy 2.4.6, ...``."""
    return f"{report['machine']}; " + ", ".join(
        f"{'Python' if name == 'python' else name} {version}" for name, version in report.get("versions", {}).items())


def format_table(report: dict) -> str:
    """The summary as a Markdown table, with ratios against PyTorch where measured.

    A row's ratios are against PyTorch on the row's own device (``pytorch-cuda``
    for the GPU rows when it was measured), else against ``pytorch-cpu``.
    Further training batch sizes and the GPU memory get columns when measured.
    """
    results = report["results"]
    has_ref = any(name.startswith("pytorch-") for name in results)
    extra = [b for b in report.get("train_batches", [TRAIN_BATCH]) if int(b) != TRAIN_BATCH]
    memory = any(r.get("gpu_memory_mib") is not None for r in results.values())
    header = ("| backend | first step (s) | training img/s (batch 64) | "
              + "".join(f"training img/s (batch {b}) | " for b in extra) + "inference img/s (batch 1000) |"
              + (" GPU memory (MiB) |" if memory else "")
              + (" training vs PyTorch | inference vs PyTorch |" if has_ref else ""))
    lines = [header, "|" + "---|" * header.count(" |")]
    for name, r in results.items():
        row = (f"| {name} | {r['first_step_s']:.2f} | {r['train_images_per_s']:,.0f} | "
               + "".join(f"{r.get('train_images_per_s_by_batch', {}).get(str(b), float('nan')):,.0f} | "
                         for b in extra)
               + f"{r['infer_images_per_s']:,.0f} |")
        if memory:
            row += f" {r['gpu_memory_mib']:,.0f} |" if r.get("gpu_memory_mib") is not None else " |"
        ref = results.get(f"pytorch-{r.get('device', 'cpu')}") or results.get("pytorch-cpu")
        if has_ref and ref:
            row += (f" {r['train_images_per_s'] / ref['train_images_per_s']:.2f}x |"
                    f" {r['infer_images_per_s'] / ref['infer_images_per_s']:.2f}x |")
        elif has_ref:
            row += " | |"
        lines.append(row)
    return "\n".join(lines)


def format_ceilings(report: dict) -> str:
    """What the matrix products alone allow on each device, and the share of it each runner reaches."""
    out = []
    for c in report.get("ceilings", []):
        here = {name: r for name, r in report["results"].items() if r.get("device") == c["device"]}
        n = c["matmul_size"]
        out.append(f"\nCeiling on {c['device']} set by the matrix products alone (float32 product of two "
                   f"{n}x{n} matrices: {c['matmul_flops_per_s'] / 1e9:,.0f} GFLOP/s, median of {c['matmul_reps']}):")
        for key, what, flops, per in (
                ("train_images_per_s", "training", c["train_flops_per_step"], f"step of {TRAIN_BATCH}"),
                ("infer_images_per_s", "inference", c["infer_flops_per_batch"], f"batch of {INFER_BATCH}")):
            shares = ", ".join(f"{name} {r[key] / c[key]:.0%}" for name, r in here.items())
            out.append(f"  {what + ':':<11} {flops / 1e9:.2f} GFLOP per {per} -> at most {c[key]:,.0f} img/s"
                       + (f" ({shares})" if shares else ""))
        if "shapes_train_s" in c:
            out.append("The same products on the network's own shapes (such as (64, 288) @ (288, 12544)), timed one by one:")
            for key, what, seconds, per in (
                    ("train_images_per_s", "training", c["shapes_train_s"], f"step of {TRAIN_BATCH}"),
                    ("infer_images_per_s", "inference", c["shapes_infer_s"], f"batch of {INFER_BATCH}")):
                ceiling = c["shapes_" + key]
                shares = ", ".join(f"{name} {r[key] / ceiling:.0%}" for name, r in here.items())
                out.append(f"  {what + ':':<11} {seconds * 1e3:.1f} ms per {per} -> at most {ceiling:,.0f} img/s"
                           + (f" ({shares})" if shares else ""))
    return "\n".join(out)


def format_layers(report: dict) -> str:
    out = []
    for name, r in report["results"].items():
        if not r["layers"]:
            continue
        out.append(f"\n{name}: per-layer time at batch 64 (ms, median)")
        out.append(f"  {'layer':<12} {'type':<11} {'forward':>8} {'backward':>9}")
        for row in r["layers"]:
            out.append(f"  {row['layer']:<12} {row['type']:<11} {row['forward_ms']:8.2f} {row['backward_ms']:9.2f}")
    return "\n".join(out)


def plot(report: dict, path) -> None:
    """Bar charts of training and inference throughput."""
    from minicnn.plots import new_figure, save_figure

    names = list(report["results"])
    fig = new_figure(9, 3.8)
    for ax, key, title in zip(fig.subplots(1, 2), ("train_images_per_s", "infer_images_per_s"),
                              (f"training, batch {TRAIN_BATCH}", f"inference, batch {INFER_BATCH}")):
        values = [report["results"][n][key] for n in names]
        bars = ax.bar(names, values, color="tab:blue")
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=8)
        ax.set_title(title)
        ax.set_ylabel("images / second")
        ax.tick_params(axis="x", labelrotation=20)
    fig.suptitle(describe(report), fontsize=8)
    save_figure(fig, path)
