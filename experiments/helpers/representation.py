"""Judging a frozen representation as the self-supervised literature does (SimCLR section 4.2,
InstDisc, solo-learn): the encoder's feature map globally pooled beside the flattened map, cosine
k-NN with temperature-weighted votes, linear probes on few labels, and a random-init control whose
batch-norm statistics are re-estimated on the training images."""

from __future__ import annotations

import numpy as np

import diynn

from .autoencoders import classifier_accuracy

LABEL_SUBSETS = ("10 per class", "1%", "10%", "100%")
PROBE_EPOCHS = {"10 per class": 200, "1%": 100, "10%": 30, "100%": 10}  # about the same number of steps


def feature_maps(encoder, images, batch_size: int = 500) -> np.ndarray:
    """The encoder's last feature map (N, C, H, W): its layers up to, not including, the Flatten."""
    layers = encoder.layers[:-1] if isinstance(encoder.layers[-1], diynn.Flatten) else encoder.layers
    maps = diynn.predict(diynn.Sequential(*layers), images, batch_size)
    return diynn.get_backend().to_numpy(maps)


def pooled_and_flattened(encoder, images) -> dict[str, np.ndarray]:
    """{"pooled": (N, C) the map averaged over its positions, "flattened": (N, C H W)}."""
    maps = feature_maps(encoder, images)
    return {"pooled": maps.mean(axis=(2, 3)), "flattened": maps.reshape(len(maps), -1)}


def reestimate_batch_norm(model, images, batch_size: int = 500) -> None:
    """Set every batch norm's running statistics to the training images' (a cumulative average of
    one pass in training mode, as PyTorch's momentum=None), keeping the weights: what a random-init
    encoder is judged with, so that its features are normalised like a trained one's."""
    norms = [m for m in model.modules() if isinstance(m, (diynn.BatchNorm1d, diynn.BatchNorm2d))]
    saved = [m.momentum for m in norms]
    model.train()
    try:
        with diynn.no_grad():
            for index, start in enumerate(range(0, len(images), batch_size)):
                for norm in norms:
                    norm.momentum = 1 / (index + 1)  # the mean of the batches so far
                model(images[start : start + batch_size])
    finally:
        for norm, momentum in zip(norms, saved):
            norm.momentum = momentum
        model.eval()


def cosine_knn(train, y_train, test, y_test, k: int = 200, temperature: float = 0.07, chunk: int = 1000) -> float:
    """Test accuracy of k-NN on L2-normalised features (cosine similarity s), each neighbour voting
    for its class with weight exp(s / temperature) (Wu et al. 2018, InstDisc)."""
    classes, k = int(max(y_train.max(), y_test.max())) + 1, min(k, len(train))
    train = _normalised(train)
    correct = 0
    for start in range(0, len(test), chunk):
        similarity = _normalised(test[start : start + chunk]) @ train.T  # (chunk, N)
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.exp(np.take_along_axis(similarity, nearest, axis=1) / temperature)
        votes = np.zeros((len(nearest), classes))
        np.add.at(votes, (np.arange(len(nearest))[:, None], y_train[nearest]), weights)
        correct += int(np.sum(votes.argmax(axis=1) == y_test[start : start + chunk]))
    return correct / len(test)


def _normalised(features) -> np.ndarray:
    features = np.asarray(features, np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def label_subsets(labels, seed: int) -> dict[str, np.ndarray]:
    """Sorted indices of the labelled training images for each subset: 10 per class (drawn per
    class), 1% and 10% (random draws, the 1% inside the 10%) and all: the same for every
    representation judged with this seed."""
    rng = np.random.default_rng(seed)
    subsets = {
        "10 per class": np.sort(
            np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:10] for c in np.unique(labels)])
        )
    }
    order = rng.permutation(len(labels))
    for name, share in (("1%", 0.01), ("10%", 0.1)):
        subsets[name] = np.sort(order[: max(len(np.unique(labels)), int(len(labels) * share))])
    subsets["100%"] = np.arange(len(labels))
    return subsets


def judge(train, y_train, test, y_test, subsets, seed: int) -> dict[str, float]:
    """Cosine k-NN (all labels) and a linear probe on each label subset, test accuracies."""
    result = {"knn": cosine_knn(train, y_train, test, y_test)}
    for name, chosen in subsets.items():
        result[f"probe {name}"] = classifier_accuracy(
            train[chosen], y_train[chosen], test, y_test, [], PROBE_EPOCHS[name], seed, progress=False
        )
    return result
