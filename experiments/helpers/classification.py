"""Image classification on Fashion-MNIST or KMNIST: the shared implementation behind
experiments/fashion_mnist.py and experiments/kmnist.py.

A stratified validation split (10% by default; --validation 0 trains on the whole training set) is
held out of the training set; the test set is used once, for the final number. Writes metrics.json,
curves.png, confusion_matrix.png, misclassified.png and model.npz to the output folder.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

import diynn
from diynn import datasets

from .common import (
    add_progress_argument,
    backend_info,
    output_dir,
    plot_confusion_matrix,
    plot_curves,
    plot_image_grid,
    save_figure,
    write_atomic,
    write_json,
)

LOADERS = {"fashion-mnist": datasets.load_fashion_mnist, "kmnist": datasets.load_kmnist}
OPTIMIZERS = {"adam": diynn.Adam, "adamw": diynn.AdamW, "sgd": diynn.SGD}
# the default runs' epochs (the ResNet's: 80-95 s each here, 2 cores; 20 keep a run under 30 minutes;
# the ViT's: about 15 s each, from 1.37 s for an epoch of 5,040 images; 60 keep a run near 15 minutes)
MLP_EPOCHS, CNN_EPOCHS, RESNET_EPOCHS, VIT_EPOCHS = 20, 50, 20, 60
MODELS = ["mlp", "cnn", "resnet", "vit"]


def parse_args(dataset: str, argv=None):
    parser = argparse.ArgumentParser(description=f"Train a classifier on {dataset}. " + __doc__.split("\n\n")[1])
    parser.add_argument(
        "--model",
        choices=MODELS,
        default="mlp",
        help="the network: MLP, CNN, a small ResNet or a small vision transformer (ViT)",
    )
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=None,
        help="hidden layer sizes of the MLP (default 256 128), or of the CNN's head (default 256)",
    )
    parser.add_argument(
        "--channels",
        type=int,
        nargs="+",
        help="channels of the CNN's two conv blocks (default 32 64), or the ResNet's stage widths (default 16 32 64)",
    )
    parser.add_argument("--blocks", type=int, default=2, help="residual blocks per stage of the ResNet")
    parser.add_argument("--patch-size", type=int, default=7, help="the ViT's patch side (it divides 28)")
    parser.add_argument("--embed-dim", type=int, default=64, help="the ViT's token features")
    parser.add_argument("--depth", type=int, default=4, help="the ViT's encoder blocks")
    parser.add_argument("--heads", type=int, default=4, help="the attention heads of each ViT block")
    parser.add_argument("--mlp-ratio", type=float, default=2.0, help="the ViT blocks' MLP width per token feature")
    parser.add_argument(
        "--pooling", choices=["mean", "class"], default="mean", help="the ViT's: mean of the tokens, or a class token"
    )
    parser.add_argument(
        "--dropout",
        type=float,
        default=None,
        help="dropout before the CNN's output layer (default 0.3), or in the ViT's blocks (default 0)",
    )
    parser.add_argument(
        "--batch-norm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="batch normalisation in the CNN's conv blocks",
    )
    parser.add_argument("--activation", choices=["relu", "tanh", "sigmoid"], default="relu", help="the MLP's")
    parser.add_argument(
        "--optimizer",
        choices=sorted(OPTIMIZERS),
        default=None,
        help="the optimiser (default: sgd for the ResNet, adamw for the ViT, else adam)",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate, the peak of the cosine schedule (default: 0.1 with SGD, else 1e-3)",
    )
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD's momentum (with --optimizer sgd)")
    parser.add_argument(
        "--nesterov",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="SGD's momentum in Nesterov's form (with --optimizer sgd)",
    )
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=None,
        help="the optimiser's weight decay (default: 5e-4 for the ResNet with SGD, 0.05 for the ViT, else the "
        "optimiser's own: sgd and adam 0, adamw 0.01)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="epochs of linear warm-up before the cosine decay (default: 5 for the ViT, else 0)",
    )
    parser.add_argument(
        "--schedule",
        choices=["cosine", "constant"],
        default="cosine",
        help="learning rate: cosine decay to 0 over the epochs, or constant",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"default: {MLP_EPOCHS} for the MLP, {CNN_EPOCHS} for the CNN, {RESNET_EPOCHS} for the ResNet, "
        f"{VIT_EPOCHS} for the ViT",
    )
    parser.add_argument(
        "--shift",
        type=int,
        default=None,
        help="augmentation: shift each training image by up to this many pixels (default: 1 for an image model, 0 for "
        "the MLP)",
    )
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="augmentation: mirror half the training images left-right (image models; default: on for them)",
    )
    parser.add_argument(
        "--erase",
        type=float,
        default=0.0,
        help="augmentation: the probability that a training image gets a random rectangle (2-40%% of its area) set "
        "to 0 (random erasing, image models; 0.5 cost the ResNet 0.1 point at 20 epochs)",
    )
    parser.add_argument(
        "--flip-test",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="test-time augmentation: classify each test image by the mean of the class probabilities of "
        "the image and its mirror image (default: on for the ResNet trained with --flip; measured on Fashion-MNIST)",
    )
    parser.add_argument(
        "--label-smoothing",
        type=float,
        default=None,
        help="mix the targets with the uniform distribution (default: 0.1 for an image model, 0 for the MLP)",
    )
    parser.add_argument(
        "--validation",
        type=float,
        default=0.1,
        help="the fraction of the training set held out (stratified) to validate on after every epoch; 0 trains on "
        "the whole training set, for a final run whose recipe was chosen on the split",
    )
    parser.add_argument("--batch-size", type=int, default=128, help="images per step")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the split, the weights, the shuffling, augmentation"
    )
    parser.add_argument("--data-dir", default=None, help="folder with the data files (default: search, then download)")
    parser.add_argument(
        "--out",
        default=None,
        help=f"output folder (default: results/{dataset}-<model>, or results/{dataset}-activations "
        "with --compare-activations, so that no configuration overwrites another's files)",
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training and test samples")
    parser.add_argument("--compare-activations", action="store_true", help="train once per activation, one table")
    add_progress_argument(parser)
    parser.add_argument(
        "--cuda-graph", action="store_true", help="replay each training step from a CUDA graph (cupy backend)"
    )
    parser.add_argument(
        "--data-parallel",
        action="store_true",
        help="train on every rank of an MPI job (mpiexec -n 2 python ...), each on its share of every batch",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run whose checkpoint.npz (written after every epoch) is in --out",
    )
    args = parser.parse_args(argv)
    if args.data_parallel and (args.compare_activations or args.cuda_graph):
        parser.error("--data-parallel trains one model, eagerly: not with --compare-activations or --cuda-graph")
    if args.resume and (args.data_parallel or args.compare_activations):
        parser.error("--resume continues one model's run: not with --data-parallel or --compare-activations")
    recipe_defaults(args)
    if args.schedule == "cosine" and not 0 <= args.warmup < args.epochs:
        parser.error(f"--warmup must be in [0, epochs), got {args.warmup} of {args.epochs}")
    if (args.shift or args.flip or args.flip_test or args.erase) and args.model == "mlp":
        parser.error(
            "--shift, --flip, --erase and --flip-test (image augmentation) need an image model (cnn, resnet or vit)"
        )
    if not 0 <= args.validation < 1:
        parser.error(f"--validation is a fraction of the training set in [0, 1), got {args.validation}")
    if args.validation == 0 and args.compare_activations:
        parser.error("--compare-activations compares validation curves: it needs --validation above 0")
    if not 0 <= args.erase <= 1:
        parser.error(f"--erase is a probability in [0, 1], got {args.erase}")
    if args.channels is None:
        args.channels = [16, 32, 64] if args.model == "resnet" else [32, 64]
    if args.model == "cnn" and len(args.channels) != 2:
        parser.error(f"--channels: the CNN has two conv blocks, got {len(args.channels)} numbers")
    if args.hidden is None:
        args.hidden = [256, 128] if args.model == "mlp" else [256]
    if args.out is None:
        args.out = f"results/{dataset}-{'activations' if args.compare_activations else args.model}"
    if args.resume and not (Path(args.out) / "checkpoint.npz").is_file():
        parser.error(f"--resume: no checkpoint.npz in {args.out} (give the --out of the interrupted run)")
    return args


def recipe_defaults(args) -> None:
    """Fill in each option the command line left out with the model's recipe (see each option's help)."""
    if args.epochs is None:
        args.epochs = {"mlp": MLP_EPOCHS, "cnn": CNN_EPOCHS, "resnet": RESNET_EPOCHS, "vit": VIT_EPOCHS}[args.model]
    vit, resnet, image = args.model == "vit", args.model == "resnet", args.model != "mlp"
    if args.optimizer is None:
        args.optimizer = "adamw" if vit else ("sgd" if resnet else "adam")
    if args.lr is None:
        args.lr = 0.1 if args.optimizer == "sgd" else 1e-3
    if args.weight_decay is None and (vit or (resnet and args.optimizer == "sgd")):
        args.weight_decay = 0.05 if vit else 5e-4
    if args.warmup is None:
        args.warmup = min(5, args.epochs - 1) if vit else 0
    if args.dropout is None:
        args.dropout = 0.0 if vit else 0.3
    if args.label_smoothing is None:
        args.label_smoothing = 0.1 if image else 0.0
    if args.shift is None:
        args.shift = 1 if image else 0
    if args.flip is None:
        args.flip = image
    if args.flip_test is None:
        args.flip_test = resnet and args.flip


def load_splits(dataset: str, args):
    """(train, validation, test) pairs of host arrays and the class names; validation is None with
    --validation 0."""
    data = LOADERS[dataset](root=args.data_dir, flat=args.model == "mlp")
    from sklearn.model_selection import train_test_split  # after the data: a missing data set exits without it

    x, y, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    if args.limit:
        x, y, x_test, y_test = x[: args.limit], y[: args.limit], x_test[: args.limit], y_test[: args.limit]
    if args.validation == 0:
        return (x, y), None, (x_test, y_test), data.class_names
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=args.validation, stratify=y, random_state=args.seed
    )
    return (x_train, y_train), (x_val, y_val), (x_test, y_test), data.class_names


def build_model(args, input_shape):
    if args.model == "resnet":
        return diynn.resnet(widths=args.channels, blocks=args.blocks, rng=args.seed)
    if args.model == "vit":
        return diynn.vit(
            patch_size=args.patch_size,
            embed_dim=args.embed_dim,
            depth=args.depth,
            num_heads=args.heads,
            mlp_ratio=args.mlp_ratio,
            dropout=args.dropout,
            pooling=args.pooling,
            rng=args.seed,
        )
    if args.model == "cnn":
        return diynn.cnn(
            channels=args.channels,
            hidden=args.hidden[0],
            dropout=args.dropout,
            batch_norm=args.batch_norm,
            rng=args.seed,
        )
    return diynn.mlp([input_shape[0], *args.hidden, 10], activation=args.activation, rng=args.seed)


def augmentation(args):
    """The training images' random shifts, flips and erased rectangles, or None."""
    steps = [diynn.RandomShift(args.shift, rng=args.seed + 1)] if args.shift else []
    if args.flip:
        steps.append(diynn.RandomHorizontalFlip(rng=args.seed + 2))
    if args.erase:
        steps.append(diynn.RandomErasing(p=args.erase, scale=(0.02, 0.4), rng=args.seed + 3))
    return diynn.Compose(*steps) if len(steps) > 1 else (steps[0] if steps else None)


def recipe_trainer(args, model, communicator=None):
    """The Trainer of args' recipe for `model` (its optimiser, cross-entropy with its label
    smoothing) and the recipe's schedule as epoch callbacks."""
    options = {} if args.weight_decay is None else {"weight_decay": args.weight_decay}
    if args.optimizer == "sgd":
        options.update(momentum=args.momentum, nesterov=args.nesterov and args.momentum > 0)
    optimizer = OPTIMIZERS[args.optimizer](model.parameters(), lr=args.lr, **options)
    loss = diynn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    trainer = diynn.Trainer(model, loss, optimizer, communicator=communicator)
    schedule = diynn.CosineLR(optimizer, args.epochs, warmup=args.warmup)
    return trainer, ([schedule] if args.schedule == "cosine" else [])


def train(args, splits, activation=None, communicator=None):
    """Train one model (data-parallel with a communicator); returns (model, history, test
    accuracy, test predictions, seconds)."""
    if activation:
        args = argparse.Namespace(**{**vars(args), "activation": activation})
    (x_train, y_train), validation, (x_test, y_test), _ = splits
    model = build_model(args, x_train.shape[1:])
    trainer, callbacks = recipe_trainer(args, model, communicator)
    augment = augmentation(args)
    # one model's run saves its state after every epoch (--resume continues it)
    checkpoint = None if communicator is not None or activation else Path(args.out) / "checkpoint.npz"
    start = time.perf_counter()
    history = trainer.fit(
        x_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_data=validation,
        seed=args.seed,
        progress=args.progress,
        callbacks=callbacks,
        augment=augment,
        cuda_graph=args.cuda_graph,
        checkpoint=checkpoint,
        resume=checkpoint if args.resume else None,
    )
    seconds = time.perf_counter() - start
    predictions = predicted_classes(model, x_test, args.flip_test)
    return model, history, float(np.mean(predictions == y_test)), predictions, seconds


def predicted_classes(model, x, flip: bool):
    """The classes (N,) the model gives the images x (N, ...): the argmax of its logits, or with
    `flip` of the mean of its class probabilities for each image and its left-right mirror image."""
    backend = diynn.get_backend()
    scores = diynn.predict(model, x)
    if flip:
        mirrored = diynn.predict(model, np.ascontiguousarray(x[..., ::-1]))
        scores = diynn.functional.softmax(scores)[0] + diynn.functional.softmax(mirrored)[0]
    return backend.to_numpy(backend.xp.argmax(scores, axis=1))


def main(dataset: str, argv=None) -> dict:
    args = parse_args(dataset, argv)
    start = time.perf_counter()
    splits = load_splits(dataset, args)
    from sklearn.metrics import confusion_matrix  # after the data: a missing data set exits without scikit-learn

    out = output_dir(args.out)
    if args.compare_activations:
        return compare_activations(dataset, args, splits, out)
    communicator = None
    if args.data_parallel:
        from diynn.training.distributed import communicator as make_communicator

        communicator = make_communicator(diynn.get_backend())
        communicator.abort_on_exception()  # a failing rank ends the job instead of hanging the others
    model, history, test_accuracy, predictions, train_seconds = train(args, splits, communicator=communicator)
    if communicator is not None and communicator.rank != 0:  # the ranks hold the same model: rank 0 reports
        return {"test_accuracy": test_accuracy, "rank": communicator.rank}
    (_, _), _, (x_test, y_test), class_names = splits
    title = f"{dataset} {args.model} ({args.activation})"
    plot_curves(history, out / "curves.png", title=title)
    plot_confusion_matrix(
        confusion_matrix(y_test, predictions, labels=range(10)),
        class_names,
        out / "confusion_matrix.png",
        title=f"{title}: test accuracy {test_accuracy:.4f}",
    )
    wrong = np.flatnonzero(predictions != y_test)[:32]
    plot_image_grid(
        x_test[wrong],
        [f"{class_names[y_test[i]]} -> {class_names[predictions[i]]}" for i in wrong],
        out / "misclassified.png",
        title="misclassified test images (true -> predicted)",
    )
    diynn.save_model(model, out / "model.npz")
    metrics = {
        "dataset": dataset,
        "config": vars(args),
        "history": history,
        "test_accuracy": test_accuracy,
        "epoch_time_s": float(np.mean(history["time"])),
        "train_time_s": train_seconds,
        "wall_time_s": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ranks": communicator.size if communicator is not None else 1,
        **backend_info(),
    }
    write_json(out / "metrics.json", metrics)
    validated = f"best validation {max(history['val_accuracy']):.4f}" if "val_accuracy" in history else "no validation"
    print(
        f"{dataset} {args.model}: test accuracy {test_accuracy:.4f} after {len(history['loss'])} epochs "
        f"({validated}); {metrics['epoch_time_s']:.2f} s/epoch, "
        f"{metrics['wall_time_s']:.1f} s in all on {metrics['backend']}; files in {out}"
    )
    return metrics


def compare_activations(dataset, args, splits, out) -> dict:
    """The same MLP trained with each activation: a markdown table and one figure."""
    import matplotlib.pyplot as plt

    results = {}
    figure, axis = plt.subplots(figsize=(6, 4))
    for activation in ("relu", "tanh", "sigmoid"):
        _, history, test_accuracy, _, seconds = train(args, splits, activation)
        results[activation] = {
            "test_accuracy": test_accuracy,
            "best_val_accuracy": max(history["val_accuracy"]),
            "final_train_loss": history["loss"][-1],
            "train_time_s": seconds,
            "history": history,
        }
        axis.plot(range(1, len(history["val_accuracy"]) + 1), history["val_accuracy"], label=activation)
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation accuracy")
    axis.set_title(f"{dataset}: MLP {args.hidden} by activation")
    axis.grid(alpha=0.3)
    axis.legend()
    save_figure(figure, out / "activations.png")
    rows = [
        "| activation | test accuracy | best validation accuracy | final train loss | train time (s) |",
        "|---|---|---|---|---|",
    ]
    rows += [
        f"| {name} | {r['test_accuracy']:.4f} | {r['best_val_accuracy']:.4f} | {r['final_train_loss']:.4f} "
        f"| {r['train_time_s']:.1f} |"
        for name, r in results.items()
    ]
    table = "\n".join(rows) + "\n"
    write_atomic(out / "activations.md", table)
    write_json(out / "activations.json", {"config": vars(args), "results": results, **backend_info()})
    print(table)
    return results
