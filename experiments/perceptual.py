"""The seed's open question: does a perceptual loss make an autoencoder's reconstructions and codes
more useful to a classifier than a pixel loss? (Pihlgren, Sandin and Liwicki, IJCNN 2020.)

The conv autoencoder (latent 32) is trained three times with the same budget: with the pixel MSE,
and with the pixel MSE plus a perceptual term, the distance between the feature maps of a frozen
CNN classifier (the one `experiments/fashion_mnist.py --model cnn` saves; trained here first if it
is missing) after its two conv blocks, or after its two conv blocks and its dense head. The head's
features were trained with the labels to separate the classes, so the last loss also distils the
CNN's knowledge of the classes into the reconstructions. Each is judged by: test pixel MSE and SSIM (scikit-image), an
MLP trained and tested on reconstructions against one on the original images (as
experiments/preprocessing.py measures it), and a linear probe and k-NN on the latent codes.
Which network judges: the MLPs (seed + 1, another architecture); the CNN is only the loss's
feature network (seed 0, its own split), so the judge is not the network the loss optimised for.

    python experiments/perceptual.py [--classifier results/fashion-mnist-cnn/model.npz] [--limit N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import diynn
from diynn_experiments.autoencoders import (
    add_arguments,
    classifier_accuracy,
    encode,
    flat,
    knn_accuracy,
    load_images,
    reconstruct,
    train_autoencoder,
)
from diynn_experiments.common import backend_info, output_dir, plot_image_rows, run, write_atomic, write_json

HERE = Path(__file__).resolve().parent
# Which of the CNN's layers the perceptual loss compares: the ReLUs after conv block 1 (32x14x14) and
# block 2 (64x7x7), and with them the ReLU of the dense head (256), whose features were trained to
# separate the classes
FEATURE_SETS = {"conv blocks": (3, 7), "conv blocks + dense head": (3, 7, 10)}


def feature_network(args):
    """The frozen CNN whose features the perceptual losses compare, up to the deepest feature layer."""
    path = Path(args.classifier)
    if not path.is_file():
        print(f"{path} not found: training the CNN classifier first (experiments/fashion_mnist.py --model cnn)")
        command = [sys.executable, str(HERE / "fashion_mnist.py"), "--model", "cnn", "--out", str(path.parent)]
        if args.limit:
            command += ["--limit", str(args.limit), "--epochs", "1"]
        if args.data_dir:
            command += ["--data-dir", args.data_dir]
        subprocess.run(command, check=True)
    cnn = diynn.load_model(path)
    deepest = max(max(layers) for layers in FEATURE_SETS.values())
    if len(cnn.layers) <= deepest:
        raise SystemExit(f"{path}: the perceptual loss needs the CNN's layers 0..{deepest}; it has {len(cnn.layers)}")
    return diynn.Sequential(*cnn.layers[: deepest + 1])


def ssim(reconstructions, originals) -> float:
    from skimage.metrics import structural_similarity

    pairs = zip(reconstructions[:, 0], originals[:, 0])
    return float(np.mean([structural_similarity(r, o, data_range=1.0) for r, o in pairs]))


def evaluate(model, data, args) -> dict:
    x_train, y_train, x_test, y_test = data
    judge = {"hidden": [256, 128], "epochs": args.classifier_epochs, "seed": args.seed + 1, "progress": args.progress}
    recon_train, recon_test = reconstruct(model, "conv", x_train), reconstruct(model, "conv", x_test)
    codes_train, codes_test = encode(model, "conv", x_train), encode(model, "conv", x_test)
    return {
        "pixel_mse": float(np.mean((recon_test - x_test) ** 2)),
        "ssim": ssim(recon_test, x_test),
        "mlp_on_reconstructions": classifier_accuracy(flat(recon_train), y_train, flat(recon_test), y_test, **judge),
        "linear_probe": classifier_accuracy(codes_train, y_train, codes_test, y_test, **{**judge, "hidden": []}),
        "knn": knn_accuracy(codes_train, y_train, codes_test, y_test),
    }


def targets(results: dict) -> str:
    """The issue's two targets for the perceptual loss, said to be met or not for each feature set."""
    pixel = results["pixel MSE"]

    def verdict(met):
        return "met" if met else "NOT met"

    lines = [f"Targets (pixel loss alone: drop {100 * pixel['drop']:.2f} points, probe {pixel['linear_probe']:.4f}):"]
    for name, result in results.items():
        if name == "pixel MSE":
            continue
        drop_points = 100 * result["drop"]
        lines.append(
            f"{name}: the drop on reconstructions at most 0.5 points: {verdict(drop_points <= 0.5)} "
            f"({drop_points:.2f}); the latent probe above the pixel loss's: "
            f"{verdict(result['linear_probe'] > pixel['linear_probe'])} ({result['linear_probe']:.4f})."
        )
    return " ".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, epochs=6, out="results/perceptual")
    parser.add_argument(
        "--classifier",
        default="results/fashion-mnist-cnn/model.npz",
        help="the trained CNN whose features the perceptual loss compares (trained first if missing)",
    )
    parser.add_argument("--perceptual-weight", type=float, default=1.0, help="weight of the feature distances")
    parser.add_argument("--classifier-epochs", type=int, default=10, help="epochs of each judging MLP")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = output_dir(args.out)
    x_train, y_train, x_test, y_test, _ = load_images(args)
    data = (x_train, y_train, x_test, y_test)
    network = feature_network(args)
    losses = {"pixel MSE": diynn.MSELoss()}
    for name, indices in FEATURE_SETS.items():
        layers = {index: args.perceptual_weight for index in indices}
        losses[f"pixel MSE + perceptual ({name})"] = diynn.PerceptualLoss(network, layers, pixel_weight=1.0)
    baseline = classifier_accuracy(
        flat(x_train), y_train, flat(x_test), y_test, [256, 128], args.classifier_epochs, args.seed + 1, args.progress
    )
    results, reconstructions = {}, {}
    for name, loss in losses.items():
        model, _, seconds = train_autoencoder("conv", 32, x_train, args, loss=loss)
        results[name] = {**evaluate(model, data, args), "train_s": seconds}
        results[name]["drop"] = baseline - results[name]["mlp_on_reconstructions"]
        reconstructions[name] = reconstruct(model, "conv", x_test[:10])
        print(f"{name}: {results[name]}")
    header = "| autoencoder loss | test pixel MSE | SSIM | MLP on reconstructions (change) | latent probe | k-NN |"
    rows = [header, "|---|---|---|---|---|---|"]
    for name, r in results.items():
        rows.append(
            f"| {name} | {r['pixel_mse']:.5f} | {r['ssim']:.4f} | {r['mlp_on_reconstructions']:.4f} "
            f"({-r['drop']:+.4f}) | {r['linear_probe']:.4f} | {r['knn']:.4f} |"
        )
    text = (
        f"Conv autoencoder, latent 32, {args.epochs} epochs each, {len(x_train)} training images; the same MLP "
        f"[256, 128] on the original images: {baseline:.4f}.\n\n" + "\n".join(rows) + "\n\n" + targets(results) + "\n"
    )
    write_atomic(out / "perceptual.md", text)
    title = "Test images and their reconstructions: pixel loss vs pixel + perceptual loss"
    plot_image_rows({"original": x_test[:10], **reconstructions}, out / "reconstructions.png", title)
    metrics = {
        "config": vars(args),
        "mlp_on_originals": baseline,
        "results": results,
        "wall_time_s": time.perf_counter() - start,
        **backend_info(),
    }
    write_json(out / "metrics.json", metrics)
    print(text)
    return metrics


if __name__ == "__main__":
    run(main)
