"""A small MLP on Iris: stratified seeded split, test accuracy, loss curve and metrics JSON.

python experiments/iris.py [--epochs 100] [--seed 0] [--out results/iris]
"""

import argparse
import time

import diynn
from diynn.datasets import load_iris
from diynn_experiments.common import add_progress_argument, backend_info, output_dir, plot_curves, run, write_json


def main(argv=None) -> dict:
    from sklearn.preprocessing import StandardScaler  # here: a backend that cannot run exits before it

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=16, help="hidden units of the one-hidden-layer MLP")
    parser.add_argument("--epochs", type=int, default=100, help="passes over the training set")
    parser.add_argument("--batch-size", type=int, default=16, help="samples per step")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam's learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the weights and the shuffling")
    parser.add_argument("--limit", type=int, default=None, help="quick run: train for at most this many epochs")
    parser.add_argument("--out", default="results/iris", help="output folder")
    add_progress_argument(parser)
    args = parser.parse_args(argv)
    if args.limit:
        args.epochs = min(args.epochs, args.limit)

    start = time.perf_counter()
    data = load_iris(test_size=0.3, seed=args.seed)
    x_train, x_test, y_train, y_test = data.x_train, data.x_test, data.y_train, data.y_test
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

    model = diynn.mlp([4, args.hidden, 3], activation="relu", rng=args.seed)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.Adam(model.parameters(), lr=args.lr))
    history = trainer.fit(
        x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, progress=args.progress
    )
    test_accuracy = diynn.accuracy(model, x_test, y_test)

    out = output_dir(args.out)
    plot_curves(history, out / "loss_curve.png", title="Iris MLP")
    diynn.save_model(model, out / "model.npz")
    metrics = {
        "config": vars(args),
        "test_accuracy": test_accuracy,
        "history": history,
        "wall_time_s": time.perf_counter() - start,
        **backend_info(),
    }
    write_json(out / "metrics.json", metrics)
    print(f"Iris test accuracy: {test_accuracy:.4f} ({len(y_test)} samples); files in {out}")
    return metrics


if __name__ == "__main__":
    run(main)
