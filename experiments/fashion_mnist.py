"""Train a classifier on fashion-mnist; see experiments/classify.py and `--help` for the options.

python experiments/fashion_mnist.py [--model mlp] [--epochs 20] [--limit N] [--out results/fashion-mnist-<model>]
"""

from diynn_experiments.classification import main
from diynn_experiments.common import run

if __name__ == "__main__":
    run(lambda: main("fashion-mnist"))
