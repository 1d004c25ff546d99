"""Denoisers: a convolutional autoencoder and a U-Net (by default), trained alike on noisy inputs
(Gaussian noise, training only) to output the clean image. Reports the PSNR of the noisy test
inputs and of the denoised outputs for each noise level and denoiser, with an image grid (clean /
noisy / denoised by each).

    python experiments/denoising.py [--kind conv unet] [--noise 0.2 0.4] [--epochs 6] [--limit N]
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
    parser.add_argument(
        "--kind",
        choices=["dense", "conv", "unet"],
        nargs="+",
        default=["conv", "unet"],
        help="the denoisers, trained alike: dense or convolutional autoencoder, U-Net (skip connections)",
    )
    parser.add_argument("--latent", type=int, default=64, help="size of the autoencoders' latent code")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.2, 0.4], help="noise standard deviations")
    args = parser.parse_args(argv)
    out = output_dir(args.out)
    x_train, _, x_test, _, _ = load_images(args)
    backend = diynn.get_backend()

    results, rows_of_images = {kind: {} for kind in args.kind}, []
    for noise in args.noise:
        noisy = backend.to_numpy(diynn.add_noise(backend.asarray(x_test), noise, rng=args.seed + 1))
        rows_of_images.append((f"noisy {noise}", noisy[:8]))
        for kind in args.kind:
            model, _, seconds = train_autoencoder(kind, args.latent, x_train, args, noise_std=noise)
            denoised = reconstruct(model, kind, noisy)
            results[kind][noise] = {"psnr_noisy": psnr(noisy, x_test), "psnr_denoised": psnr(denoised, x_test)}
            results[kind][noise]["train_s"] = seconds
            rows_of_images.append((f"{kind} {noise}", denoised[:8]))
            diynn.save_model(model, out / f"denoising_{kind}_{noise}.npz")
            before, after = psnr(noisy, x_test), psnr(denoised, x_test)
            print(f"{kind}, noise {noise}: PSNR noisy {before:.2f} dB -> denoised {after:.2f} dB ({seconds:.0f} s)")

    rows = ["| denoiser | noise std | PSNR noisy input (dB) | PSNR denoised (dB) | gain (dB) | training (s) |"]
    rows.append("|---|---|---|---|---|---|")
    for kind, by_noise in results.items():
        for noise, r in by_noise.items():
            gain = r["psnr_denoised"] - r["psnr_noisy"]
            cells = [NAMES[kind], noise, f"{r['psnr_noisy']:.2f}", f"{r['psnr_denoised']:.2f}", f"{gain:+.2f}"]
            rows.append("| " + " | ".join(map(str, [*cells, f"{r['train_s']:.0f}"])) + " |")
    text = f"Fashion-MNIST test set, {args.epochs} epochs each (autoencoders' latent code {args.latent}):\n\n"
    text += "\n".join(rows) + "\n"
    write_atomic(out / "denoising.md", text)
    write_json(out / "metrics.json", {"config": vars(args), "results": results, **backend_info()})
    plot_grid(x_test[:8], rows_of_images, out / "denoising.png")
    print(text)
    return results


NAMES = {"dense": "dense autoencoder", "conv": "conv autoencoder", "unet": "U-Net"}


def plot_grid(clean, rows_of_images, path):
    plot_image_rows({"clean": clean, **dict(rows_of_images)}, path)


if __name__ == "__main__":
    run(main)
