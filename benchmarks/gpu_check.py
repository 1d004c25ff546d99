"""The GPU path verified in one command: versions, GPU tests, the suite on CuPy, CUDA graph vs eager,
benchmarks, and training runs, with a one-table summary at the end.

Two commands. Here, on a machine with internet access to the package index (once per session):

    python benchmarks/gpu_check.py --prepare

fetches the wheels the GPU machine lacks (array-api-compat, array-api-strict, NVIDIA's cuDNN
frontend; the GPU machine has libcudnn in PyTorch's environment), stages Fashion-MNIST into `.gpu/`
(ignored by git), and trains the reference MLP on the CPU for the accuracy comparison. Then, on
the GPU machine, from the repository root:

    python3 benchmarks/gpu_check.py --out "$OUT"

installs the wheels into a private folder, runs every step within its time limit (and within
`--budget` seconds in all), and writes `summary.md`, `logs.txt` and `report/<gpu>.{md,json,png}`
under --out. Without a GPU, `--dry-run` runs every step it can at toy sizes on the CPU (the test
suite does, so that the script cannot rot between devices) and marks the GPU-only ones skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / ".gpu"
WHEELS = ("array-api-compat", "array-api-strict", "setuptools")  # setuptools: the editable install of the checkout
CUDNN_FRONTEND = "nvidia-cudnn-frontend==1.12.0"  # as in pyproject's gpu extras; a binary wheel
UNAVAILABLE = 3  # a step's exit status for "this machine cannot do it" (said in its log), not a failure
FASHION_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

VERSIONS = """
import json, platform, numpy
info = {"python": platform.python_version(), "numpy": numpy.__version__}
try:
    import cupy
    info["cupy"] = cupy.__version__
    info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    info["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
    info["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
except Exception as error:
    info["gpu"] = f"none ({type(error).__name__}: {error})"
try:
    import cudnn
    info["cudnn_frontend"] = cudnn.__version__
    info["cudnn"] = cudnn.backend_version()
except Exception as error:
    info["cudnn"] = f"unavailable ({type(error).__name__}: {error})"
try:
    import torch
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.cuda.is_available()
except ImportError:
    info["torch"] = None
print(json.dumps(info))
"""

# Trains the same MLP for a few steps eagerly and replayed from a CUDA graph, same seed: the
# losses must agree to float32 rounding.
GRAPH_VS_EAGER = """
import sys, numpy as np, diynn
UNAVAILABLE = 3
backend = diynn.set_backend(sys.argv[1])
rng = np.random.default_rng(0)
x, y = rng.random((512, 784), dtype=np.float32), rng.integers(0, 10, 512)
losses = {}
for mode in ("eager", "graph"):
    model = diynn.mlp([784, 256, 128, 10], rng=0)
    optimizer = diynn.Adam(model.parameters(), lr=1e-3)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), optimizer)
    try:
        history = trainer.fit(x, y, epochs=3, batch_size=64, seed=0, progress=False, cuda_graph=mode == "graph")
    except diynn.BackendError as error:  # this CuPy cannot record the step: a limit, not a wrong result
        print(f"UNAVAILABLE: {error}")
        sys.exit(UNAVAILABLE)
    losses[mode] = history["loss"]
print("eager", losses["eager"]); print("graph", losses["graph"])
np.testing.assert_allclose(losses["graph"], losses["eager"], rtol=1e-5)
print("CUDA-graph replay and eager steps give the same losses")
"""

# CuPy refuses every cuBLAS call while a stream is capturing (its own check, as of CuPy 14). This
# asks whether cuBLAS itself records a matrix product when called directly (ctypes, on CuPy's
# handle, with a workspace set beforehand as PyTorch does): a lead for recording diynn's steps.
CUBLAS_CAPTURE_PROBE = """
import ctypes, json, cupy
result = {"probe": "cuBLAS sgemm called through ctypes inside a CUDA-graph capture"}
try:
    rng = cupy.random.default_rng(0)
    a, b = rng.random((256, 784), dtype=cupy.float32), rng.random((784, 128), dtype=cupy.float32)
    expected = a @ b  # loads cuBLAS and creates CuPy's handle
    handle = cupy.cuda.device.get_cublas_handle()
    for name in ("libcublas.so.13", "libcublas.so.12", "libcublas.so"):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            lib = None
    result["library"] = getattr(lib, "_name", None)
    f, p, i = ctypes.c_float, ctypes.c_void_p, ctypes.c_int
    lib.cublasSgemm_v2.argtypes = [p, i, i, i, i, i, ctypes.POINTER(f), p, i, p, i, ctypes.POINTER(f), p, i]
    lib.cublasSetStream_v2.argtypes = [p, p]
    lib.cublasSetWorkspace_v2.argtypes = [p, p, ctypes.c_size_t]
    one, zero = f(1.0), f(0.0)
    (m, k), n = a.shape, b.shape[1]
    c = cupy.empty((m, n), cupy.float32)
    workspace = cupy.empty(32 * 2**20, cupy.uint8)
    stream = cupy.cuda.Stream(non_blocking=True)

    def gemm():  # row-major c = a @ b is column-major c^T = b^T a^T
        status = lib.cublasSgemm_v2(handle, 0, 0, n, m, k, one, b.data.ptr, n, a.data.ptr, k, zero, c.data.ptr, n)
        assert status == 0, f"cublasSgemm_v2 returned status {status}"

    with stream:
        result["set_stream"] = lib.cublasSetStream_v2(handle, stream.ptr)
        result["set_workspace"] = lib.cublasSetWorkspace_v2(handle, workspace.data.ptr, workspace.nbytes)
        gemm()
        result["eager_error"] = float(cupy.abs(c - expected).max() / cupy.abs(expected).max())
        c.fill(float("nan"))
        stream.begin_capture()
        gemm()
        graph = stream.end_capture()
        graph.launch(stream)
        result["replay_error"] = float(cupy.abs(c - expected).max() / cupy.abs(expected).max())
        a *= 2  # a replay reads the buffers' current contents
        graph.launch(stream)
        result["replay_after_change_error"] = float(cupy.abs(c - 2 * expected).max() / cupy.abs(expected).max())
        stream.synchronize()
    result["records"] = max(result["replay_error"], result["replay_after_change_error"]) < 1e-5
except Exception as error:
    result["error"] = f"{type(error).__name__}: {error}"
    result["records"] = False
print(json.dumps(result))
"""


@dataclass
class Step:
    name: str
    command: list[str]
    timeout: float
    needs_gpu: bool = False
    needs_data: bool = False
    environment: dict = field(default_factory=dict)
    status: str = "not run"
    seconds: float = 0.0
    note: str = ""


def python() -> str:
    return sys.executable


def steps(args, gpu: bool) -> list[Step]:
    """The checks, most important first (the budget may run out before the last ones)."""
    out, dry = Path(args.out), args.dry_run
    data = STAGE / "data" / "fashion-mnist"
    on_gpu = {"DIYNN_BACKEND": "cupy" if gpu else "numpy"}
    pytest = [python(), "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"]
    limit = ["--limit", "200"] if dry else []  # training on 200 images: the script's path, not its accuracy
    tiny = [*limit, "--epochs", "1"] if dry else []
    report = [python(), "benchmarks/report.py", "--out", str(out / "report")]
    report += ["--rounds", "3", "--seconds", "0.25", "--gap", "0.05", "--kernel-rounds", "1"]
    report += ["--cnn-batches", "128", "256", "--cnn-seconds", "0.5", "--conv-shapes", "conv2"]
    report += ["--memory-steps", "200"]
    if dry:  # the GPU's command line, each setting then overridden (the last one counts), so that all of it parses
        report += ["--rounds", "1", "--seconds", "0.02", "--gap", "0", "--batches", "8", "--cnn-batches", "4"]
        report += ["--conv-shapes", "conv1", "--conv-batch", "2", "--memory-steps", "3", "--memory-warmup", "2"]
        report += ["--peak-size", "128", "--no-kernels", "--no-torch", "--cnn-seconds", "0.01", "--no-one-thread"]
        # the report itself is tested on its own (tests/benchmarks/test_benchmark_report.py)
    fashion = ["--data-dir", str(data), "--no-progress"] if data.is_dir() else ["--no-progress"]
    classify = "tests/experiments/test_classify_experiments.py"  # on the GPU all of it; dry, the KMNIST download
    suite = (
        ["tests"]
        if not dry
        else ["tests/training/test_optim.py", "tests/backends/test_backends.py", "-k", "optimiser or backend_of"]
    )
    return [
        Step("versions", [python(), "-c", VERSIONS], 60),
        Step("probe: cuBLAS recorded in a CUDA graph through ctypes", [python(), "-c", CUBLAS_CAPTURE_PROBE], 60, True),
        Step("CUDA graph vs eager", [python(), "-c", GRAPH_VS_EAGER, "cupy"], 90, needs_gpu=True),
        Step(
            "cuDNN graphs against im2col",
            pytest + ["tests/functional/test_convolution_cudnn.py"],
            60,
            environment=on_gpu,
        ),
        Step(
            "MLP on Fashion-MNIST (20 epochs)",
            [python(), "experiments/fashion_mnist.py", *fashion, "--out", str(out / "runs" / "mlp"), *tiny],
            120,
            environment=on_gpu,
            needs_data=True,
        ),
        Step(
            "CNN on Fashion-MNIST (2 epochs)",
            [python(), "experiments/fashion_mnist.py", "--model", "cnn", "--epochs", "2", *fashion]
            + ["--out", str(out / "runs" / "cnn"), *limit],
            120,
            environment=on_gpu,
            needs_data=True,
        ),
        Step(
            "KMNIST files in the official layout (download from a loopback server, train)",
            pytest + [classify + ("::test_kmnist_script_downloads_then_runs" if dry else "")],
            60,
            environment=on_gpu,
        ),
        Step(
            "the test suite on the cupy backend (the GPU tests that skip on the CPU included)",
            pytest + suite,
            240,
            environment=on_gpu,
        ),
        Step("benchmark report", report, 150),
    ]


def run_step(step: Step, environment: dict, log, remaining: float) -> None:
    start = time.perf_counter()
    log.write(f"\n===== {step.name}\n$ {' '.join(step.command)}\n")
    log.flush()
    try:
        result = subprocess.run(
            step.command,
            cwd=ROOT,
            env={**environment, **step.environment},
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=min(step.timeout, remaining),
        )
        step.status = {0: "passed", UNAVAILABLE: "unavailable (the log says why)"}.get(
            result.returncode, f"FAILED (exit {result.returncode})"
        )
    except subprocess.TimeoutExpired:
        step.status = f"FAILED (timed out after {min(step.timeout, remaining):.0f} s)"
    step.seconds = time.perf_counter() - start
    log.flush()


def install_into_this_python() -> str:
    """The staged wheels pip-installed (no index) and this checkout installed in the running Python
    as the README installs it (editable; the shim's folder backends/ becomes diynn.backends): the
    tests' subprocesses start with an environment of their own, so PYTHONPATH alone would not
    reach them."""
    wheels = sorted((STAGE / "wheels").glob("*.whl"))
    command = [python(), "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    if wheels:
        subprocess.run([*command, *map(str, wheels)], check=True)
    subprocess.run([*command, "--no-build-isolation", "-e", str(ROOT)], check=True)
    staged = f"installed {len(wheels)} staged wheels" if wheels else "no staged wheels (run --prepare here first)"
    return f"{staged}; this checkout installed editable"


def fashion_mnist_present() -> bool:
    """Staged in .gpu/ (see --prepare) or found where diynn looks (never downloaded here)."""
    if (STAGE / "data" / "fashion-mnist" / FASHION_FILES[0]).is_file():
        return True
    sys.path.insert(0, str(ROOT))  # the GPU machine's Python has no diynn installed yet: the checkout's
    from diynn.datasets import FASHION_MNIST, search_folders

    return any((folder / FASHION_FILES[0]).is_file() for folder in search_folders(FASHION_MNIST, None))


def gpu_present(environment: dict) -> bool:
    code = "import cupy; assert cupy.cuda.runtime.getDeviceCount() > 0"
    return subprocess.run([python(), "-c", code], env=environment, capture_output=True).returncode == 0


def summarise(all_steps: list[Step], out: Path, header: list[str], dry_run: bool) -> str:
    lines = [*header, "", "| step | result | seconds |", "|---|---|---|"]
    lines += [f"| {step.name} | {step.status}{step.note} | {step.seconds:.0f} |" for step in all_steps]
    for name in ("mlp", "cnn"):
        metrics = out / "runs" / name / "metrics.json"
        if metrics.is_file():
            m = json.loads(metrics.read_text())
            lines.append(
                f"\n{name.upper()}: test accuracy {m['test_accuracy']:.4f} on {m['backend']}, "
                f"{m['epoch_time_s']:.2f} s/epoch"
            )
    reference = STAGE / "cpu-mlp.json"
    mlp = out / "runs" / "mlp" / "metrics.json"
    if reference.is_file() and mlp.is_file() and not dry_run:
        cpu, gpu = json.loads(reference.read_text()), json.loads(mlp.read_text())
        gap = abs(cpu["test_accuracy"] - gpu["test_accuracy"])
        verdict = "within" if gap <= 0.005 else "NOT within"
        lines.append(
            f"MLP accuracy, same seed: CPU {cpu['test_accuracy']:.4f}, {gpu['backend']} {gpu['test_accuracy']:.4f} "
            f"({verdict} 0.5 points)"
        )
    return "\n".join(lines) + "\n"


def check(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    header = [f"# GPU check ({'dry run on the CPU' if args.dry_run else 'GPU machine'})", ""]
    if not args.dry_run:
        header.append(f"- set-up: {install_into_this_python()}")
    gpu = gpu_present(environment) and not args.dry_run
    header.append(f"- GPU: {'present' if gpu else 'none: GPU-only steps skipped'}")
    data = fashion_mnist_present()
    deadline = time.perf_counter() + args.budget
    all_steps = steps(args, gpu)
    with open(out / "logs.txt", "w") as log:
        for step in all_steps:
            remaining = deadline - time.perf_counter()
            if step.needs_gpu and not gpu:
                step.status = "skipped (needs a GPU)"
            elif step.needs_data and not data:
                step.status = "skipped (no Fashion-MNIST: run --prepare, or apt-get install dataset-fashion-mnist)"
            elif remaining < 10:
                step.status = "skipped (time budget spent)"
            else:
                run_step(step, environment, log, remaining)
            print(f"{step.name}: {step.status} ({step.seconds:.0f} s)", flush=True)
            if step.status == "passed" and step.name.startswith(("versions", "probe")):
                header.append(f"- {step.name}: `{_last_json_line(out / 'logs.txt')}`")
    summary = summarise(all_steps, out, header, args.dry_run)
    (out / "summary.md").write_text(summary)
    print(summary)
    failed = [step for step in all_steps if step.status.startswith("FAILED")]
    return 1 if failed else 0


def _last_json_line(path: Path) -> str:
    lines = [line for line in path.read_text().splitlines() if line.startswith("{")]
    return lines[-1] if lines else "?"


def prepare(args) -> int:
    """Stage wheels, data and the CPU reference run into .gpu/ (git-ignored)."""
    wheels = STAGE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    from importlib.metadata import version

    for name in WHEELS:
        command = [python(), "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
        command += ["--python-version", "3.12", "-d", str(wheels), f"{name}=={version(name)}"]
        subprocess.run(command, check=True)
    platform = ["--python-version", "3.12", "--platform", "manylinux_2_28_x86_64", "-d", str(wheels)]
    subprocess.run(
        [python(), "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", *platform, CUDNN_FRONTEND],
        check=True,
    )
    from diynn.datasets import FASHION_MNIST, search_folders

    source = next((f for f in search_folders(FASHION_MNIST, None) if (f / FASHION_FILES[0]).is_file()), None)
    if source is None:
        sys.exit("Fashion-MNIST not found: apt-get install dataset-fashion-mnist, or load it once with diynn")
    data = STAGE / "data" / "fashion-mnist"
    data.mkdir(parents=True, exist_ok=True)
    for name in FASHION_FILES:
        shutil.copyfile(source / name, data / name)
    if not args.no_reference:
        reference = STAGE / "cpu-mlp"
        command = [python(), "experiments/fashion_mnist.py", "--data-dir", str(data), "--out", str(reference)]
        subprocess.run([*command, "--no-progress"], cwd=ROOT, check=True, env={**os.environ, "DIYNN_BACKEND": "numpy"})
        shutil.copyfile(reference / "metrics.json", STAGE / "cpu-mlp.json")
    size = sum(p.stat().st_size for p in STAGE.rglob("*") if p.is_file()) / 2**20
    print(
        textwrap.dedent(
            f"""
            staged {size:.1f} MiB in {STAGE} (git-ignored). On the GPU machine, carrying .gpu:
                python3 benchmarks/gpu_check.py --out "$OUT"
            """
        )
    )
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", action="store_true", help="stage wheels, data and the CPU reference in .gpu/")
    parser.add_argument("--no-reference", action="store_true", help="with --prepare: skip the CPU reference run")
    parser.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU; GPU-only steps are skipped")
    parser.add_argument("--out", default=os.environ.get("OUT", "results/gpu-check"), help="where results go")
    parser.add_argument("--budget", type=float, default=450, help="seconds for all the steps together")
    args = parser.parse_args(argv)
    return prepare(args) if args.prepare else check(args)


if __name__ == "__main__":
    sys.exit(main())
