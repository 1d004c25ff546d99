"""Hyperparameter search with Optuna for the Fashion-MNIST MLP or CNN.

Each trial trains on the training split and reports the validation accuracy after every epoch,
so that the pruner stops unpromising trials early. Several workers can share one study:

    python experiments/hpo.py --trials 20 --limit 10000                 # one worker, journal file
    python experiments/hpo.py --trials 40 --workers-only &               # more workers on the same study ...
    python experiments/hpo.py --trials 40 --workers-only &               # ... then one without --workers-only
    python experiments/hpo.py --storage sqlite:///results/hpo/study.db   # SQLite
    python experiments/hpo.py --storage postgresql://user:pw@host/db     # workers on several machines

`--trials` is the size of the whole study: workers stop when it has that many finished trials.
The study records the settings its trials are judged under (--model, --epochs, --limit,
--validation, --seed); a worker started with others is refused, naming them.
A killed worker loses only its running trial; running the command again resumes the study.
Without --workers-only, the best configuration is retrained on train + validation and tested,
and the results go to the output folder: metrics.json (the best trial, its test accuracy),
history.png, importances.png.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

import diynn
from diynn_experiments.classification import load_splits
from diynn_experiments.common import backend_info, output_dir, run, save_figure, write_json

DEFAULTS = {
    "mlp": {
        "lr": 1e-3,
        "width": 256,
        "depth": 2,
        "dropout": 0.0,
        "weight_decay": 1e-6,
        "batch_size": 128,
        "activation": "relu",
    },
    "cnn": {
        "lr": 1e-3,
        "width": 128,
        "depth": 1,
        "dropout": 0.5,
        "weight_decay": 1e-6,
        "batch_size": 128,
        "activation": "relu",
    },
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["mlp", "cnn"], default="mlp", help="the network searched over")
    parser.add_argument("--trials", type=int, default=20, help="finished trials the study should reach")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per trial (and for the retraining)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training and test samples")
    parser.add_argument(
        "--validation",
        type=float,
        default=0.1,
        help="the fraction of the training set held out (stratified) to judge the trials",
    )
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default: a journal file in --out)")
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=30,
        help="seconds between a worker's heartbeats on an RDB storage; a trial silent for 3 of them is marked failed",
    )
    parser.add_argument("--study", default=None, help="study name (default: fashion-mnist-<model>)")
    parser.add_argument("--workers-only", action="store_true", help="run trials, skip retraining and plots")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the weights and the sampler")
    parser.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST files (default: search)")
    parser.add_argument("--out", default="results/hpo", help="output folder (and the journal file's)")
    args = parser.parse_args(argv)
    if not 0 < args.validation < 1:
        parser.error(f"--validation: the trials are judged on a held-out fraction in (0, 1), got {args.validation}")
    args.study = args.study or f"fashion-mnist-{args.model}"
    return args


# the settings a study's trials are judged under: workers sharing a study must agree on them
TRIAL_SETTINGS = ("model", "epochs", "limit", "validation", "seed")


def check_settings(study, args):
    """Record the trial settings in a study that has none; a SystemExit naming each difference where
    this worker's differ from the study's (its trials would not be comparable with the others')."""
    ours = {name: getattr(args, name) for name in TRIAL_SETTINGS}
    ours["limit"] = ours["limit"] or None  # --limit 0 is no limit too
    saved = study.user_attrs.get("settings")
    if saved is None:
        study.set_user_attr("settings", ours)
        saved = study.user_attrs["settings"]  # a worker started at the same moment may have written last
    if saved != ours:
        differing = [name for name in TRIAL_SETTINGS if saved.get(name) != ours[name]]
        differences = [f"--{name} {ours[name]} (the study's: {saved.get(name)})" for name in differing]
        raise SystemExit(f"study {args.study!r} judges its trials under other settings: {', '.join(differences)}")


def storage(args, optuna):
    """A journal file by default (safe for several processes on one machine); an RDB URL
    (sqlite://, postgresql://) with heartbeats, so that a killed worker's trial is marked failed."""
    if args.storage is None:
        path = output_dir(args.out) / f"{args.study}.journal"
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    interval = max(1, round(args.heartbeat))
    return optuna.storages.RDBStorage(args.storage, heartbeat_interval=interval, grace_period=3 * interval)


def build(params: dict, model: str, seed: int):
    if model == "cnn":
        return diynn.cnn(hidden=params["width"], dropout=params["dropout"], rng=seed)
    sizes = [784] + [params["width"]] * params["depth"] + [10]
    return diynn.mlp(sizes, activation=params["activation"], dropout=params["dropout"], rng=seed)


def train(params, args, train_data, validation_data=None, callbacks=()):
    model = build(params, args.model, args.seed)
    optimizer = diynn.AdamW(model.parameters(), lr=params["lr"], weight_decay=params["weight_decay"])
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), optimizer)
    history = trainer.fit(
        *train_data,
        epochs=args.epochs,
        batch_size=params["batch_size"],
        seed=args.seed,
        validation_data=validation_data,
        progress=False,
        callbacks=[diynn.CosineLR(optimizer, args.epochs), *callbacks],
    )
    return model, history


def suggest(trial) -> dict:
    return {
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "width": trial.suggest_int("width", 64, 512, log=True),
        "depth": trial.suggest_int("depth", 1, 3),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [64, 128, 256]),
        "activation": trial.suggest_categorical("activation", ["relu", "tanh"]),
    }


def main(argv=None) -> dict:
    import optuna

    args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    start = time.perf_counter()
    (x_train, y_train), (x_val, y_val), (x_test, y_test), _ = load_splits("fashion-mnist", args)
    study = optuna.create_study(
        study_name=args.study,
        storage=storage(args, optuna),
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=None if args.workers_only else args.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2),
    )
    check_settings(study, args)
    if not study.trials:  # the default configuration is trial 0: the search has to beat it
        study.enqueue_trial(DEFAULTS[args.model], skip_if_exists=True)

    def objective(trial):
        trial.set_user_attr("worker", f"{os.uname().nodename}:{os.getpid()}")

        def report(epoch, history):
            trial.report(history["val_accuracy"][-1], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        _, history = train(suggest(trial), args, (x_train, y_train), (x_val, y_val), callbacks=[report])
        return max(history["val_accuracy"])

    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))
    if done >= args.trials:  # optimize() would run one more before its callback stops it
        print(f"study {args.study!r} already has {done} finished trials (--trials {args.trials}): nothing to run")
    else:
        study.optimize(objective, callbacks=[optuna.study.MaxTrialsCallback(args.trials, states=finished)])
    if args.workers_only:
        return {"trials": len(study.trials)}
    return report_best(study, args, (x_train, y_train, x_val, y_val, x_test, y_test), start)


def report_best(study, args, data, start) -> dict:
    import optuna

    x_train, y_train, x_val, y_val, x_test, y_test = data
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    default = next((t for t in complete if t.number == 0), None)
    best = study.best_trial
    model, _ = train(best.params, args, (np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])))
    test_accuracy = diynn.accuracy(model, x_test, y_test)
    out = output_dir(args.out)
    diynn.save_model(model, out / "best_model.npz")
    plot_history(study, out / "history.png")
    if len(complete) >= 2:
        plot_importances(optuna.importance.get_param_importances(study), out / "importances.png")
    counts = {state.name.lower(): sum(t.state == state for t in study.trials) for state in optuna.trial.TrialState}
    result = {
        "best_params": best.params,
        "best_trial": best.number,
        "best_val_accuracy": best.value,
        "default_val_accuracy": default.value if default else None,
        "test_accuracy_retrained": test_accuracy,
        "trials": {k: v for k, v in counts.items() if v},
        "wall_time_s": time.perf_counter() - start,
        "config": vars(args),
        **backend_info(),
    }
    write_json(out / "metrics.json", result)
    print(
        f"best of {len(study.trials)} trials (#{best.number}): validation accuracy {best.value:.4f} "
        f"(default configuration: {result['default_val_accuracy']}); retrained test accuracy {test_accuracy:.4f}"
    )
    print(f"best configuration: {best.params}; trial states: {result['trials']}; files in {out}")
    return result


def plot_history(study, path):
    """Validation accuracy of every trial (pruned ones at their last reported epoch), and the best so far."""
    import matplotlib.pyplot as plt
    import optuna

    figure, axis = plt.subplots(figsize=(6.5, 4))
    for state, marker, label in (
        (optuna.trial.TrialState.COMPLETE, "o", "complete trial (best epoch)"),
        (optuna.trial.TrialState.PRUNED, "x", "pruned trial (last epoch reached)"),
    ):
        trials = [t for t in study.trials if t.state == state and (t.value is not None or t.intermediate_values)]
        values = [t.value if t.value is not None else t.intermediate_values[max(t.intermediate_values)] for t in trials]
        axis.scatter([t.number for t in trials], values, marker=marker, label=label)
    complete = sorted((t.number, t.value) for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    if complete:
        best, running = [], -1.0
        for _, value in complete:
            running = max(running, value)
            best.append(running)
        axis.step([n for n, _ in complete], best, where="post", color="C3", label="best so far")
    axis.set_xlabel("trial")
    axis.set_ylabel("validation accuracy")
    axis.set_title(f"Hyperparameter search: {len(study.trials)} trials")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    save_figure(figure, path)


def plot_importances(importances: dict, path):
    """fANOVA importance of each hyperparameter for the validation accuracy (Optuna's estimate)."""
    import matplotlib.pyplot as plt

    names = list(importances)[::-1]
    figure, axis = plt.subplots(figsize=(6, 0.45 * len(names) + 1.2))
    axis.barh(names, [importances[name] for name in names])
    axis.set_xlabel("importance for the validation accuracy (fraction of explained variance)")
    axis.set_title("Which hyperparameters mattered")
    axis.grid(alpha=0.3, axis="x")
    save_figure(figure, path)


if __name__ == "__main__":
    run(main)
