"""The SimCLR encoder judged by the self-supervised literature's protocol, over several seeds.

For each seed, the encoder pretrained by self_supervised.py's recipe (loaded from --encoders, or
pretrained here) and the same architecture with that seed's random initial weights (its batch-norm
statistics re-estimated on the training images) are read at the last feature map, globally pooled
(64 numbers) and flattened (3136), and judged on the test set by cosine k-NN (k = 200,
temperature 0.07, all labels) and by linear probes on 10 labelled images per class, 1%, 10% and
100% of the labels; pixels, PCA-64 and a conv autoencoder's codes are judged once. The baseline a
user would reach for, the default CNN (fashion_mnist.py --model cnn's recipe) trained from scratch
on the same labelled images, gets epochs scaled to the share (34 x 100% / share, at most
--scratch-max-epochs) and early stopping on a stratified 10% of them; at 100% it is the default run
itself, read from the seed's metrics.json under --default-runs where it was made with that recipe,
else trained here. Means and spreads over the seeds go into a table, the label-efficiency figure
and metrics.json.

    python experiments/self_supervised_protocol.py [--seeds 0 1 2] [--encoders FOLDER]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import self_supervised
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split

import diynn
from diynn_experiments import classification
from diynn_experiments.autoencoders import flat, load_images
from diynn_experiments.common import (
    add_progress_argument,
    backend_info,
    output_dir,
    run,
    save_figure,
    write_atomic,
    write_json,
)
from diynn_experiments.representation import (
    LABEL_SUBSETS,
    judge,
    label_subsets,
    pooled_and_flattened,
    reestimate_batch_norm,
)

PRETRAINED, RANDOM = "SimCLR-pretrained encoder", "random-init encoder (batch norm re-estimated)"
SCRATCH = "default CNN from scratch (fashion_mnist.py --model cnn's recipe)"
# the recipe's settings a default run's metrics.json must show to stand for the 100% row
CNN_RECIPE = ("model", "channels", "hidden", "dropout", "batch_norm", "optimizer", "lr", "schedule", "epochs", "shift")
CNN_RECIPE += ("flip", "label_smoothing", "batch_size", "limit")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="pretraining and init seeds")
    parser.add_argument(
        "--encoders",
        default="results/self_supervised_protocol/encoders",
        help="folder of encoder_seed<k>.npz and pretrain_seed<k>.json (reused where made by the same recipe)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="pretraining epochs (default: self_supervised.py's)")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="pretraining batch (default: self_supervised.py's)"
    )
    parser.add_argument(
        "--autoencoder", default="results/autoencoder/conv_ae_32.npz", help="autoencoder.py's conv AE to compare with"
    )
    parser.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST files (default: search)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training and test images")
    parser.add_argument(
        "--scratch-max-epochs", type=int, default=200, help="most epochs of the from-scratch CNN on few labels"
    )
    parser.add_argument(
        "--default-runs",
        default="results",
        help="folder of the default CNN runs (fashion-mnist-cnn for seed 0, fashion-mnist-cnn-seed<k>): the 100%% row",
    )
    parser.add_argument("--out", default="results/self_supervised_protocol", help="output folder")
    add_progress_argument(parser)
    return parser.parse_args(argv)


def pretraining_settings(seed, args):
    """self_supervised.py's recipe for this seed (its defaults, unless --epochs or --batch-size)."""
    options = ["--seed", str(seed), "--no-progress"]
    options += ["--epochs", str(args.epochs)] if args.epochs is not None else []
    options += ["--batch-size", str(args.batch_size)] if args.batch_size is not None else []
    options += ["--limit", str(args.limit)] if args.limit is not None else []
    return self_supervised.parse_args(options)


def encoder_of(seed, x_train, args):
    """The seed's pretrained encoder (from --encoders where its record shows this recipe, else
    pretrained now and saved there) and its pretraining minutes. The seed-0 encoder of
    self_supervised.py is the same: its encoder.npz and pretrain.json may be copied in."""
    path = Path(args.encoders) / f"encoder_seed{seed}.npz"
    record = path.with_name(f"pretrain_seed{seed}.json")
    settings = pretraining_settings(seed, args)
    expected = self_supervised.recipe(settings)
    if path.is_file():
        made = json.loads(record.read_text()) if record.is_file() else {}
        if made.get("recipe") != expected:
            raise SystemExit(
                f"{path} was not pretrained by this recipe (its record {record.name}: {made.get('recipe')}; "
                f"this run's: {expected}): give another --encoders folder, or remove it to pretrain again"
            )
        return diynn.load_model(path), made["seconds"] / 60
    encoder = diynn.cnn_encoder(rng=seed)
    history, seconds = self_supervised.pretrain(encoder, x_train, settings)
    diynn.save_model(encoder, path)
    write_atomic(record, json.dumps(self_supervised.pretraining_record(settings, history, seconds)))
    return encoder, seconds / 60


def main(argv=None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    out = output_dir(args.out)
    x_train, y_train, x_test, y_test, _ = load_images(args)
    results: dict[str, list] = {}  # "<representation> / <pooled|flattened>" -> one dict per seed
    minutes = []
    for seed in args.seeds:
        subsets = label_subsets(y_train, seed)
        encoder, spent = encoder_of(seed, x_train, args)
        minutes.append(spent)
        random_init = diynn.cnn_encoder(rng=seed)
        reestimate_batch_norm(random_init, x_train)
        for name, model in ((PRETRAINED, encoder.eval()), (RANDOM, random_init)):
            train, test = pooled_and_flattened(model, x_train), pooled_and_flattened(model, x_test)
            for kind in ("pooled", "flattened"):
                scores = judge(train[kind], y_train, test[kind], y_test, subsets, seed)
                results.setdefault(f"{name} / {kind}", []).append(scores)
                print(f"seed {seed}, {name}, {kind}: {scores}", flush=True)
        scratch = {}  # the whole CNN trained on each subset's labels, in the probes' columns
        for name, chosen in subsets.items():
            scratch[f"probe {name}"] = from_scratch(x_train, y_train, x_test, y_test, chosen, seed, args)
        results.setdefault(SCRATCH, []).append(scratch)
        print(f"seed {seed}, {SCRATCH}: {scratch}", flush=True)
    subsets = label_subsets(y_train, args.seeds[0])
    pca = PCA(n_components=64, random_state=args.seeds[0]).fit(flat(x_train))
    codes = self_supervised.autoencoder_codes(
        x_train, x_test, argparse.Namespace(autoencoder=args.autoencoder, seed=args.seeds[0])
    )
    for name, (train, test) in {
        "raw pixels": (flat(x_train), flat(x_test)),
        "PCA-64 of the pixels": (pca.transform(flat(x_train)), pca.transform(flat(x_test))),
        "conv autoencoder codes (latent 32)": codes,
    }.items():
        results[name] = [judge(train, y_train, test, y_test, subsets, args.seeds[0])]
    text = table(results, args, minutes, len(x_train))
    write_atomic(out / "protocol.md", text)
    plot_label_efficiency(results, out / "label_efficiency.png")
    metrics = {"config": vars(args), "results": results, "pretraining_minutes": minutes}
    write_json(out / "metrics.json", {**metrics, "wall_time_s": time.perf_counter() - start, **backend_info()})
    print(text)
    return metrics


def from_scratch(x_train, y_train, x_test, y_test, chosen, seed, args) -> float:
    """Test accuracy of the default CNN trained from scratch on the labelled images `chosen`
    (fashion_mnist.py --model cnn's recipe: its augmentation, label smoothing, Adam, cosine schedule),
    epochs scaled to their share, early stopping on a stratified 10% of them (the best epoch kept)."""
    default = _default_run(seed, args) if len(chosen) == len(x_train) else None
    if default is not None:
        return default
    epochs = min(args.scratch_max_epochs, round(classification.CNN_EPOCHS * len(x_train) / len(chosen)))
    recipe = classification.parse_args(
        "fashion-mnist", ["--model", "cnn", "--epochs", str(epochs), "--seed", str(seed), "--no-progress"]
    )
    x, x_val, y, y_val = _validation_split(x_train[chosen], y_train[chosen], seed)
    model = classification.build_model(recipe, x.shape[1:])
    trainer, schedule = classification.recipe_trainer(recipe, model)
    stopping = diynn.EarlyStopping(model, "val_loss", patience=max(5, epochs // 10))
    trainer.fit(
        x,
        y,
        epochs=epochs,
        batch_size=recipe.batch_size,
        validation_data=(x_val, y_val),
        seed=seed,
        progress=False,
        callbacks=[*schedule, stopping],
        augment=classification.augmentation(recipe),
    )
    return diynn.accuracy(model, x_test, y_test)


def _validation_split(x, y, seed):
    """(x, x_val, y, y_val): a tenth of the labelled images held out, stratified where every class
    can give one image to each side."""
    _, counts = np.unique(y, return_counts=True)
    stratify = y if counts.min() >= 2 and len(y) // 10 >= len(counts) else None
    return train_test_split(x, y, test_size=max(1, len(y) // 10), stratify=stratify, random_state=seed)


def _default_run(seed, args) -> float | None:
    """The test accuracy of the seed's default CNN run under --default-runs, if it was made with
    the default recipe on the same images."""
    folder = Path(args.default_runs) / ("fashion-mnist-cnn" if seed == 0 else f"fashion-mnist-cnn-seed{seed}")
    if not (folder / "metrics.json").is_file():
        return None
    run = json.loads((folder / "metrics.json").read_text())
    recipe = vars(classification.parse_args("fashion-mnist", ["--model", "cnn", "--seed", str(seed)]))
    recipe["limit"] = args.limit
    same = all(run["config"].get(key) == recipe[key] for key in CNN_RECIPE) and run["config"]["seed"] == seed
    return run["test_accuracy"] if same else None


def summary(scores: list[dict], key: str) -> tuple[float, float, float]:
    """Mean, standard deviation (n - 1; 0 for one seed) and range (max - min) over the seeds."""
    values = np.asarray([score[key] for score in scores])
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return float(values.mean()), std, float(values.max() - values.min())


def table(results, args, minutes, n_train) -> str:
    recipe = pretraining_settings(args.seeds[0], args)
    keys = ["knn", *(f"probe {name}" for name in LABEL_SUBSETS)]
    header = "| representation | cosine k-NN | " + " | ".join(f"probe, {name}" for name in LABEL_SUBSETS) + " |"
    rows = [header, "|---" * (len(keys) + 1) + "|"]
    for name, scores in results.items():
        cells = []
        for key in keys:
            if key not in scores[0]:  # the from-scratch CNN has no features for k-NN
                cells.append("—")
                continue
            mean, std, _ = summary(scores, key)
            cells.append(f"{mean:.4f}" + (f" ± {std:.4f}" if len(scores) > 1 else ""))
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    lines = [
        f"Fashion-MNIST, {n_train} training images; {len(args.seeds)} seeds {args.seeds} (mean ± standard "
        f"deviation over the seeds); test accuracy. Pretraining: self_supervised.py's recipe ({recipe.epochs} epochs, "
        f"batch {recipe.batch_size}, temperature {recipe.temperature}, crops of {recipe.min_crop:.0%}-100%, flips, "
        f"{self_supervised.view_jitter(recipe)}, the projection head on the {recipe.head_input} map), "
        + ", ".join(f"{m:.1f}" for m in minutes)
        + " min per seed.",
        "",
        *rows,
        "",
        f"The from-scratch row is the whole CNN trained on each column's labels, not a probe of frozen features "
        f"(epochs scaled to the share, at most {args.scratch_max_epochs}, early stopping on a tenth of them; "
        "at 100% the default runs).",
        "",
        "Targets (pooled features): " + "; ".join(_targets(results)) + ".",
    ]
    return "\n".join(lines) + "\n"


def _targets(results) -> list[str]:
    """Whether the pooled features gain >= 2 points over random init, by more than twice the
    spread: said for the spread as a standard deviation and as a range (max - min) over the seeds."""
    said = []
    for key, label in (("knn", "cosine k-NN"), ("probe 1%", "1%-label probe")):
        ours, ours_std, ours_range = summary(results[f"{PRETRAINED} / pooled"], key)
        random, random_std, random_range = summary(results[f"{RANDOM} / pooled"], key)
        gain, std, spread = ours - random, max(ours_std, random_std), max(ours_range, random_range)
        verdicts = [f"{'met' if gain >= 0.02 and gain > 2 * s else 'NOT met'} with the {name}" for name, s in (
            ("standard deviation", std), ("range", spread))]  # fmt: skip
        said.append(
            f"{label} gain {gain * 100:+.2f} points over random init (largest standard deviation "
            f"{std * 100:.2f}, range {spread * 100:.2f}): {', '.join(verdicts)} as the spread"
        )
    return said


def plot_label_efficiency(results, path):
    """Test accuracy against the labelled images: linear probes of both encoders (pooled solid,
    flattened dashed, one colour per encoder), of the pixels, and the CNN trained from scratch."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    positions = np.arange(len(LABEL_SUBSETS))
    colours = {PRETRAINED: "C0", RANDOM: "C1", SCRATCH: "C2", "raw pixels": "C3"}
    for name, scores in results.items():
        encoder, _, kind = name.partition(" / ")
        if encoder not in colours:
            continue
        means = [summary(scores, f"probe {s}")[0] for s in LABEL_SUBSETS]
        errors = [summary(scores, f"probe {s}")[1] for s in LABEL_SUBSETS]
        style = {"linestyle": "--", "marker": "s"} if kind == "flattened" else {"marker": "o"}
        label = f"{encoder}, {kind} features" if kind else encoder
        axis.errorbar(positions, means, yerr=errors, capsize=3, color=colours[encoder], label=label, **style)
    axis.set_xticks(positions, LABEL_SUBSETS)
    axis.set_xlabel("labelled training images")
    axis.set_ylabel("test accuracy")
    axis.set_title("Label efficiency: linear probes of frozen features, and the CNN from scratch\n"
                   "(error bars: standard deviation over seeds)", fontsize=10)  # fmt: skip
    axis.legend(fontsize=7)
    save_figure(figure, path)


if __name__ == "__main__":
    run(main)
