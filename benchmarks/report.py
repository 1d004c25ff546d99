"""Run the benchmark suite and write the report under benchmarks/results/:
<device>.json, <device>.md and <device>.png (samples/s vs batch size per implementation).

    python benchmarks/report.py [--rounds 7] [--seconds 0.4] [--out benchmarks/results]

Training steps and convolutions are timed in separate long-lived worker processes (NumPy and
PyTorch never share one), taking turns A B B A with an idle gap before each turn; ratios are
medians of per-round ratios, so that only measurements seconds apart are compared. The kernel
benchmarks run through pytest-benchmark (benchmarks/test_kernels.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from steps import step_flops
from workers import CONV_SHAPES, LAYER_SHAPES, Worker

from diynn.io.files import atomic_write

HERE = Path(__file__).resolve().parent

BATCHES = (64, 128, 256, 1024)
CNN_BATCHES = (64, 128, 256)


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def interleaved(workers: dict, names: list[str], batch: int, rounds: int, seconds: float, gap: float) -> dict:
    """Median step time per implementation and per-round ratios of names[0] to each other."""
    times = {name: [] for name in names}
    for round_index in range(rounds):
        order = names if round_index % 2 == 0 else names[::-1]  # A B C, C B A, ...
        for name in order:
            time.sleep(gap)
            times[name].append(workers[name].call("time", name, batch, seconds))
    ours = names[0]
    return {
        "median_s": {name: statistics.median(values) for name, values in times.items()},
        "ratio": {name: statistics.median(a / b for a, b in zip(times[ours], times[name])) for name in names[1:]},
    }


def against_torch(kind: str, shape: str, numpy_side, torch_side, args) -> dict:
    """One layer's forward + backward ("conv" or "layer" steps of `shape`) in diynn against PyTorch
    (where it is installed), taking turns at the convolution batch."""
    pair = {f"{kind}-diynn:{shape}": numpy_side}
    if torch_side:
        pair[f"{kind}-torch:{shape}"] = torch_side
    return interleaved(pair, list(pair), args.conv_batch, args.rounds, args.seconds, args.gap)


def _unless_recorded(workers: dict, name: str, batch: int) -> str | None:
    """None if the CUDA-graph step `name` records and replays, else why not (CuPy may refuse to
    record its cuBLAS calls), with `name` taken out of `workers` so that its table says so."""
    try:
        workers[name].call("time", name, batch, 0.01)
    except RuntimeError as error:
        del workers[name]
        return str(error)
    return None


def measure(args, environment_note: str) -> dict:
    """All worker-based measurements under the current environment."""
    numpy_side = Worker("numpy")
    # the hand-written step and the sgemm peak get NumPy's BLAS with all its threads: a process
    # that ran diynn's compiled kernels holds that BLAS at one thread
    plain_side = Worker("plain numpy")
    workers = {"diynn-numpy": numpy_side, "ceiling": plain_side}
    torch_side = Worker("torch") if torch_available() and not args.no_torch else None
    if torch_side:
        workers["torch-cpu"] = torch_side
    gpu = numpy_side.call("info")["gpu"]
    if gpu and not args.no_gpu:
        gpu_side = Worker("cupy")
        workers["diynn-cupy"] = workers["diynn-cupy-graph"] = gpu_side
        if torch_side:
            workers["torch-cuda"] = torch_side
    cnn_gpu = {"diynn-cnn-cupy": gpu_side, "diynn-cnn-cupy-graph": gpu_side} if "diynn-cupy" in workers else {}
    if cnn_gpu and torch_side:
        cnn_gpu["torch-cnn-cuda"] = torch_side
    graph_unavailable = cnn_graph_unavailable = None
    try:
        if "diynn-cupy-graph" in workers:
            graph_unavailable = _unless_recorded(workers, "diynn-cupy-graph", args.batches[0])
        if cnn_gpu and args.cnn_batches:
            cnn_graph_unavailable = _unless_recorded(cnn_gpu, "diynn-cnn-cupy-graph", args.cnn_batches[0])
        info = numpy_side.call("info")
        steps = {}
        for batch in args.batches:
            # the host drifts between speed states: measure the sgemm peak right before its rounds
            peak = plain_side.call("peak", args.peak_size)
            names = [n for n in ("diynn-numpy", "ceiling", "torch-cpu") if n in workers]
            result = interleaved(workers, names, batch, args.rounds, args.seconds, args.gap)
            gpu_names = [n for n in ("diynn-cupy", "diynn-cupy-graph", "torch-cuda") if n in workers]
            if gpu_names:  # the GPU lines take turns among themselves: the host no longer matters
                result["gpu"] = interleaved(workers, gpu_names, batch, args.rounds, args.seconds, args.gap)
                result["median_s"].update(result["gpu"]["median_s"])
            result["roofline_fraction"] = step_flops(batch) / peak / result["median_s"]["diynn-numpy"]
            result["peak_sgemm_gflops"] = peak / 1e9
            result["step_gflop"] = step_flops(batch) / 1e9
            steps[batch] = result
            print(f"batch {batch}: " + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in result["median_s"].items()))
        cnn = {}
        for batch in args.cnn_batches:
            cnn_workers = {"diynn-cnn": numpy_side}
            if torch_side:
                cnn_workers["torch-cnn"] = torch_side
            cnn[batch] = interleaved(cnn_workers, list(cnn_workers), batch, args.rounds, args.cnn_seconds, args.gap)
            if cnn_gpu:  # CuPy eager, its CUDA graph and PyTorch CUDA, taking turns among themselves
                cnn[batch]["gpu"] = interleaved(cnn_gpu, list(cnn_gpu), batch, args.rounds, args.cnn_seconds, args.gap)
                cnn[batch]["median_s"].update(cnn[batch]["gpu"]["median_s"])
            print(
                f"cnn batch {batch}: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in cnn[batch]["median_s"].items())
            )
        conv = {}
        for shape in args.conv_shapes:
            conv[shape] = against_torch("conv", shape, numpy_side, torch_side, args)
            c_in, c_out, size, kernel, stride, padding, transposed = CONV_SHAPES[shape]
            columns = (c_out if transposed else c_in) * kernel * kernel
            positions = size * size if transposed else ((size + 2 * padding - kernel) // stride + 1) ** 2
            conv[shape]["im2col_buffer_mb"] = columns * args.conv_batch * positions * 4 / 2**20
        layers = {shape: against_torch("layer", shape, numpy_side, torch_side, args) for shape in args.layer_shapes}
        memory = numpy_side.call("memory", "diynn-numpy", 128, args.memory_steps, args.memory_warmup)
    finally:
        for worker in {id(w): w for w in workers.values()}.values():
            worker.close()
    return {
        "environment": environment_note,
        "machine": info,
        "peak_sgemm_gflops": max((result["peak_sgemm_gflops"] for result in steps.values()), default=None),
        "peak_sgemm_size": args.peak_size,
        "steps": steps,
        "cnn": cnn,
        "conv": conv,
        "layers": layers,
        "conv_batch": args.conv_batch,
        "memory": memory,
        "graph_unavailable": graph_unavailable,
        "cnn_graph_unavailable": cnn_graph_unavailable,
    }


def kernel_benchmarks(args) -> dict:
    """Run benchmarks/test_kernels.py (and the GPU kernels, where there is a GPU) under
    pytest-benchmark `args.kernel_rounds` times; per group, the median over the runs of ours,
    the reference and their ratio (each run times a pair back to back; the host drifts between runs)."""
    runs = [_kernel_run(args) for _ in range(args.kernel_rounds)]
    return {
        group: {key: statistics.median(run[group][key] for run in runs) for key in ("ours", "reference", "ratio")}
        for group in runs[0]
    }


def _kernel_run(args) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "kernels.json"
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(HERE / "test_kernels.py"),
            str(HERE / "test_gpu_kernels.py"),
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",  # no kernel test uses Hypothesis; its plugin imports all of it (a second)
            f"--benchmark-json={output}",
            f"--benchmark-max-time={args.seconds}",
            f"--benchmark-min-rounds={args.kernel_min_rounds}",
        ]
        subprocess.run(command, check=True, cwd=HERE.parent, stdout=subprocess.DEVNULL)
        data = json.loads(output.read_text())
    groups = {}
    for bench in data["benchmarks"]:
        role = "ours" if bench["name"].startswith("test_ours") or "[ours]" in bench["name"] else "reference"
        groups.setdefault(bench["group"], {})[role] = bench["stats"]["median"]
    return {
        group: {**times, "ratio": times["ours"] / times["reference"]}
        for group, times in groups.items()
        if {"ours", "reference"} <= set(times)
    }


def device_label(machine: dict) -> str:
    """The report's file name: the GPU, or the CPU and its BLAS kernel (one report per host kind)."""
    if machine["gpu"]:
        name = machine["gpu"]
    else:
        kernels = sorted({pool.get("architecture") or "" for pool in machine["blas"]} - {""})
        name = " ".join([machine["cpu"], *kernels])
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "unknown"


def write_report(report: dict, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    label = device_label(report["runs"][0]["machine"])
    paths = {"json": out / f"{label}.json", "markdown": out / f"{label}.md", "plot": out / f"{label}.png"}
    _write_atomic(paths["json"], json.dumps(report, indent=2, default=str) + "\n")
    _write_atomic(paths["markdown"], markdown(report))
    plot(report, paths["plot"])
    return paths


def _commit() -> str | None:
    """The source tree's git commit, where it is a git checkout."""
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
    return result.stdout.strip() or None if result.returncode == 0 else None


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")  # PyTorch reads OMP's
ONE_THREAD = "1 thread"


@contextlib.contextmanager
def _environment(changes: dict):
    """Environment variables set (a value) or removed (None) for the block, then restored."""
    saved = {name: os.environ.get(name) for name in changes}
    try:
        _set_environment(changes)
        yield
    finally:
        _set_environment(saved)


def _set_environment(values: dict) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def scaling(report: dict) -> list[str]:
    """Time at 1 thread / time at all threads, for diynn and PyTorch: the MLP and CNN steps and
    every convolution, pool and batch norm of the layer tables."""
    runs = {run["environment"]: run for run in report["runs"]}
    if ONE_THREAD not in runs or "default environment" not in runs:
        return []
    every, one = runs["default environment"], runs[ONE_THREAD]
    threads = max(b["num_threads"] for b in every["machine"]["blas"])
    lines = [
        f"### Scaling: time at 1 thread / time at {threads} threads (higher is better; {threads} is ideal)",
        "",
        "| step or layer | batch | diynn | PyTorch |",
        "|---|---|---|---|",
    ]
    rows = [  # (label, batch, the 1-thread result, the all-thread result, diynn's name, PyTorch's)
        (label, batch, one[table][batch], result, ours, theirs)
        for table, ours, theirs, label in (
            ("steps", "diynn-numpy", "torch-cpu", "MLP"),
            ("cnn", "diynn-cnn", "torch-cnn", "CNN"),
        )
        for batch, result in every.get(table, {}).items()
    ]
    rows += [
        (name, every["conv_batch"], one[table][name], result, f"{kind}-diynn:{name}", f"{kind}-torch:{name}")
        for table, kind in (("conv", "conv"), ("layers", "layer"))
        for name, result in every.get(table, {}).items()
        if name in one.get(table, {})
    ]
    for label, batch, single, result, *names in rows:
        single, times = single["median_s"], result["median_s"]
        cells = [f"{single[name] / times[name]:.2f}" if name in single and name in times else "-" for name in names]
        lines.append(f"| {label} | {batch} | {cells[0]} | {cells[1]} |")
    return [*lines, ""]


def markdown(report: dict) -> str:
    lines = [f"Measured {report.get('created', '?')} at commit {report.get('commit') or '?'}.", ""]
    for run in report["runs"]:
        machine = run["machine"]
        blas = ", ".join(
            f"{b['internal_api']} {b['version']} ({b['architecture']}, {b['num_threads']} threads)"
            for b in machine["blas"]
        )
        peak_size = run.get("peak_sgemm_size", 2048)  # reports written before the option measured 2048
        lines += [
            f"### {run['environment']}",
            "",
            f"CPU: {machine['cpu']} ({machine['cpu_count']} cores); BLAS: {blas}; "
            f"diynn's CPU kernels: {machine.get('diynn_kernels', 'portable')}; GPU: {machine['gpu'] or 'none'}; "
            f"best sgemm rate {run['peak_sgemm_gflops'] or 0:.0f} GFLOP/s ({peak_size}x{peak_size}, "
            "measured before each batch)",
            "",
            "MLP 784-256-128-10 training step (SGD), median ms; ratios are medians of per-round ratios:",
            "",
            "| batch | diynn | hand-written | PyTorch | diynn / hand-written | diynn / PyTorch | sgemm GFLOP/s "
            "| roofline |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for batch, result in run["steps"].items():
            times, ratio = result["median_s"], result["ratio"]
            torch_time = f"{times['torch-cpu'] * 1e3:.3f}" if "torch-cpu" in times else "-"
            torch_ratio = f"{ratio['torch-cpu']:.2f}" if "torch-cpu" in ratio else "-"
            lines.append(
                f"| {batch} | {times['diynn-numpy'] * 1e3:.3f} | {times['ceiling'] * 1e3:.3f} | {torch_time} "
                f"| {ratio['ceiling']:.2f} | {torch_ratio} | {result['peak_sgemm_gflops']:.0f} "
                f"| {result['roofline_fraction']:.2f} |"
            )
        lines += _gpu_table(run, "steps")
        if run.get("cnn"):
            lines += [
                "",
                "CNN training step (`diynn.cnn()`: two conv-pool-batch-norm-ReLU blocks, dense head; Adam), median ms:",
                "",
                "| batch | diynn | PyTorch | diynn / PyTorch |",
                "|---|---|---|---|",
            ]
            for batch, result in run["cnn"].items():
                times, ratio = result["median_s"], result["ratio"]
                torch_ms = f"{times['torch-cnn'] * 1e3:.2f}" if "torch-cnn" in times else "-"
                torch_ratio = f"{ratio['torch-cnn']:.2f}" if "torch-cnn" in ratio else "-"
                lines.append(f"| {batch} | {times['diynn-cnn'] * 1e3:.2f} | {torch_ms} | {torch_ratio} |")
            lines += _gpu_table(run, "cnn")
        lines += [
            "",
            f"Convolutions, forward + backward at batch {run.get('conv_batch', 128)}: the CNN's (conv1, conv2) "
            "and the conv autoencoder's (enc: 4x4 stride 2; dec: 4x4 stride-2 transposed):",
            "",
            "| layer | diynn ms | PyTorch ms | diynn / PyTorch | im2col buffer |",
            "|---|---|---|---|---|",
        ]
        for shape, result in run["conv"].items():
            c_in, c_out, size, kernel, stride, _, transposed = CONV_SHAPES[shape]
            kind = "transposed " if transposed else ""
            lines.append(
                f"| {shape} ({kind}{c_in}->{c_out}, {kernel}x{kernel} stride {stride}, {size}x{size}) | "
                f"{_against_torch_cells(result)} | {result['im2col_buffer_mb']:.1f} MiB |"
            )
        lines += _layer_table(run)
        memory = run["memory"]
        lines += [
            "",
            f"Memory (tracemalloc, batch 128): {memory['growth_bytes'] / 1024:+.1f} KiB more held after "
            f"{memory['steps']} further steps than after the first {memory.get('warmup', 100)}; a step's "
            f"temporaries peak at {memory['peak_bytes_per_step'] / 2**20:.2f} MiB.",
            "",
        ]
    lines += scaling(report)
    if report.get("kernels"):
        lines += [
            "### Kernels (pytest-benchmark, same process; medians of the suite's runs)",
            "",
            "CPU: diynn vs hand-written NumPy. GPU (`gpu:` rows, 20 launches then one synchronisation per "
            "timed call): the CuPy backend's fused kernel vs the generic code it replaces, run on CuPy.",
            "",
            "| kernel | diynn us | reference us | ratio |",
            "|---|---|---|---|",
        ]
        for group, result in report["kernels"].items():
            lines.append(
                f"| {group} | {result['ours'] * 1e6:.1f} | {result['reference'] * 1e6:.1f} | {result['ratio']:.2f} |"
            )
    return "\n".join(lines) + "\n"


GPU_COLUMNS = {  # a run's table -> (its title, names of CuPy eager, its CUDA graph, PyTorch CUDA, the note key)
    "steps": ("MLP step", ("diynn-cupy", "diynn-cupy-graph", "torch-cuda"), "graph_unavailable"),
    "cnn": (
        "CNN step (`diynn.cnn()`, Adam)",
        ("diynn-cnn-cupy", "diynn-cnn-cupy-graph", "torch-cnn-cuda"),
        "cnn_graph_unavailable",
    ),
}


def _gpu_table(run: dict, table: str) -> list[str]:
    """The GPU lines of a run's MLP or CNN steps, if it had any: eager CuPy, the CUDA-graph replay,
    PyTorch CUDA."""
    gpu_steps = {batch: result["gpu"] for batch, result in run.get(table, {}).items() if "gpu" in result}
    if not gpu_steps:
        return []
    title, names, note = GPU_COLUMNS[table]
    lines = [
        "",
        f"{title} on the GPU ({run['machine']['gpu']}), median ms per step; ratios are medians of per-round ratios:",
        "",
        "| batch | diynn CuPy eager | diynn CUDA graph | PyTorch CUDA eager | eager / graph | diynn eager / PyTorch |",
        "|---|---|---|---|---|---|",
    ]
    for batch, result in gpu_steps.items():
        times, ratio = result["median_s"], result["ratio"]
        cells = [f"{times[n] * 1e3:.3f}" if n in times else "-" for n in names]
        cells += [f"{ratio[n]:.2f}" if n in ratio else "-" for n in names[1:]]
        lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    if run.get(note):
        lines += ["", f"No CUDA-graph line: {run[note]}"]
    return lines


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = (
        ("steps", axes[0], "MLP 784-256-128-10 training step (SGD)"),
        ("cnn", axes[1], "CNN training step (Adam)"),
    )
    for key, axis, title in panels:
        for run, style in zip(report["runs"], ("-", "--")):
            results = run.get(key) or {}
            names = next(iter(results.values()))["median_s"] if results else []
            for name in names:
                rates = [int(b) / results[b]["median_s"][name] for b in results]
                axis.plot([int(b) for b in results], rates, style, marker="o", label=f"{name} ({run['environment']})")
        axis.set_xscale("log", base=2)
        axis.set_xlabel("batch size")
        axis.set_ylabel("samples / s")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    try:
        with atomic_write(path) as file:
            figure.savefig(file, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(figure)


def _layer_table(run: dict) -> list[str]:
    """The CNN's max-pools and batch norms, forward + backward, against PyTorch's."""
    if not run.get("layers"):
        return []
    lines = [
        "",
        f"The CNN's max-pools and batch norms (training mode), forward + backward at batch {run['conv_batch']}:",
        "",
        "| layer | diynn ms | PyTorch ms | diynn / PyTorch |",
        "|---|---|---|---|",
    ]
    for shape, result in run["layers"].items():
        kind, channels, size = LAYER_SHAPES[shape]
        lines.append(f"| {shape} ({kind}, {channels} channels, {size}x{size}) | {_against_torch_cells(result)} |")
    return lines


def _against_torch_cells(result: dict) -> str:
    """ "diynn ms | PyTorch ms | ratio" of one `against_torch` result ("-" where PyTorch is missing)."""
    times = list(result["median_s"].values())
    ratio = next(iter(result["ratio"].values()), None)
    torch_ms = f"{times[1] * 1e3:.2f}" if len(times) > 1 else "-"
    ratio_text = f"{ratio:.2f}" if ratio is not None else "-"
    return f"{times[0] * 1e3:.2f} | {torch_ms} | {ratio_text}"


def _write_atomic(path: Path, text: str) -> None:
    with atomic_write(path, "w") as file:
        file.write(text)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.4, help="timing per turn")
    parser.add_argument("--gap", type=float, default=0.2, help="idle seconds before each turn")
    parser.add_argument("--batches", type=int, nargs="*", default=list(BATCHES))
    parser.add_argument("--cnn-batches", type=int, nargs="*", default=list(CNN_BATCHES))
    parser.add_argument(
        "--cnn-seconds", type=float, default=1.5, help="timing per turn of the CNN step (tens of steps, not five)"
    )
    parser.add_argument("--conv-shapes", nargs="*", default=list(CONV_SHAPES))
    parser.add_argument("--layer-shapes", nargs="*", default=list(LAYER_SHAPES))
    parser.add_argument("--conv-batch", type=int, default=128, help="batch of the convolution and layer tables")
    parser.add_argument("--memory-steps", type=int, default=1000)
    parser.add_argument("--memory-warmup", type=int, default=100, help="steps before the memory held is compared")
    parser.add_argument("--peak-size", type=int, default=2048, help="side of the square sgemm that gives the peak rate")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-gpu", action="store_true")
    parser.add_argument("--no-kernels", action="store_true", help="skip the pytest-benchmark kernel suite")
    parser.add_argument("--kernel-rounds", type=int, default=3, help="runs of the kernel suite (median taken)")
    parser.add_argument("--kernel-min-rounds", type=int, default=5, help="timed rounds of each kernel at least")
    parser.add_argument(
        "--one-thread",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure every worker at 1 thread (the scaling table: time at 1 thread / time at all)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    runs = [measure(args, "default environment")]
    if os.environ.get("OPENBLAS_CORETYPE"):  # also measure with OpenBLAS choosing its own kernel
        with _environment({"OPENBLAS_CORETYPE": None}):
            runs.append(measure(args, "OPENBLAS_CORETYPE unset"))
    if args.one_thread and (os.cpu_count() or 1) > 1:  # the workers start with these set
        with _environment({name: "1" for name in THREAD_VARIABLES}):
            runs.append(measure(args, ONE_THREAD))
    report = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "commit": _commit(),
        "settings": vars(args) | {"out": str(args.out)},
        "runs": runs,
        "kernels": None if args.no_kernels else kernel_benchmarks(args),
    }
    paths = write_report(report, args.out)
    print(markdown(report))
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return report


if __name__ == "__main__":
    main()
