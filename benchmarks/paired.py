"""Paired timing for the benchmarks that compare diynn with PyTorch on one step (encoder_block.py,
branches.py): each library times its step in a fresh worker process, the two take turns for a
number of rounds, and the result is the median of the per-round ratios (diynn / PyTorch)."""

from __future__ import annotations

import os
import statistics
import subprocess
import time

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def median_step_seconds(step, seconds: float) -> float:
    """The median seconds of one call of `step`, after a third of `seconds` of warm-up (5 calls at least)."""
    warm_until = time.perf_counter() + seconds / 3
    while time.perf_counter() < warm_until:
        step()
    samples, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        start = time.perf_counter()
        step()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def worker_seconds(command: list[str], environment: dict) -> float:
    """Run a worker process and read the seconds it printed last."""
    output = subprocess.run(command, env=environment, capture_output=True, text=True, check=True).stdout
    return float(output.strip().splitlines()[-1])


def paired_rounds(turn, rounds: int, threads: int | None) -> dict:
    """`turn(library, environment)` -> seconds, for "diynn" then "torch" in each of `rounds` rounds,
    at `threads` threads (None: the host's default); the medians, the ratio and the per-round ratios."""
    environment = dict(os.environ)
    if threads is not None:
        environment.update({name: str(threads) for name in THREAD_VARIABLES})
    times, ratios = {"diynn": [], "torch": []}, []
    for _ in range(rounds):
        ours, theirs = turn("diynn", environment), turn("torch", environment)
        times["diynn"].append(ours)
        times["torch"].append(theirs)
        ratios.append(ours / theirs)
    return {
        "threads": threads or os.cpu_count(),
        "median_s": {name: statistics.median(values) for name, values in times.items()},
        "ratio": statistics.median(ratios),
        "per_round_ratios": ratios,
    }
