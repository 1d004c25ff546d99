"""A/B timing of one training step in two source trees of diynn (e.g. main and a change).

Each turn starts a fresh process for one tree, warms the step up, and reports its median time;
the trees take turns for `--rounds` rounds, so the host's drift hits both alike, and the ratio
is the median of the per-round ratios; each turn also counts the minor page faults per step (a
deterministic sign of memory churn, where times are noisy). Example, against the last commit:

    git worktree add /tmp/before HEAD
    python benchmarks/compare_trees.py /tmp/before . --case mlp --batch 128

Cases: mlp (784-256-128-10, SGD, as in the report), mlp-adam, cnn (models.cnn(), Adam), and
the layers of the CNN: conv1, conv2, pool1, pool2, bn1, bn2, and of the conv autoencoder: enc1,
enc2 (4x4 stride 2), dec1, dec2 (transposed), each forward + backward as in the report.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAYERS = {  # the CNN's and the conv autoencoder's layers at batch B: (constructor, input shape without the batch)
    "conv1": ("Conv2d(1, 32, 3, padding=1, rng=0)", (1, 28, 28)),
    "conv2": ("Conv2d(32, 64, 3, padding=1, rng=0)", (32, 14, 14)),
    "pool1": ("MaxPool2d(2)", (32, 28, 28)),
    "pool2": ("MaxPool2d(2)", (64, 14, 14)),
    "bn1": ("BatchNorm2d(32)", (32, 14, 14)),
    "bn2": ("BatchNorm2d(64)", (64, 7, 7)),
    "enc1": ("Conv2d(1, 16, 4, stride=2, padding=1, rng=0)", (1, 28, 28)),
    "enc2": ("Conv2d(16, 32, 4, stride=2, padding=1, rng=0)", (16, 14, 14)),
    "dec1": ("ConvTranspose2d(32, 16, 4, stride=2, padding=1, rng=0)", (32, 7, 7)),
    "dec2": ("ConvTranspose2d(16, 1, 4, stride=2, padding=1, rng=0)", (16, 14, 14)),
}


def make_step(case: str, batch: int):
    import numpy as np
    import steps

    import diynn

    rng = np.random.default_rng(0)
    if case == "mlp":
        return steps.diynn_step(batch)[0]
    if case in ("mlp-adam", "cnn"):
        if case == "cnn":
            model, x = diynn.cnn(rng=0), rng.random((batch, 1, 28, 28), dtype=np.float32)
        else:
            model, x = diynn.mlp(list(steps.SIZES), rng=0), rng.random((batch, 784), dtype=np.float32)
        trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.Adam(model.parameters()))
        x, y = trainer.prepare(x, rng.integers(0, 10, batch))
        return lambda: trainer.step(x, y)
    constructor, shape = LAYERS[case]
    layer = eval(f"diynn.{constructor}")
    x = rng.random((batch, *shape), dtype=np.float32)
    grad = np.ones_like(layer(x))

    def step():
        layer.zero_grad()
        layer(x)
        layer.backward(grad, input_grad=shape[0] > 1)  # a first layer needs no input gradient

    return step


class _ShimOfTree:
    """Finds diynn.backends in a tree whose shim sits at its top (backends/, installed into diynn
    by pyproject's package-dir): PYTHONPATH alone would import the installed checkout's shim."""

    def __init__(self, tree: Path):
        self.tree = str(tree)

    def find_spec(self, name, path=None, target=None):
        from importlib.machinery import PathFinder

        return PathFinder.find_spec(name, [self.tree]) if name == "diynn.backends" else None


def worker(case: str, batch: int, seconds: float, tree: Path) -> None:
    if (tree / "backends").is_dir() and not (tree / "diynn" / "backends").exists():
        sys.meta_path.insert(0, _ShimOfTree(tree))
    step = make_step(case, batch)
    warm_until = time.perf_counter() + seconds / 3
    while time.perf_counter() < warm_until:
        step()
    samples, deadline = [], time.perf_counter() + seconds
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    while time.perf_counter() < deadline or len(samples) < 5:
        start = time.perf_counter()
        step()
        samples.append(time.perf_counter() - start)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / len(samples)
    import diynn

    files = [diynn.__file__, getattr(diynn, "backends", diynn).__file__]
    print(json.dumps({"median_s": statistics.median(samples), "faults": faults, "files": files}))


def turn(tree: Path, args) -> float:
    environment = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    command = [sys.executable, __file__, "--worker", "--case", args.case, "--batch", str(args.batch)]
    command += ["--seconds", str(args.seconds), "--tree", str(tree.resolve())]
    output = subprocess.run(command, env=environment, capture_output=True, text=True, check=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    for file in result["files"]:
        if not file.startswith(str(tree.resolve())):
            raise RuntimeError(f"the worker imported {file}, not from {tree}")
    return result["median_s"], result["faults"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trees", type=Path, nargs="*", help="two source trees: A (before) and B (after)")
    parser.add_argument("--case", default="mlp", choices=["mlp", "mlp-adam", "cnn", *LAYERS])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.5, help="timing per turn (after a third as warm-up)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.case, args.batch, args.seconds, args.tree)
        return
    if len(args.trees) != 2:
        parser.error("give two source trees")
    a, b = args.trees
    times, faults = {"A": [], "B": []}, {"A": [], "B": []}
    for index in range(args.rounds):
        order = [("A", a), ("B", b)] if index % 2 == 0 else [("B", b), ("A", a)]
        for label, tree in order:
            seconds, page_faults = turn(tree, args)
            times[label].append(seconds)
            faults[label].append(page_faults)
    ratios = [tb / ta for ta, tb in zip(times["A"], times["B"])]
    from machine import machine_info

    info = machine_info()
    blas = ", ".join(f"{pool['internal_api']} {pool['architecture']} x{pool['num_threads']}" for pool in info["blas"])
    print(f"host: {info['cpu']} ({info['cpu_count']} cores), BLAS {blas}; case {args.case}, batch {args.batch}")
    for label, tree in (("A", a), ("B", b)):
        milliseconds, median_faults = 1e3 * statistics.median(times[label]), statistics.median(faults[label])
        print(f"{label} {tree}: median {milliseconds:.2f} ms, {median_faults:.0f} page faults per step")
    print(f"B / A: {statistics.median(ratios):.3f} (per-round ratios {', '.join(f'{r:.3f}' for r in ratios)})")


if __name__ == "__main__":
    main()
