"""The first notebook as a script: a two-layer network (one hidden layer) on
(1) a 1-D regression problem and (2) a binary classification problem (scikit-learn's moons),
with a plot of the fitted curve and of the decision boundary.

    python experiments/two_layer.py [--hidden 32] [--epochs 300] [--out results/two_layer]
"""

import argparse
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_moons, make_regression

import diynn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers.common import backend_info, output_dir, run, save_figure, write_json  # noqa: E402


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
    axis.set_title(f"Regression: final MSE {history['loss'][-1]:.4f}")
    axis.legend()
    save_figure(figure, out / "regression_fit.png")
    return {"final_mse": history["loss"][-1]}


def classification(args, out):
    """Two interleaved half-moons, cross-entropy on two logits."""
    x, y = make_moons(n_samples=args.samples, noise=0.2, random_state=args.seed)
    model = diynn.mlp([2, args.hidden, 2], activation="relu", rng=args.seed)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.Adam(model.parameters(), lr=0.01))
    history = trainer.fit(x, y, epochs=args.epochs, batch_size=32, seed=args.seed, progress=False)
    xx, yy = np.meshgrid(
        np.linspace(x[:, 0].min() - 0.5, x[:, 0].max() + 0.5, 200),
        np.linspace(x[:, 1].min() - 0.5, x[:, 1].max() + 0.5, 200),
    )
    logits = diynn.get_backend().to_numpy(diynn.predict(model, np.c_[xx.ravel(), yy.ravel()]))
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.contourf(xx, yy, logits.argmax(1).reshape(xx.shape), alpha=0.25, cmap="coolwarm")
    axis.scatter(x[:, 0], x[:, 1], c=y, s=8, cmap="coolwarm")
    axis.set_title(f"Moons: training accuracy {history['accuracy'][-1]:.3f}")
    save_figure(figure, out / "decision_boundary.png")
    return {"final_loss": history["loss"][-1], "train_accuracy": history["accuracy"][-1]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/two_layer")
    args = parser.parse_args(argv)
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
        f"moons accuracy {metrics['classification']['train_accuracy']:.3f}; files in {out}"
    )
    return metrics


if __name__ == "__main__":
    run(main)
