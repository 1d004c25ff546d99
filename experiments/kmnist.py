"""Train a classifier on kmnist; see experiments/classify.py and `--help` for the options.

python experiments/kmnist.py [--model mlp] [--epochs 20] [--limit N] [--out results/kmnist-<model>]
"""

from diynn_experiments.classification import main
from diynn_experiments.common import run

if __name__ == "__main__":
    run(lambda: main("kmnist"))
