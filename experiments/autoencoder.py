"""Dense and convolutional autoencoders on Fashion-MNIST for several latent sizes, against PCA.

Writes reconstruction.md/json (test MSE per pixel for each latent size: dense, conv, PCA),
reconstructions.png (originals vs reconstructions per latent size), interpolation.png (a
latent interpolation strip between two test images) and the trained models.

    python experiments/autoencoder.py [--latents 2 8 16 32 64] [--epochs 10] [--limit N]
"""

import argparse

import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA

import diynn
from diynn_experiments.autoencoders import (
    add_arguments,
    flat,
    load_images,
    mse_per_pixel,
    reconstruct,
    train_autoencoder,
)
from diynn_experiments.common import (
    backend_info,
    output_dir,
    plot_image_rows,
    run,
    save_figure,
    write_atomic,
    write_json,
)

KINDS = ("dense", "conv")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, epochs=6, out="results/autoencoder")
    parser.add_argument("--latents", type=int, nargs="+", default=[2, 8, 16, 32, 64], help="latent sizes compared")
    args = parser.parse_args(argv)
    out = output_dir(args.out)
    x_train, _, x_test, _, _ = load_images(args)

    results, reconstructions, models = {}, {}, {}
    for latent in args.latents:
        pca = PCA(n_components=latent, random_state=args.seed).fit(flat(x_train))
        pca_test = np.clip(pca.inverse_transform(pca.transform(flat(x_test))), 0, 1)
        row = {"pca": mse_per_pixel(pca_test, flat(x_test))}
        reconstructions[("pca", latent)] = pca_test[:8]
        for kind in KINDS:
            model, history, seconds = train_autoencoder(kind, latent, x_train, args)
            reconstructions[(kind, latent)] = reconstruct(model, kind, x_test[:8])
            row[kind] = mse_per_pixel(reconstruct(model, kind, x_test), x_test)
            row[f"{kind}_train_s"] = seconds
            models[(kind, latent)] = model
            diynn.save_model(model, out / f"{kind}_ae_{latent}.npz")
            print(f"latent {latent:3d} {kind:5s}: test MSE {row[kind]:.5f} (PCA {row['pca']:.5f}), {seconds:.0f} s")
        results[latent] = row

    table = ["| latent size | dense AE | conv AE | PCA |", "|---|---|---|---|"]
    table += [f"| {k} | {r['dense']:.5f} | {r['conv']:.5f} | {r['pca']:.5f} |" for k, r in results.items()]
    text = "Test reconstruction MSE per pixel (Fashion-MNIST, images in [0, 1]):\n\n" + "\n".join(table) + "\n"
    write_atomic(out / "reconstruction.md", text)
    write_json(out / "metrics.json", {"config": vars(args), "results": results, **backend_info()})
    plot_reconstructions(x_test[:8], reconstructions, args.latents, out / "reconstructions.png")
    plot_error_by_latent(results, out / "error_by_latent.png")
    middle = args.latents[len(args.latents) // 2]
    plot_interpolation(models[("conv", middle)], x_test, out / "interpolation.png", middle)
    print(text)
    return results


def plot_error_by_latent(results, path):
    """Test reconstruction error against latent size, one line per method."""
    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    latents = list(results)
    for method, label in (("dense", "dense autoencoder"), ("conv", "conv autoencoder"), ("pca", "PCA")):
        axis.plot(latents, [results[k][method] for k in latents], marker="o", label=label)
    axis.set_xscale("log", base=2)
    axis.set_xticks(latents, [str(k) for k in latents])
    axis.set_xlabel("latent size (components)")
    axis.set_ylabel("test MSE per pixel")
    axis.set_title("Reconstruction error by latent size (Fashion-MNIST)")
    axis.grid(alpha=0.3)
    axis.legend()
    save_figure(figure, path)


def plot_reconstructions(originals, reconstructions, latents, path):
    rows = {"original": originals}
    rows |= {
        f"{method} {latent}": reconstructions[(method, latent)] for latent in latents for method in (*KINDS, "pca")
    }
    title = "Test images and their reconstructions: autoencoders vs PCA, by latent size"
    plot_image_rows(rows, path, title, row_height=1.1, layout="constrained")


def plot_interpolation(model, images, path, latent, steps=9):
    """Decode straight-line mixtures of the latent codes of two test images."""
    backend = diynn.get_backend()
    model.eval()
    codes = model.encode(backend.asarray(images[:2]))
    weights = backend.asarray(np.linspace(0, 1, steps, dtype=np.float32)[:, None])
    mixed = codes[0:1, ...] * (1 - weights) + codes[1:2, ...] * weights
    decoded = backend.to_numpy(model.decode(mixed))
    figure, axes = plt.subplots(1, steps, figsize=(1.3 * steps, 1.6))
    for axis, image, weight in zip(axes, decoded, np.linspace(0, 1, steps)):
        axis.imshow(image.reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
        axis.set_title(f"{weight:.2f}", fontsize=7)
        axis.axis("off")
    figure.suptitle(f"conv autoencoder (latent {latent}): interpolation between two test images")
    save_figure(figure, path)


if __name__ == "__main__":
    run(main)
