"""Classification after reconstruction: the same classifier trained on (a) the original images,
(b) their reconstructions by an autoencoder, (c) the autoencoder's latent codes (a linear probe,
and an MLP); each tested on the matching test inputs.

    python experiments/preprocessing.py [--latent 32] [--classifier-epochs 10] [--limit N]
"""

import argparse

from diynn_experiments.autoencoders import (
    add_arguments,
    classifier_accuracy,
    encode,
    flat,
    load_images,
    reconstruct,
    train_autoencoder,
)
from diynn_experiments.common import backend_info, output_dir, run, write_atomic, write_json


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, out="results/preprocessing")
    parser.add_argument(
        "--kind", choices=["dense", "conv"], default="dense", help="autoencoder: dense or convolutional"
    )
    parser.add_argument("--latent", type=int, default=32, help="size of the latent code")
    parser.add_argument("--classifier-epochs", type=int, default=10, help="epochs of each classifier")
    args = parser.parse_args(argv)
    out = output_dir(args.out)
    x_train, y_train, x_test, y_test, _ = load_images(args)
    autoencoder, _, _ = train_autoencoder(args.kind, args.latent, x_train, args)

    inputs = {
        "original images": (flat(x_train), flat(x_test)),
        "reconstructions": (
            flat(reconstruct(autoencoder, args.kind, x_train)),
            flat(reconstruct(autoencoder, args.kind, x_test)),
        ),
        "latent codes": (encode(autoencoder, args.kind, x_train), encode(autoencoder, args.kind, x_test)),
    }
    mlp_hidden = [256, 128]
    results = {}
    for name, (train, test) in inputs.items():
        results[f"{name}, MLP {mlp_hidden}"] = classifier_accuracy(
            train, y_train, test, y_test, mlp_hidden, args.classifier_epochs, args.seed, args.progress
        )
        if name == "latent codes":
            results[f"{name}, linear probe"] = classifier_accuracy(
                train, y_train, test, y_test, [], args.classifier_epochs, args.seed, args.progress
            )
    for name, accuracy in results.items():
        print(f"{name}: test accuracy {accuracy:.4f}")
    rows = ["| classifier input | test accuracy |", "|---|---|"]
    rows += [f"| {name} | {accuracy:.4f} |" for name, accuracy in results.items()]
    difference = results[f"reconstructions, MLP {mlp_hidden}"] - results[f"original images, MLP {mlp_hidden}"]
    text = (
        f"Fashion-MNIST, {args.kind} autoencoder with latent size {args.latent} "
        f"({len(x_train)} training images):\n\n"
        + "\n".join(rows)
        + f"\n\nReconstruction as preprocessing changes the MLP's test accuracy by {difference:+.4f}.\n"
    )
    write_atomic(out / "preprocessing.md", text)
    write_json(out / "metrics.json", {"config": vars(args), "results": results, **backend_info()})
    print(text)
    return results


if __name__ == "__main__":
    run(main)
