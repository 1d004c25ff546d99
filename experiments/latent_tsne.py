"""What the latent space keeps: t-SNE of autoencoder codes vs raw pixels, with k-NN accuracy
(k = 5, 5-fold) and silhouette scores on latent codes, raw pixels and PCA at the same size,
and the class pairs that overlap most in the latent space.

    python experiments/latent_tsne.py [--latent 16] [--samples 3000] [--model results/autoencoder/dense_ae_16.npz]
"""

import argparse

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import confusion_matrix, silhouette_score
from sklearn.model_selection import cross_val_predict
from sklearn.neighbors import KNeighborsClassifier

import diynn
from diynn_experiments.autoencoders import add_arguments, encode, flat, load_images, train_autoencoder
from diynn_experiments.common import backend_info, output_dir, plot_embeddings, run, write_atomic, write_json


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, out="results/latent_tsne")
    parser.add_argument(
        "--kind", choices=["dense", "conv"], default="dense", help="autoencoder: dense or convolutional"
    )
    parser.add_argument("--latent", type=int, default=16, help="size of the latent code")
    parser.add_argument("--samples", type=int, default=3000, help="test images embedded by t-SNE")
    parser.add_argument("--model", default=None, help="a saved autoencoder to use instead of training one")
    args = parser.parse_args(argv)
    out = output_dir(args.out)
    x_train, _, x_test, y_test, class_names = load_images(args)
    if args.model:
        model = diynn.load_model(args.model)
    else:
        model, _, _ = train_autoencoder(args.kind, args.latent, x_train, args)
    images, labels = x_test[: args.samples], y_test[: args.samples]
    codes = encode(model, args.kind, images)
    pixels = flat(images)
    pca = PCA(n_components=codes.shape[1], random_state=args.seed).fit(flat(x_train)).transform(pixels)
    representations = {"latent codes": codes, "raw pixels": pixels, f"PCA-{codes.shape[1]}": pca}

    scores = {}
    for name, features in representations.items():
        knn = KNeighborsClassifier(n_neighbors=5)
        predicted = cross_val_predict(knn, features, labels, cv=5)
        scores[name] = {
            "knn_accuracy": float(np.mean(predicted == labels)),
            "silhouette": float(silhouette_score(features, labels, random_state=args.seed)),
        }
        if name == "latent codes":
            overlaps = confused_pairs(confusion_matrix(labels, predicted, labels=range(10)), class_names)

    embeddings = {
        name: TSNE(random_state=args.seed, init="pca").fit_transform(representations[name])
        for name in ("latent codes", "raw pixels")
    }
    plot_embeddings(embeddings, labels, class_names, out / "tsne.png", codes.shape[1])

    rows = ["| features | k-NN accuracy (k=5) | silhouette |", "|---|---|---|"]
    rows += [
        f"| {name} ({representations[name].shape[1]} dims) | {s['knn_accuracy']:.4f} | {s['silhouette']:.4f} |"
        for name, s in scores.items()
    ]
    pairs = "\n".join(f"- {a} / {b}: {count} of {args.samples} test images confused" for a, b, count in overlaps)
    text = (
        f"Fashion-MNIST test images ({args.samples}), {args.kind} autoencoder, latent size {codes.shape[1]}:\n\n"
        + "\n".join(rows)
        + "\n\nClass pairs that overlap most in the latent space (k-NN confusions):\n\n"
        + pairs
        + "\n"
    )
    write_atomic(out / "latent.md", text)
    write_json(
        out / "metrics.json",
        {"config": vars(args), "scores": scores, "overlaps": [list(p) for p in overlaps], **backend_info()},
    )
    print(text)
    return {"scores": scores, "overlaps": overlaps}


def confused_pairs(matrix, class_names, top=5):
    """The class pairs with most confusions in either direction, most first."""
    symmetric = matrix + matrix.T
    pairs = [(class_names[i], class_names[j], int(symmetric[i, j])) for i in range(10) for j in range(i + 1, 10)]
    return sorted(pairs, key=lambda pair: -pair[2])[:top]


if __name__ == "__main__":
    run(main)
