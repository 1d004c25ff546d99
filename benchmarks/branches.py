"""The layers of models that branch, against PyTorch: one training step of `diynn.resnet()` (batch
128, 28x28, Adam) and forward + backward of a depthwise and of a dilated 3x3 convolution (batch 128,
32 channels, 14x14), each beside the same computation in torch.nn. Each library times its step in
a fresh process; the two take turns for `--rounds` rounds at 1 thread and at all threads, and the
result is the median of the per-round ratios (diynn / PyTorch), written with the host to
benchmarks/results/branches.json.

    python benchmarks/branches.py [--cases resnet depthwise dilated]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from paired import median_step_seconds, paired_rounds, worker_seconds

HERE = Path(__file__).resolve().parent
BATCH, WIDTHS, BLOCKS = 128, (16, 32, 64), 2
# the convolutions: (in and out channels, size, groups, dilation): padding keeps the size
CONVOLUTIONS = {"depthwise": (32, 14, 32, 1), "dilated": (32, 14, 1, 2)}
CASES = ("resnet", *CONVOLUTIONS)


def diynn_step(case: str):
    """One step of `case` in diynn, as a function of no arguments."""
    import numpy as np

    import diynn

    rng = np.random.default_rng(0)
    if case == "resnet":
        model = diynn.resnet(widths=WIDTHS, blocks=BLOCKS, rng=0)
        trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.Adam(model.parameters()))
        x, y = trainer.prepare(rng.random((BATCH, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, BATCH))
        return lambda: trainer.step(x, y)
    channels, size, groups, dilation = CONVOLUTIONS[case]
    layer = diynn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, groups=groups, rng=0)
    x = rng.standard_normal((BATCH, channels, size, size)).astype(np.float32)
    grad = rng.standard_normal((BATCH, channels, size, size)).astype(np.float32)

    def step():
        layer(x)
        layer.backward(grad)
        layer.zero_grad()

    return step


def torch_resnet(torch):
    """`diynn.resnet(WIDTHS, BLOCKS)` in torch.nn: post-activation basic blocks, 1x1 strided shortcuts."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
                nn.BatchNorm2d(c_out),
            )
            changes = stride != 1 or c_in != c_out
            self.shortcut = (
                nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                if changes
                else nn.Identity()
            )

        def forward(self, x):
            return torch.relu(self.body(x) + self.shortcut(x))

    layers = [nn.Conv2d(1, WIDTHS[0], 3, padding=1, bias=False), nn.BatchNorm2d(WIDTHS[0]), nn.ReLU()]
    previous = WIDTHS[0]
    for stage, width in enumerate(WIDTHS):
        for index in range(BLOCKS):
            layers.append(Block(previous, width, 2 if stage > 0 and index == 0 else 1))
            previous = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(previous, 10))


def torch_step(case: str):
    """One step of `case` in PyTorch, as a function of no arguments."""
    import torch

    torch.manual_seed(0)
    if case == "resnet":
        model = torch_resnet(torch)
        optimizer, loss = torch.optim.Adam(model.parameters()), torch.nn.CrossEntropyLoss()
        x, y = torch.rand(BATCH, 1, 28, 28), torch.randint(0, 10, (BATCH,))

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss(model(x), y).backward()
            optimizer.step()

        step.model = model  # for the test that compares the architectures
        return step
    channels, size, groups, dilation = CONVOLUTIONS[case]
    layer = torch.nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, groups=groups)
    x = torch.randn(BATCH, channels, size, size, requires_grad=True)  # the input gradient too, as in diynn's
    grad = torch.randn(BATCH, channels, size, size)

    def step():
        layer(x).backward(grad)
        layer.zero_grad(set_to_none=True)
        x.grad = None

    return step


def measure(case: str, args, threads: int | None) -> dict:
    def turn(library, environment):
        command = [sys.executable, __file__, "--worker", library, "--cases", case, "--seconds", str(args.seconds)]
        return worker_seconds(command, environment)

    return {"case": case, **paired_rounds(turn, args.rounds, threads)}


def main(argv=None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per turn (after a third as warm-up)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "branches.json")
    parser.add_argument("--worker", choices=["diynn", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        step = diynn_step(args.cases[0]) if args.worker == "diynn" else torch_step(args.cases[0])
        print(median_step_seconds(step, args.seconds))
        return None
    sys.path.insert(0, str(HERE))
    from machine import machine_info

    from diynn.io.files import atomic_write

    runs = [measure(case, args, threads) for case in args.cases for threads in (1, None)]
    for run in runs:
        print(
            f"{run['case']}, {run['threads']} thread(s): diynn {run['median_s']['diynn'] * 1e3:.2f} ms, PyTorch "
            f"{run['median_s']['torch'] * 1e3:.2f} ms, diynn / PyTorch {run['ratio']:.2f} (per round: "
            + ", ".join(f"{r:.2f}" for r in run["per_round_ratios"])
            + ")"
        )
    results = {"host": machine_info(), "batch": BATCH, "runs": runs}
    with atomic_write(args.out, "w") as file:
        file.write(json.dumps(results, indent=2) + "\n")
    print(f"written: {args.out}")
    return results


if __name__ == "__main__":
    main()
