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


@pytest.mark.parametrize("name", ["nope", "cupy"])
@pytest.mark.slow
def test_bad_backend_is_a_one_line_error(tmp_path, name):
    try:
        import cupy  # noqa: F401

        if name == "cupy":
            pytest.skip("CuPy is installed")
    except ImportError:
        pass
    result = subprocess.run(
        [sys.executable, str(EXPERIMENTS / "iris.py"), "--out", str(tmp_path)],
        env={"DIYNN_BACKEND": name, "PATH": ""},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and name in result.stderr


def _run_script(script, *arguments, environment=None, tmp_path):
    """A script in a fresh process with an empty cache and no data folders (no network is used:
    the download address is a closed loopback port)."""
    env = {
        "PATH": "",
        "DIYNN_CACHE_DIR": str(tmp_path / "cache"),
        "HOME": str(tmp_path),
        **(environment or {}),
    }
    return subprocess.run(
        [sys.executable, str(EXPERIMENTS / script), *arguments], env=env, capture_output=True, text=True
    )


@pytest.mark.slow
def test_missing_data_is_a_message_not_a_traceback(tmp_path):
    code = (
        "import sys, runpy, dataclasses; sys.argv = ['kmnist.py', '--limit', '10'];"
        "from diynn.datasets import loaders;"
        "loaders.KMNIST = dataclasses.replace(loaders.KMNIST, base_url='http://127.0.0.1:9/');"
        f"runpy.run_path({str(EXPERIMENTS / 'kmnist.py')!r}, run_name='__main__')"
    )
    env = {"PATH": "", "DIYNN_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: kmnist: files not found")
    assert "--data-dir FOLDER" in result.stderr and "DIYNN_DATA_DIR" in result.stderr
    assert "kmnist-train-imgs.npz" in result.stderr and str(tmp_path / "cache") in result.stderr
    assert not (tmp_path / "cache" / "kmnist").exists()  # no empty cache folder left behind


@pytest.mark.slow
def test_missing_gpu_is_reported_before_the_data(tmp_path):
    try:
        import cupy  # noqa: F401

        pytest.skip("CuPy is installed")
    except ImportError:
        pass
    result = _run_script("kmnist.py", environment={"DIYNN_BACKEND": "cupy"}, tmp_path=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: backend 'cupy'") and result.stderr.count("\n") == 1


@pytest.mark.slow
def test_one_line_per_epoch_without_a_terminal_and_readable_files(tmp_path):
    import os

    result = _run_script("iris.py", "--limit", "3", "--out", str(tmp_path / "out"), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    epoch_lines = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 3 and " s" in epoch_lines[0] and "loss" in epoch_lines[0]
    umask = os.umask(0)
    os.umask(umask)
    for path in (tmp_path / "out").iterdir():
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


def test_augmentation_options_build_shifts_and_flips():
    import diynn
    from diynn_experiments import classification

    def augmentation(*argv):
        return classification.augmentation(classification.parse_args("fashion-mnist", ["--model", "cnn", *argv]))

    both = augmentation()  # the CNN's default: 1-pixel shifts and left-right flips
    assert [type(step) for step in both.augmentations] == [diynn.RandomShift, diynn.RandomHorizontalFlip]
    assert isinstance(augmentation("--no-flip"), diynn.RandomShift)
    assert augmentation("--shift", "0", "--no-flip") is None
    assert isinstance(augmentation("--shift", "0"), diynn.RandomHorizontalFlip)
    with pytest.raises(SystemExit):  # augmentation is for images: not with the MLP
        classification.parse_args("fashion-mnist", ["--flip"])
