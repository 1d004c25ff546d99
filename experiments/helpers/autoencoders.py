"""Shared by the autoencoder experiments: data, training an autoencoder, reconstruction errors."""

from __future__ import annotations

import time

import numpy as np

import diynn
from diynn import datasets

from .common import add_progress_argument

LOSSES = {"mse": diynn.MSELoss, "bce": diynn.BCELoss}


def add_arguments(parser, epochs=10, out="results/autoencoder"):
    parser.add_argument("--epochs", type=int, default=epochs, help="passes over the training images per autoencoder")
    parser.add_argument("--batch-size", type=int, default=128, help="images per step")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam's learning rate")
    parser.add_argument("--loss", choices=sorted(LOSSES), default="mse", help="reconstruction loss")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, the shuffling and the noise")
    parser.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST files (default: search)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training and test images")
    parser.add_argument("--out", default=out, help="output folder")
    add_progress_argument(parser)


def load_images(args):
    """Fashion-MNIST as (N, 1, 28, 28) float32 in [0, 1]: train and test images and labels."""
    data = datasets.load_fashion_mnist(root=args.data_dir, flat=False)
    limit = args.limit or None
    return (data.x_train[:limit], data.y_train[:limit], data.x_test[:limit], data.y_test[:limit], data.class_names)


def flat(images):
    return images.reshape(len(images), -1)


def make_autoencoder(kind: str, latent: int, seed: int, noise_std: float = 0.0):
    if kind == "dense":
        return diynn.dense_autoencoder(latent, noise_std=noise_std, rng=seed)
    if kind == "conv":
        return diynn.conv_autoencoder(latent, noise_std=noise_std, rng=seed)
    if kind == "unet":  # no code, no noise of its own: train_autoencoder adds it to the inputs
        return diynn.unet(rng=seed)
    raise ValueError(f"unknown autoencoder {kind!r}")


def train_autoencoder(kind: str, latent: int, images, args, noise_std: float = 0.0, loss=None):
    """Train on `images` (N, 1, 28, 28) with a cosine learning-rate schedule and `loss` (default:
    --loss's); returns (model, history, seconds)."""
    model = make_autoencoder(kind, latent, args.seed, noise_std)
    inputs = flat(images) if kind == "dense" else images
    optimizer = diynn.Adam(model.parameters(), lr=args.lr)
    trainer = diynn.Trainer(model, loss or LOSSES[args.loss](), optimizer, metric=None)
    start = time.perf_counter()
    history = trainer.fit(
        inputs,
        inputs,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=args.progress,
        callbacks=[diynn.CosineLR(optimizer, args.epochs)],
        augment=diynn.GaussianNoise(noise_std, rng=seed_of_noise(args)) if kind == "unet" and noise_std else None,
    )
    return model, history, time.perf_counter() - start


def seed_of_noise(args) -> int:
    """The training noise's seed, apart from the model's and the shuffling's."""
    return args.seed + 7


def reconstruct(model, kind: str, images):
    """Reconstructions (N, 1, 28, 28) as a NumPy array."""
    inputs = flat(images) if kind == "dense" else images
    output = diynn.get_backend().to_numpy(diynn.predict(model, inputs))
    return output.reshape(images.shape)


def encode(model, kind: str, images, batch_size=1024):
    """Latent codes (N, latent) as a NumPy array."""
    backend = diynn.get_backend()
    inputs = backend.asarray(flat(images) if kind == "dense" else images)
    was_training = model.training
    model.eval()
    codes = [
        backend.to_numpy(model.encode(inputs[i : min(len(images), i + batch_size), ...]))
        for i in range(0, len(images), batch_size)
    ]
    model.train(was_training)
    return np.concatenate(codes)


def classifier_accuracy(x_train, y_train, x_test, y_test, hidden, epochs, seed, progress=None) -> float:
    """Test accuracy of an MLP on flat features (no hidden layer: a linear probe), standardised on
    the training set, trained with Adam and a cosine schedule."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    model = diynn.mlp([x_train.shape[1], *hidden, 10], rng=seed)
    optimizer = diynn.Adam(model.parameters(), lr=1e-3)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), optimizer)
    trainer.fit(
        x_train,
        y_train,
        epochs=epochs,
        batch_size=128,
        seed=seed,
        progress=progress,
        callbacks=[diynn.CosineLR(optimizer, epochs)],
    )
    return diynn.accuracy(model, x_test, y_test)


def knn_accuracy(train, y_train, test, y_test) -> float:
    """Test accuracy of 5 nearest neighbours (scikit-learn) on the features."""
    from sklearn.neighbors import KNeighborsClassifier

    return float(KNeighborsClassifier(5).fit(train, y_train).score(test, y_test))


def mse_per_pixel(a, b) -> float:
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
