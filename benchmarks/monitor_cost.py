"""What `diynn.Monitor` costs: one epoch of the default CNN (`diynn.cnn()`, Adam, batch 128) with
and without a Monitor at its default sampling, each epoch in a fresh process, the two taking turns
for `--rounds` rounds at 1 thread and at all threads; the result is the median of the per-round
ratios (with / without), written with the host to benchmarks/results/inspection/.

    python benchmarks/monitor_cost.py                 # 150 steps per epoch, 5 rounds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def epoch(monitored: bool, steps: int) -> float:
    """Seconds of one epoch of `steps` batches of random images (after one warm-up epoch)."""
    import numpy as np

    import diynn

    rng = np.random.default_rng(0)
    x, y = rng.random((128 * steps, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 128 * steps)
    model = diynn.cnn(rng=0)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.Adam(model.parameters()))
    callbacks = [diynn.Monitor(verbose=False)] if monitored else []
    trainer.fit(x[:1280], y[:1280], epochs=1, batch_size=128, progress=False, callbacks=callbacks)
    start = time.perf_counter()
    trainer.fit(x, y, epochs=1, batch_size=128, progress=False, callbacks=callbacks)
    return time.perf_counter() - start


def turn(monitored: bool, steps: int, environment: dict) -> float:
    command = [sys.executable, __file__, "--worker", "--steps", str(steps)] + (["--monitored"] if monitored else [])
    output = subprocess.run(command, env=environment, capture_output=True, text=True, check=True).stdout
    return float(output.strip().splitlines()[-1])


def measure(args, threads: int | None) -> dict:
    environment = dict(os.environ)
    if threads is not None:
        environment.update({name: str(threads) for name in THREAD_VARIABLES})
    ratios, times = [], {"without": [], "with": []}
    for _ in range(args.rounds):
        without, monitored = turn(False, args.steps, environment), turn(True, args.steps, environment)
        times["without"].append(without)
        times["with"].append(monitored)
        ratios.append(monitored / without)
    return {
        "threads": threads or os.cpu_count(),
        "median_s": {name: statistics.median(values) for name, values in times.items()},
        "ratio": statistics.median(ratios),
        "per_round_ratios": ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150, help="batches per epoch (a Monitor samples every 50)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--monitored", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(epoch(args.monitored, args.steps))
        return
    sys.path.insert(0, str(HERE))
    from machine import machine_info

    results = {"host": machine_info(), "steps": args.steps, "runs": [measure(args, 1), measure(args, None)]}
    for run in results["runs"]:
        print(
            f"{run['threads']} thread(s): epoch without {run['median_s']['without']:.2f} s, with a Monitor "
            f"{run['median_s']['with']:.2f} s, ratio {run['ratio']:.3f} (per round: "
            + ", ".join(f"{r:.3f}" for r in run["per_round_ratios"])
            + ")"
        )
    from diynn.io.files import atomic_write

    out = HERE / "results" / "inspection" / "monitor-cost.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "w") as file:
        file.write(json.dumps(results, indent=2) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
