"""The experiment scripts, run as a user would, on small settings."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))


def test_iris_reaches_target(tmp_path):
    import iris

    metrics = iris.main(["--out", str(tmp_path)])
    assert metrics["test_accuracy"] >= 0.96
    assert json.loads((tmp_path / "metrics.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
    assert (tmp_path / "loss_curve.png").stat().st_size > 0
    assert (tmp_path / "model.npz").stat().st_size > 0


def test_two_layer_writes_figures(tmp_path):
    import two_layer

    metrics = two_layer.main(["--epochs", "30", "--samples", "200", "--out", str(tmp_path)])
    assert metrics["classification"]["train_accuracy"] > 0.8
    assert {"regression_fit.png", "decision_boundary.png", "metrics.json"} <= {p.name for p in tmp_path.iterdir()}


@pytest.mark.parametrize("name", ["nope", "cupy"])
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
