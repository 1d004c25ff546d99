"""Denoising autoencoders: trained on noisy inputs (Gaussian noise, training only) to output the
clean image. Reports the PSNR of the noisy test inputs and of the denoised outputs for each
noise level, with an image grid (clean / noisy / denoised).

    python experiments/denoising.py [--noise 0.2 0.4] [--epochs 8] [--limit N]
"""

import argparse

import numpy as np

import diynn
from diynn_experiments.autoencoders import add_arguments, load_images, reconstruct, train_autoencoder
from diynn_experiments.common import (
    backend_info,
    output_dir,
    plot_image_rows,
    run,
    write_atomic,
    write_json,
)


def psnr(a, b) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]: 10 log10(1 / MSE)."""
    return float(10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, epochs=6, out="results/denoising")
    parser.add_argument("--kind", choices=["dense", "conv"], default="conv", help="autoencoder: dense or convolutional")
    parser.add_argument("--latent", type=int, default=64, help="size of the latent code")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.2, 0.4], help="noise standard deviations")
    args = parser.parse_args(argv)
    out = output_dir(args.out)
    x_train, _, x_test, _, _ = load_images(args)
    backend = diynn.get_backend()

    results, rows_of_images = {}, []
    for noise in args.noise:
        model, _, seconds = train_autoencoder(args.kind, args.latent, x_train, args, noise_std=noise)
        noisy = backend.to_numpy(diynn.add_noise(backend.asarray(x_test), noise, rng=args.seed + 1))
        denoised = reconstruct(model, args.kind, noisy)
        results[noise] = {
            "psnr_noisy": psnr(noisy, x_test),
            "psnr_denoised": psnr(denoised, x_test),
            "train_s": seconds,
        }
        rows_of_images.append((noise, noisy[:8], denoised[:8]))
        diynn.save_model(model, out / f"denoising_{args.kind}_{noise}.npz")
        print(
            f"noise {noise}: PSNR noisy {results[noise]['psnr_noisy']:.2f} dB -> "
            f"denoised {results[noise]['psnr_denoised']:.2f} dB ({seconds:.0f} s)"
        )

    rows = ["| noise std | PSNR noisy input (dB) | PSNR denoised (dB) | gain (dB) |", "|---|---|---|---|"]
    rows += [
        f"| {noise} | {r['psnr_noisy']:.2f} | {r['psnr_denoised']:.2f} | {r['psnr_denoised'] - r['psnr_noisy']:+.2f} |"
        for noise, r in results.items()
    ]
    text = (
        f"Fashion-MNIST test set, {args.kind} denoising autoencoder (latent {args.latent}):\n\n"
        + "\n".join(rows)
        + "\n"
    )
    write_atomic(out / "denoising.md", text)
    write_json(out / "metrics.json", {"config": vars(args), "results": results, **backend_info()})
    plot_grid(x_test[:8], rows_of_images, out / "denoising.png")
    print(text)
    return results


def plot_grid(clean, rows_of_images, path):
    rows = {"clean": clean}
    for noise, noisy, denoised in rows_of_images:
        rows |= {f"noisy {noise}": noisy, f"denoised {noise}": denoised}
    plot_image_rows(rows, path)


if __name__ == "__main__":
    run(main)
