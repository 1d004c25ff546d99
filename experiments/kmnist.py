"""Train a classifier on kmnist; see experiments/classify.py and `--help` for the options.

python experiments/kmnist.py [--model mlp] [--epochs 20] [--limit N] [--out results/kmnist-<model>]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers.classification import main  # noqa: E402
from helpers.common import run  # noqa: E402

if __name__ == "__main__":
    run(lambda: main("kmnist"))
