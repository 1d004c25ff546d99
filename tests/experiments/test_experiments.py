"""The experiment scripts, run as a user would, on small settings."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


@pytest.mark.slow
def test_iris_reaches_target(tmp_path):
    import iris

    metrics = iris.main(["--out", str(tmp_path)])
    assert metrics["test_accuracy"] >= 0.96
    assert json.loads((tmp_path / "metrics.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
    assert (tmp_path / "loss_curve.png").stat().st_size > 0
    assert (tmp_path / "model.npz").stat().st_size > 0


@pytest.mark.slow
def test_two_layer_writes_figures(tmp_path):
    import two_layer

    metrics = two_layer.main(["--epochs", "30", "--samples", "200", "--out", str(tmp_path)])
    assert metrics["classification"]["test_accuracy"] > 0.8
    assert {"regression_fit.png", "decision_boundary.png", "metrics.json"} <= {p.name for p in tmp_path.iterdir()}


def _cupy_importable() -> bool:
    try:
        import cupy  # noqa: F401
    except ImportError:
        return False
    return True


def _commands(folder: Path) -> dict:
    """The script runs below, each in a fresh process with its own empty cache and home, and no data
    folders (no network is used: the download address is a closed loopback port): name -> (command, env)."""
    python, iris, kmnist = sys.executable, str(EXPERIMENTS / "iris.py"), str(EXPERIMENTS / "kmnist.py")
    missing_data = (
        "import sys, runpy, dataclasses; sys.argv = ['kmnist.py', '--limit', '10'];"
        "from diynn.datasets import loaders;"
        "loaders.KMNIST = dataclasses.replace(loaders.KMNIST, base_url='http://127.0.0.1:9/');"
        f"runpy.run_path({kmnist!r}, run_name='__main__')"
    )
    commands = {
        "backend-nope": ([python, iris, "--out", str(folder / "backend-nope" / "out")], {"DIYNN_BACKEND": "nope"}),
        "missing-data": ([python, "-c", missing_data], {}),
        "epoch-lines": ([python, iris, "--limit", "3", "--out", str(folder / "epoch-lines" / "out")], {}),
    }
    if not _cupy_importable():  # with CuPy, these would run
        commands["backend-cupy"] = (
            [python, iris, "--out", str(folder / "backend-cupy" / "out")],
            {"DIYNN_BACKEND": "cupy"},
        )
        commands["missing-gpu"] = [python, kmnist], {"DIYNN_BACKEND": "cupy"}
    for name, (_, environment) in commands.items():
        home = folder / name
        home.mkdir()
        environment.update({"PATH": "", "DIYNN_CACHE_DIR": str(home / "cache"), "HOME": str(home)})
    return commands


@pytest.fixture(scope="module")
def script_runs(tmp_path_factory):
    """The runs of _commands, started at once (each is mostly imports, on one core): name -> (its
    folder, its CompletedProcess)."""
    folder = tmp_path_factory.mktemp("scripts")
    started = {
        name: subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, (command, env) in _commands(folder).items()
    }
    runs = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=300)
        runs[name] = folder / name, subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return runs


@pytest.mark.parametrize("name", ["nope", "cupy"])
@pytest.mark.slow
def test_bad_backend_is_a_one_line_error(script_runs, name):
    if name == "cupy" and _cupy_importable():
        pytest.skip("CuPy is installed")
    _, result = script_runs[f"backend-{name}"]
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and name in result.stderr


@pytest.mark.slow
def test_missing_data_is_a_message_not_a_traceback(script_runs):
    folder, result = script_runs["missing-data"]
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: kmnist: files not found")
    assert "--data-dir FOLDER" in result.stderr and "DIYNN_DATA_DIR" in result.stderr
    assert "kmnist-train-imgs.npz" in result.stderr and str(folder / "cache") in result.stderr
    assert not (folder / "cache" / "kmnist").exists()  # no empty cache folder left behind


@pytest.mark.slow
def test_missing_gpu_is_reported_before_the_data(script_runs):
    if _cupy_importable():
        pytest.skip("CuPy is installed")
    _, result = script_runs["missing-gpu"]
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: backend 'cupy'") and result.stderr.count("\n") == 1


@pytest.mark.slow
def test_one_line_per_epoch_without_a_terminal_and_readable_files(script_runs):
    import os

    folder, result = script_runs["epoch-lines"]
    assert result.returncode == 0, result.stderr
    epoch_lines = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 3 and " s" in epoch_lines[0] and "loss" in epoch_lines[0]
    umask = os.umask(0)
    os.umask(umask)
    for path in (folder / "out").iterdir():
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path.name


def test_each_configuration_has_its_own_default_folder():
    from diynn_experiments import classification

    folders = {
        classification.parse_args("fashion-mnist", []).out,
        classification.parse_args("fashion-mnist", ["--model", "cnn"]).out,
        classification.parse_args("fashion-mnist", ["--compare-activations"]).out,
        classification.parse_args("kmnist", []).out,
    }
    assert folders == {
        "results/fashion-mnist-mlp",
        "results/fashion-mnist-cnn",
        "results/fashion-mnist-activations",
        "results/kmnist-mlp",
    }


def _augmentation(model, *argv):
    """The training augmentation fashion_mnist.py builds for --model `model` and the options argv."""
    from diynn_experiments import classification

    return classification.augmentation(classification.parse_args("fashion-mnist", ["--model", model, *argv]))


def test_augmentation_options_build_shifts_and_flips():
    import diynn
    from diynn_experiments import classification

    both = _augmentation("cnn")  # the CNN's default: 1-pixel shifts and left-right flips
    assert [type(step) for step in both.augmentations] == [diynn.RandomShift, diynn.RandomHorizontalFlip]
    assert isinstance(_augmentation("cnn", "--no-flip"), diynn.RandomShift)
    assert _augmentation("cnn", "--shift", "0", "--no-flip") is None
    assert isinstance(_augmentation("cnn", "--shift", "0"), diynn.RandomHorizontalFlip)
    with pytest.raises(SystemExit):  # augmentation is for images: not with the MLP
        classification.parse_args("fashion-mnist", ["--flip"])
    with pytest.raises(SystemExit):
        classification.parse_args("fashion-mnist", ["--flip-test"])


def test_the_erase_option_adds_random_erasing_after_the_shifts_and_flips():
    import diynn
    from diynn_experiments import classification

    steps = _augmentation("resnet", "--erase", "0.5").augmentations
    assert [type(step) for step in steps] == [diynn.RandomShift, diynn.RandomHorizontalFlip, diynn.RandomErasing]
    assert (steps[-1].p, steps[-1].scale, steps[-1].value) == (0.5, (0.02, 0.4), 0.0)
    assert isinstance(_augmentation("cnn", "--erase", "0.25", "--shift", "0", "--no-flip"), diynn.RandomErasing)
    for model in ("cnn", "resnet"):  # off unless asked for
        assert diynn.RandomErasing not in [type(step) for step in _augmentation(model).augmentations]
    for argv in (["--model", "resnet", "--erase", "1.5"], ["--model", "cnn", "--erase", "-0.1"], ["--erase", "0.5"]):
        with pytest.raises(SystemExit):  # not a probability; the MLP's inputs are not images
            classification.parse_args("fashion-mnist", argv)


def test_sgd_recipe_has_nesterov_momentum_unless_told():
    import diynn
    from diynn_experiments import classification

    def optimizer(*argv):
        args = classification.parse_args("fashion-mnist", ["--model", "cnn", "--optimizer", "sgd", *argv])
        return classification.recipe_trainer(args, diynn.cnn(channels=(2, 2), hidden=4, rng=0))[0].optimizer

    default = optimizer()
    assert isinstance(default, diynn.SGD) and (default.momentum, default.nesterov) == (0.9, True)
    assert optimizer("--no-nesterov").nesterov is False
    plain = optimizer("--momentum", "0")
    assert (plain.momentum, plain.nesterov) == (0.0, False)


def test_flip_test_averages_the_probabilities_of_an_image_and_its_mirror():
    import numpy as np

    import diynn
    from diynn_experiments import classification

    rng = np.random.default_rng(0)
    model = diynn.Sequential(diynn.Flatten(), diynn.Linear(12, 3, rng=0))  # not mirror-symmetric
    x = rng.standard_normal((64, 1, 3, 4)).astype(np.float32)

    def probabilities(images):
        logits = diynn.predict(model, images)
        exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exponentials / exponentials.sum(axis=1, keepdims=True)

    expected = np.argmax(probabilities(x) + probabilities(x[..., ::-1].copy()), axis=1)
    assert np.array_equal(classification.predicted_classes(model, x, flip=True), expected)
    plain = classification.predicted_classes(model, x, flip=False)
    assert np.array_equal(plain, np.argmax(diynn.predict(model, x), axis=1))
    assert not np.array_equal(plain, expected)  # the mirror images change some answers here


def test_each_model_has_its_recipe():
    from diynn_experiments import classification

    def recipe(model, *argv):
        args = classification.parse_args("fashion-mnist", ["--model", model, *argv])
        return args.optimizer, args.lr, args.weight_decay, args.flip_test

    assert recipe("resnet") == ("sgd", 0.1, 5e-4, True)
    assert recipe("resnet", "--optimizer", "adam") == ("adam", 1e-3, None, True)  # the SGD recipe's decay stays with it
    assert recipe("resnet", "--no-flip")[3] is False  # not trained on mirror images: none at test time either
    assert recipe("cnn") == ("adam", 1e-3, None, False)
    assert recipe("vit") == ("adamw", 1e-3, 0.05, False)
