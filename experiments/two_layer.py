"""The first notebook as a script: a two-layer network (one hidden layer) on
(1) a 1-D regression problem and (2) a binary classification problem (scikit-learn's moons),
with a plot of the fitted curve and of the decision boundary.

    python experiments/two_layer.py [--hidden 32] [--epochs 300] [--out results/two_layer]
"""

import argparse

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_moons, make_regression
from sklearn.model_selection import train_test_split

import diynn
from diynn_experiments.common import backend_info, output_dir, run, save_figure, write_json


def regression(args, out):
    """y = sin(2x) + x/2 + noise on x drawn by make_regression's single feature; MSE loss."""
    x, _ = make_regression(n_samples=args.samples, n_features=1, random_state=args.seed)
    rng = np.random.default_rng(args.seed)
    y = np.sin(2 * x) + 0.5 * x + 0.1 * rng.normal(size=x.shape)
    model = diynn.mlp([1, args.hidden, 1], activation="tanh", rng=args.seed)
    trainer = diynn.Trainer(model, diynn.MSELoss(), diynn.Adam(model.parameters(), lr=0.01), metric=None)
    history = trainer.fit(x, y, epochs=args.epochs, batch_size=32, seed=args.seed, progress=False)
    grid = np.linspace(x.min(), x.max(), 300)[:, None]
    fit = diynn.get_backend().to_numpy(diynn.predict(model, grid))
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.scatter(x[:, 0], y[:, 0], s=8, alpha=0.5, label="data")
    axis.plot(grid[:, 0], fit[:, 0], color="C3", lw=2, label=f"2-layer net ({args.hidden} tanh units)")
    axis.set_title(f"Regression: final training MSE {history['loss'][-1]:.4f}")
    axis.set_xlabel("x")
    axis.set_ylabel("y = sin(2x) + x/2 + noise")
    axis.legend()
    save_figure(figure, out / "regression_fit.png")
    return {"final_mse": history["loss"][-1]}


def classification(args, out):
    """Two interleaved half-moons, cross-entropy on two logits; accuracy on a held-out quarter."""
    x_all, y_all = make_moons(n_samples=args.samples, noise=0.2, random_state=args.seed)
    x, x_test, y, y_test = train_test_split(x_all, y_all, test_size=0.25, stratify=y_all, random_state=args.seed)
    model = diynn.mlp([2, args.hidden, 2], activation="relu", rng=args.seed)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.Adam(model.parameters(), lr=0.01))
    history = trainer.fit(x, y, epochs=args.epochs, batch_size=32, seed=args.seed, progress=False)
    test_accuracy = diynn.accuracy(model, x_test, y_test)
    xx, yy = np.meshgrid(
        np.linspace(x[:, 0].min() - 0.5, x[:, 0].max() + 0.5, 200),
        np.linspace(x[:, 1].min() - 0.5, x[:, 1].max() + 0.5, 200),
    )
    logits = diynn.get_backend().to_numpy(diynn.predict(model, np.c_[xx.ravel(), yy.ravel()]))
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.contourf(xx, yy, logits.argmax(1).reshape(xx.shape), alpha=0.25, cmap="coolwarm")
    for label, colour in ((0, "C0"), (1, "C3")):
        axis.scatter(*x[y == label].T, s=8, color=colour, label=f"class {label} (training)")
        axis.scatter(*x_test[y_test == label].T, s=18, color=colour, marker="x", label=f"class {label} (held out)")
    axis.set_title(f"Moons: held-out accuracy {test_accuracy:.3f}")
    axis.set_xlabel("x1")
    axis.set_ylabel("x2")
    axis.legend(fontsize=7, loc="lower right")
    save_figure(figure, out / "decision_boundary.png")
    return {
        "final_loss": history["loss"][-1],
        "train_accuracy": history["accuracy"][-1],
        "test_accuracy": test_accuracy,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=32, help="hidden units of the two-layer networks")
    parser.add_argument("--epochs", type=int, default=300, help="passes over each training set")
    parser.add_argument("--samples", type=int, default=400, help="points in each data set")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the split and the weights")
    parser.add_argument("--limit", type=int, default=None, help="quick run: at most this many epochs")
    parser.add_argument("--out", default="results/two_layer", help="output folder")
    args = parser.parse_args(argv)
    if args.limit:
        args.epochs = min(args.epochs, args.limit)
    out = output_dir(args.out)
    metrics = {
        "config": vars(args),
        "regression": regression(args, out),
        "classification": classification(args, out),
        **backend_info(),
    }
    write_json(out / "metrics.json", metrics)
    print(
        f"regression MSE {metrics['regression']['final_mse']:.4f}, "
        f"moons held-out accuracy {metrics['classification']['test_accuracy']:.3f}; files in {out}"
    )
    return metrics


if __name__ == "__main__":
    run(main)
