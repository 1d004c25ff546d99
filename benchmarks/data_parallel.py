"""Data-parallel training against one process, on this machine: training samples per second of
1 process x 2 BLAS threads against 2 MPI ranks x 1 thread each (the same global batch, shared),
for the MLP and the CNN, and the gradient all-reduce's time per step. The two set-ups run as
separate processes taking turns, round after round; the report gives medians and the host.

On a 2-core machine this measures the overhead of splitting the work, not a speed-up: both
set-ups use the same two cores.

    python benchmarks/data_parallel.py [--rounds 3] [--out benchmarks/results/data-parallel]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CASES = {"mlp": {"batch": 256, "samples": 12800}, "cnn": {"batch": 128, "samples": 2560}}


def worker(model_name: str, ranks: int) -> dict:
    """Train one epoch to warm up, then time one more; print rank 0's measurements."""
    import numpy as np

    import diynn

    communicator = None
    if ranks > 1:
        from diynn.training.distributed import Communicator

        communicator = Communicator()
    case = CASES[model_name]
    rng = np.random.default_rng(0)
    shape = (case["samples"], 784) if model_name == "mlp" else (case["samples"], 1, 28, 28)
    x, y = rng.random(shape, dtype=np.float32), rng.integers(0, 10, case["samples"])
    model = diynn.mlp([784, 256, 128, 10], rng=0) if model_name == "mlp" else diynn.cnn(rng=0)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.Adam(model.parameters()), communicator=communicator)
    spent = []
    if communicator is not None:
        allreduce = communicator.allreduce_gradients

        def timed(parameters, share):
            start = time.perf_counter()
            allreduce(parameters, share)
            spent.append(time.perf_counter() - start)

        communicator.allreduce_gradients = timed
    trainer.fit(x, y, epochs=1, batch_size=case["batch"], progress=False)
    spent.clear()
    start = time.perf_counter()
    trainer.fit(x, y, epochs=1, batch_size=case["batch"], progress=False)
    seconds = time.perf_counter() - start
    steps = case["samples"] // case["batch"]
    result = {"samples_per_s": case["samples"] / seconds, "allreduce_ms": 1e3 * sum(spent) / steps if spent else 0}
    if communicator is None or communicator.rank == 0:
        print(json.dumps(result), flush=True)
    return result


def run(model_name: str, ranks: int) -> dict:
    threads = 2 // ranks
    environment = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, str(Path(__file__)), "--worker", model_name, "--ranks", str(ranks)]
    if ranks > 1:
        mpiexec = shutil.which("mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        if mpiexec is None:
            sys.exit('no mpiexec: pip install -e ".[mpi]"')
        command = [mpiexec, "-n", str(ranks), *command]
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=environment, cwd=ROOT).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="turns of each set-up per model")
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "data-parallel")
    parser.add_argument("--worker", choices=list(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--ranks", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.ranks)
        return 0
    from machine import machine_info
    from report import device_label

    from diynn.io.files import atomic_write

    host = machine_info()
    blas = ", ".join(f"{pool['internal_api']} {pool['version']} ({pool['architecture']})" for pool in host["blas"])
    rows, results = [], {}
    for model_name in args.models:
        turns = {1: [], 2: []}
        for round_index in range(args.rounds):
            for ranks in (1, 2) if round_index % 2 == 0 else (2, 1):
                turns[ranks].append(run(model_name, ranks))
        single = statistics.median(t["samples_per_s"] for t in turns[1])
        double = statistics.median(t["samples_per_s"] for t in turns[2])
        allreduce = statistics.median(t["allreduce_ms"] for t in turns[2])
        results[model_name] = {"one_process": single, "two_ranks": double, "allreduce_ms": allreduce, "turns": turns}
        batch = CASES[model_name]["batch"]
        rows.append(
            f"| {model_name} (global batch {batch}) | {single:.0f} | {double:.0f} | {double / single:.2f} | "
            f"{allreduce:.2f} |"
        )
        print(rows[-1], flush=True)
    text = (
        f"Data-parallel training on {host['cpu']} ({host['cpu_count']} cores; {blas}), "
        f"{time.strftime('%Y-%m-%d')}, medians of {args.rounds} turns each; training samples per second:\n\n"
        "| model | 1 process x 2 threads | 2 MPI ranks x 1 thread | ratio | all-reduce ms per step |\n"
        "|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    report = json.dumps({"host": host, "results": results}, indent=2) + "\n"
    label = device_label(host)  # one file per host kind, as the benchmark report's
    for name, content in ((f"{label}.md", text), (f"{label}.json", report)):
        with atomic_write(args.out / name, "w") as file:
            file.write(content)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
