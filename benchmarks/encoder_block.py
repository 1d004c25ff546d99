"""One training step of a pre-norm transformer encoder block (batch 128, 50 tokens, width 64,
4 heads, MLP ratio 4, GELU): `diynn.encoder_block` against torch.nn.TransformerEncoderLayer
(norm_first=True) with the same shapes, forward + backward + Adam. Each library times its step in
a fresh process; the two take turns for `--rounds` rounds at 1 thread and at all threads, and the
result is the median of the per-round ratios (diynn / PyTorch), written with the host to
benchmarks/results/encoder-block.json.

    python benchmarks/encoder_block.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from paired import median_step_seconds, paired_rounds, worker_seconds

HERE = Path(__file__).resolve().parent
BATCH, TOKENS, WIDTH, HEADS, MLP_RATIO = 128, 50, 64, 4, 4


def diynn_step():
    import numpy as np

    import diynn

    rng = np.random.default_rng(0)
    block = diynn.encoder_block(WIDTH, HEADS, mlp_ratio=MLP_RATIO, rng=0)
    optimizer = diynn.Adam(block.parameters(), lr=1e-3)
    x = rng.standard_normal((BATCH, TOKENS, WIDTH)).astype(np.float32)
    grad = rng.standard_normal((BATCH, TOKENS, WIDTH)).astype(np.float32)

    def step():
        block(x)
        block.run_backward(grad, input_grad=False)
        optimizer.step()
        optimizer.zero_grad()

    return step


def torch_step():
    import torch

    torch.manual_seed(0)
    block = torch.nn.TransformerEncoderLayer(
        WIDTH, HEADS, WIDTH * MLP_RATIO, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )
    optimizer = torch.optim.Adam(block.parameters(), lr=1e-3)
    x, grad = torch.randn(BATCH, TOKENS, WIDTH), torch.randn(BATCH, TOKENS, WIDTH)

    def step():
        block(x).backward(grad)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def measure(args, threads: int | None) -> dict:
    def turn(library, environment):
        command = [sys.executable, __file__, "--worker", library, "--seconds", str(args.seconds)]
        return worker_seconds(command, environment)

    return paired_rounds(turn, args.rounds, threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per turn (after a third as warm-up)")
    parser.add_argument("--worker", choices=["diynn", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(median_step_seconds(diynn_step() if args.worker == "diynn" else torch_step(), args.seconds))
        return
    sys.path.insert(0, str(HERE))
    from machine import machine_info

    from diynn.io.files import atomic_write

    results = {"host": machine_info(), "runs": [measure(args, 1), measure(args, None)]}
    for run in results["runs"]:
        print(
            f"{run['threads']} thread(s): diynn {run['median_s']['diynn'] * 1e3:.1f} ms, PyTorch "
            f"{run['median_s']['torch'] * 1e3:.1f} ms, diynn / PyTorch {run['ratio']:.2f} (per round: "
            + ", ".join(f"{r:.2f}" for r in run["per_round_ratios"])
            + ")"
        )
    out = HERE / "results" / "encoder-block.json"
    with atomic_write(out, "w") as file:
        file.write(json.dumps(results, indent=2) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
