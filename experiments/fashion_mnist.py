"""Train a classifier on fashion-mnist; see experiments/classify.py and `--help` for the options.

python experiments/fashion_mnist.py [--model mlp] [--epochs 20] [--limit N] [--out results/fashion-mnist-<model>]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers.classification import main  # noqa: E402
from helpers.common import run  # noqa: E402

if __name__ == "__main__":
    run(lambda: main("fashion-mnist"))
