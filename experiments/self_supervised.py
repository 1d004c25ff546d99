"""Self-supervised pretraining (SimCLR: Chen, Kornblith, Norouzi and Hinton, ICML 2020) on
Fashion-MNIST: can a CNN learn features a linear classifier can use, without a single label?

The encoder is `diynn.cnn_encoder()` (the classifier's two conv blocks, 3136 features) with a
projection head 3136-256-64 (`--head-input pooled`: the head reads the last feature map averaged
over its pixels, 64-256-64, SimCLR's design). Each image gives two random views (crop-and-resize,
flip, brightness and contrast); the loss (NTXentLoss) asks each view's projection to pick out its
partner among the batch's 2N. No label is read: `Trainer.fit(x, None, augment=TwoViews(...))`.
The head is then dropped and the frozen encoder's features are judged, on the test set, once:
- a linear probe (softmax regression on the standardised features) and k-NN (k = 5) against the
  same encoder with its random initial weights, raw pixels, PCA and a conv autoencoder's codes;
- label efficiency: 1%, 10% and 100% of the labels for the probe on the pretrained encoder and
  for the same CNN (encoder + linear layer) trained from scratch on those labels;
- a t-SNE of the learned features next to the autoencoder's codes (latent_tsne.py's plot).

    python experiments/self_supervised.py [--epochs 30] [--limit N] [--resume]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

import diynn
from diynn_experiments.autoencoders import (
    classifier_accuracy,
    encode,
    flat,
    knn_accuracy,
    load_images,
    train_autoencoder,
)
from diynn_experiments.common import (
    add_progress_argument,
    backend_info,
    output_dir,
    plot_embeddings,
    run,
    save_figure,
    write_atomic,
    write_json,
)

RANDOM = "random-init encoder (same architecture, not trained)"
LABEL_SHARES = (1, 10, 100)  # percent of the training labels
SCRATCH_EPOCHS = {1: 50, 10: 15, 100: 4}  # about the same number of steps for the smaller shares
PROBE_EPOCHS = {1: 100, 10: 30, 100: 10}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30, help="pretraining passes over the training images")
    parser.add_argument("--batch-size", type=int, default=256, help="images per step (2x as many views)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (cosine schedule)")
    parser.add_argument("--temperature", type=float, default=0.5, help="NT-Xent temperature")
    parser.add_argument("--min-crop", type=float, default=0.4, help="smallest share of the image a crop keeps")
    parser.add_argument(
        "--contrast", type=float, default=0.4, help="views: contrast factors in 1 +- this (0: no brightness/contrast)"
    )
    parser.add_argument("--brightness", type=float, default=0.2, help="views: grey-level offsets in +- this")
    parser.add_argument(
        "--head-input",
        choices=["pooled", "flattened"],
        default="flattened",
        help="what the projection head reads: the last feature map flattened (3136 numbers) or averaged over "
        "its pixels (64, SimCLR's design; worse here: docs/concepts/training.md)",
    )
    parser.add_argument("--autoencoder", default="results/autoencoder/conv_ae_32.npz", help="AE to compare with")
    parser.add_argument("--tsne-samples", type=int, default=2000, help="test images in the t-SNE")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, views, shuffles and subsets")
    parser.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST files (default: search)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training and test images")
    parser.add_argument("--out", default="results/self_supervised", help="output folder")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted pretraining from the checkpoint.npz in --out (written after every epoch)",
    )
    add_progress_argument(parser)
    args = parser.parse_args(argv)
    if args.resume and not (Path(args.out) / "checkpoint.npz").is_file():
        parser.error(f"--resume: no checkpoint.npz in {args.out} (give the --out of the interrupted run)")
    return args


def pretrain(encoder, images, args, checkpoint=None):
    """SimCLR: the encoder and a projection head trained on two views per image, no labels; the
    training state saved to `checkpoint` after every epoch (continued from it with args.resume)."""
    model = diynn.Sequential(*encoder.layers, *projection(encoder, args).layers)
    views = diynn.TwoViews(diynn.Compose(*view_augmentations(args)))
    optimizer = diynn.Adam(model.parameters(), lr=args.lr)
    trainer = diynn.Trainer(model, diynn.NTXentLoss(args.temperature), optimizer, metric=None)
    start = time.perf_counter()
    history = trainer.fit(
        images,
        None,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=args.progress,
        augment=views,
        callbacks=[diynn.CosineLR(optimizer, args.epochs)],
        checkpoint=checkpoint,
        resume=checkpoint if getattr(args, "resume", False) else None,
    )
    return history, time.perf_counter() - start  # the encoder's layers were trained in place


def view_augmentations(args) -> list:
    """What makes each view: a random crop resized to the image, a flip, and (80% of the views)
    brightness and contrast, which stop two views from matching by their grey levels alone."""
    steps = [
        diynn.RandomResizedCrop(scale=(args.min_crop, 1.0), rng=args.seed + 2),
        diynn.RandomHorizontalFlip(rng=args.seed + 3),
    ]
    if args.contrast or args.brightness:
        steps.append(diynn.RandomBrightnessContrast(args.brightness, args.contrast, rng=args.seed + 4))
    return steps


def view_jitter(args) -> str:
    if not (args.contrast or args.brightness):
        return "no brightness or contrast change"
    return f"contrast x(1 +- {args.contrast:g}) and brightness +-{args.brightness:g} on 80% of the views"


RECIPE = (
    "epochs",
    "batch_size",
    "lr",
    "temperature",
    "min_crop",
    "contrast",
    "brightness",
    "head_input",
    "seed",
    "limit",
)


def recipe(args) -> dict:
    """The settings that make a pretrained encoder what it is."""
    return {key: getattr(args, key) for key in RECIPE}


def pretraining_record(args, history, seconds) -> dict:
    """What a pretraining took and which recipe made it (checked before an encoder is reused)."""
    return {"seconds": seconds, "loss": history["loss"], "recipe": recipe(args)}


def projection(encoder, args):
    """The layers the pretraining puts after the encoder (its output flattened): a global average
    pool of the last feature map where args.head_input is "pooled", then the head, a 2-layer MLP."""
    if args.head_input == "flattened":
        return diynn.mlp([encoder_size(encoder), 256, 64], rng=args.seed + 1)
    channels, height, width = diynn.predict(
        diynn.Sequential(*encoder.layers[:-1]), np.zeros((1, 1, 28, 28), np.float32)
    ).shape[1:]
    pool = [diynn.Unflatten((channels, height, width)), diynn.AvgPool2d((height, width)), diynn.Flatten()]
    return diynn.Sequential(*pool, *diynn.mlp([channels, 256, 64], rng=args.seed + 1).layers)


def encoder_size(encoder) -> int:
    return int(np.prod(diynn.predict(encoder, np.zeros((1, 1, 28, 28), np.float32)).shape[1:]))


def features(encoder, images):
    return diynn.get_backend().to_numpy(diynn.predict(encoder, images))


def probe_accuracy(train, y_train, test, y_test, epochs, args) -> float:
    """A linear probe: softmax regression on the standardised features (quietly: many of them run)."""
    return classifier_accuracy(train, y_train, test, y_test, [], epochs, args.seed, progress=False)


def from_scratch(x, y, x_test, y_test, epochs, args) -> float:
    """The same CNN (encoder + one linear layer) trained on labels only."""
    encoder = diynn.cnn_encoder(rng=args.seed)
    model = diynn.Sequential(*encoder.layers, diynn.Linear(encoder_size(encoder), 10, rng=args.seed + 1))
    optimizer = diynn.Adam(model.parameters(), lr=args.lr)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), optimizer)
    trainer.fit(
        x,
        y,
        epochs=epochs,
        batch_size=128,
        seed=args.seed,
        progress=args.progress,
        callbacks=[diynn.CosineLR(optimizer, epochs)],
    )
    return diynn.accuracy(model, x_test, y_test)


def autoencoder_codes(x_train, x_test, args):
    path = Path(args.autoencoder)
    if path.is_file():
        model = diynn.load_model(path)
    else:
        print(f"{path} not found: training a conv autoencoder (latent 32) for 3 epochs to compare with")
        settings = argparse.Namespace(epochs=3, batch_size=128, lr=2e-3, loss="mse", seed=args.seed, progress=False)
        model, _, _ = train_autoencoder("conv", 32, x_train, settings)
    return encode(model, "conv", x_train), encode(model, "conv", x_test)


def main(argv=None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    out = output_dir(args.out)
    x_train, y_train, x_test, y_test, class_names = load_images(args)
    random_encoder = diynn.cnn_encoder(rng=args.seed)
    random_features = (features(random_encoder, x_train), features(random_encoder, x_test))
    encoder = diynn.cnn_encoder(rng=args.seed)  # the same initial weights, pretrained below
    history, pretrain_s = pretrain(encoder, x_train, args, checkpoint=out / "checkpoint.npz")
    print(f"pretraining: {args.epochs} epochs in {pretrain_s / 60:.1f} min, NT-Xent {history['loss'][-1]:.4f}")
    pretrained = (features(encoder, x_train), features(encoder, x_test))
    pca = PCA(n_components=64, random_state=args.seed).fit(flat(x_train))
    representations = {
        "SimCLR-pretrained encoder": pretrained,
        RANDOM: random_features,
        "raw pixels": (flat(x_train), flat(x_test)),
        "PCA-64 of the pixels": (pca.transform(flat(x_train)), pca.transform(flat(x_test))),
        "conv autoencoder codes (latent 32)": autoencoder_codes(x_train, x_test, args),
    }
    probes = {}
    for name, (train, test) in representations.items():
        probes[name] = {
            "linear_probe": probe_accuracy(train, y_train, test, y_test, PROBE_EPOCHS[100], args),
            "knn": knn_accuracy(train, y_train, test, y_test),
            "size": int(train.shape[1]),
        }
        print(f"{name}: {probes[name]}")

    shares = {}
    order = np.random.default_rng(args.seed).permutation(len(x_train))
    for percent in LABEL_SHARES:
        chosen = np.sort(order[: max(10, len(x_train) * percent // 100)])
        train, labels = pretrained[0][chosen], y_train[chosen]
        probe = probe_accuracy(train, labels, pretrained[1], y_test, PROBE_EPOCHS[percent], args)
        random_probe = probe_accuracy(
            random_features[0][chosen], labels, random_features[1], y_test, PROBE_EPOCHS[percent], args
        )
        scratch = from_scratch(x_train[chosen], y_train[chosen], x_test, y_test, SCRATCH_EPOCHS[percent], args)
        shares[percent] = {
            "labels": int(len(chosen)),
            "pretrained_probe": probe,
            "random_probe": random_probe,
            "from_scratch": scratch,
        }
        print(f"{percent}% of the labels: {shares[percent]}")

    text = table(args, probes, shares, len(x_train), pretrain_s)
    write_atomic(out / "self_supervised.md", text)
    plot_label_efficiency(shares, out / "label_efficiency.png")
    samples = slice(0, min(args.tsne_samples, len(x_test)))
    embeddings = {}
    for name in ("SimCLR-pretrained encoder", "conv autoencoder codes (latent 32)"):
        reduced = PCA(n_components=min(50, representations[name][1].shape[1]), random_state=args.seed)
        points = reduced.fit_transform(representations[name][1][samples])
        embeddings[name] = TSNE(random_state=args.seed, init="pca").fit_transform(points)
    plot_embeddings(embeddings, y_test[samples], class_names, out / "tsne.png", latent=None)
    metrics = {
        "config": vars(args),
        "pretraining": pretraining_record(args, history, pretrain_s),
        "probes": probes,
        "label_efficiency": shares,
        "wall_time_s": time.perf_counter() - start,
        **backend_info(),
    }
    write_json(out / "metrics.json", metrics)
    diynn.save_model(encoder, out / "encoder.npz")
    write_json(out / "pretrain.json", metrics["pretraining"])  # the record self_supervised_protocol.py reads
    print(text)
    return metrics


def table(args, probes, shares, n_train, pretrain_s) -> str:
    rows = ["| features | size | linear probe | k-NN (k = 5) |", "|---|---|---|---|"]
    rows += [f"| {name} | {p['size']} | {p['linear_probe']:.4f} | {p['knn']:.4f} |" for name, p in probes.items()]
    efficiency = [
        "| labels | pretrained encoder, linear probe | random-init encoder, linear probe | same CNN from scratch |",
        "|---|---|---|---|",
    ]
    efficiency += [
        f"| {percent}% ({s['labels']}) | {s['pretrained_probe']:.4f} | {s['random_probe']:.4f} "
        f"| {s['from_scratch']:.4f} |"
        for percent, s in shares.items()
    ]
    ours, random = probes["SimCLR-pretrained encoder"], probes[RANDOM]
    gain, knn_gain = ours["linear_probe"] - random["linear_probe"], ours["knn"] - random["knn"]
    targets = [
        f"linear probe >= 0.85: {'met' if ours['linear_probe'] >= 0.85 else 'NOT met'} ({ours['linear_probe']:.4f})",
        f"clearly above the random-init encoder (by 2 points or more): {'met' if gain >= 0.02 else 'NOT met'} "
        f"(probe {gain:+.4f}, k-NN {knn_gain:+.4f})",
        "1% of the labels beats training from scratch on them: "
        + ("yes" if shares[1]["pretrained_probe"] > shares[1]["from_scratch"] else "NO"),
        f"pretraining <= 30 min: {'met' if pretrain_s <= 1800 else 'NOT met'} ({pretrain_s / 60:.1f} min)",
    ]
    return (
        f"SimCLR pretraining of `diynn.cnn_encoder()` on {n_train} unlabelled training images: {args.epochs} "
        f"epochs, batch {args.batch_size} (2 views each), temperature {args.temperature}, crops of "
        f"{args.min_crop:.0%}-100% of the image, flips, {view_jitter(args)}, the projection head on the "
        f"{args.head_input} "
        f"last feature map; {pretrain_s / 60:.1f} min. Test accuracy of a "
        "linear probe (softmax regression on standardised features, all labels) and of k-NN:\n\n"
        + "\n".join(rows)
        + "\n\nLabel efficiency (test accuracy; the probe reads the frozen pretrained features):\n\n"
        + "\n".join(efficiency)
        + "\n\nTargets: "
        + "; ".join(targets)
        + ".\n"
    )


def plot_label_efficiency(shares, path):
    figure, axis = plt.subplots(figsize=(6, 4))
    percents = list(shares)
    for key, label in (
        ("pretrained_probe", "SimCLR encoder + linear probe"),
        ("random_probe", "random-init encoder + linear probe"),
        ("from_scratch", "same CNN from scratch"),
    ):
        axis.plot(percents, [shares[p][key] for p in percents], marker="o", label=label)
    axis.set_xscale("log")
    axis.set_xticks(percents, [f"{p}%" for p in percents])
    axis.set_xlabel("share of the training labels")
    axis.set_ylabel("test accuracy")
    axis.set_title("Label efficiency on Fashion-MNIST")
    axis.legend()
    save_figure(figure, path)


if __name__ == "__main__":
    run(main)
