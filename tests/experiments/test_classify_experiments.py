"""fashion_mnist.py / kmnist.py end to end on generated files in the official layout."""

import json

import numpy as np
import pytest
from conftest import assert_same_weights, cupy_graph_refusal, stopped_after_checkpoint
from datasets_fixtures import FileServer, make_files, spec_for

import diynn
from diynn.datasets import loaders
from diynn_experiments import classification as classify

pytestmark = pytest.mark.slow  # the classification scripts end to end

N_TRAIN, N_TEST = 300, 16
EXPECTED_FILES = {"metrics.json", "curves.png", "confusion_matrix.png", "misclassified.png", "model.npz"}


@pytest.fixture
def generated(tmp_path, monkeypatch):
    monkeypatch.setenv("DIYNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DIYNN_DATA_DIR", raising=False)
    folder = tmp_path / "data"
    make_files(folder, n_train=N_TRAIN, n_test=N_TEST, separable=True)
    return folder


def test_fashion_mnist_script_writes_every_file(generated, tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "FASHION_MNIST", spec_for(generated, n_train=N_TRAIN, n_test=N_TEST))
    out = tmp_path / "out"
    metrics = classify.main(
        "fashion-mnist",
        ["--data-dir", str(generated), "--epochs", "8", "--out", str(out), "--hidden", "32", "--no-progress"],
    )
    assert EXPECTED_FILES <= {p.name for p in out.iterdir()}
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test_accuracy"] == metrics["test_accuracy"] > 0.5  # the generated classes are separable
    assert len(saved["history"]["val_accuracy"]) == 8 and saved["backend"] == diynn.get_backend().name


def test_kmnist_script_downloads_then_runs(generated, tmp_path, monkeypatch):
    files = {p.name: p.read_bytes() for p in generated.iterdir()}
    with FileServer(files) as server:
        monkeypatch.setattr(loaders, "KMNIST", spec_for(generated, server.url, n_train=N_TRAIN, n_test=N_TEST))
        out = tmp_path / "out"
        classify.main("kmnist", ["--epochs", "2", "--limit", "200", "--out", str(out), "--no-progress"])
    assert (tmp_path / "cache" / "kmnist" / "train-images-idx3-ubyte.gz").is_file()
    assert EXPECTED_FILES <= {p.name for p in out.iterdir()}


def test_validation_0_trains_on_the_whole_training_set(generated, tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "FASHION_MNIST", spec_for(generated, n_train=N_TRAIN, n_test=N_TEST))
    common = ["--data-dir", str(generated), "--hidden", "16", "--no-progress"]

    def splits(*argv):
        return classify.load_splits("fashion-mnist", classify.parse_args("fashion-mnist", [*common, *argv]))

    (x_train, y_train), validation, _, _ = splits("--validation", "0")
    assert validation is None and len(x_train) == len(y_train) == N_TRAIN
    (x_part, y_part), (x_val, y_val), _, _ = splits("--validation", "0.2")
    assert (len(x_part), len(x_val)) == (240, 60)
    assert np.array_equal(np.sort(np.concatenate([y_part, y_val])), np.sort(y_train))  # a split of the same set
    out = tmp_path / "out"
    metrics = classify.main("fashion-mnist", [*common, "--validation", "0", "--epochs", "3", "--out", str(out)])
    assert EXPECTED_FILES <= {p.name for p in out.iterdir()}
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert len(history["loss"]) == 3 and not any(key.startswith("val_") for key in history)
    assert metrics["test_accuracy"] > 0.5
    for argv in (["--validation", "1"], ["--validation", "-0.1"], ["--validation", "0", "--compare-activations"]):
        with pytest.raises(SystemExit):  # not a held-out fraction; comparing activations needs validation curves
            classify.parse_args("fashion-mnist", argv)


@pytest.mark.parametrize("dataset", ["fashion-mnist", "kmnist"])
def test_the_resnet_trains_on_either_data_set(generated, tmp_path, monkeypatch, dataset):
    spec = spec_for(generated, n_train=N_TRAIN, n_test=N_TEST)
    monkeypatch.setattr(loaders, "FASHION_MNIST" if dataset == "fashion-mnist" else "KMNIST", spec)
    out = tmp_path / "out"
    arguments = ["--data-dir", str(generated), "--model", "resnet", "--channels", "4", "8", "--blocks", "1"]
    arguments += ["--epochs", "4", "--shift", "0", "--no-flip", "--out", str(out), "--no-progress"]
    metrics = classify.main(dataset, arguments)
    assert EXPECTED_FILES <= {p.name for p in out.iterdir()}
    assert type(diynn.load_model(out / "model.npz")[3]).__name__ == "Residual"
    loss = json.loads((out / "metrics.json").read_text())["history"]["loss"]
    assert loss[-1] < loss[0]  # it learns, slowly: a class here is a row's position, which pooling blurs
    assert 0 <= metrics["test_accuracy"] <= 1


@pytest.mark.parametrize("dataset", ["fashion-mnist", "kmnist"])
def test_the_vit_trains_on_either_data_set(generated, tmp_path, monkeypatch, dataset):
    spec = spec_for(generated, n_train=N_TRAIN, n_test=N_TEST)
    monkeypatch.setattr(loaders, "FASHION_MNIST" if dataset == "fashion-mnist" else "KMNIST", spec)
    out = tmp_path / "out"
    arguments = ["--data-dir", str(generated), "--model", "vit", "--embed-dim", "8", "--depth", "1", "--heads", "2"]
    arguments += ["--epochs", "4", "--shift", "0", "--no-flip", "--out", str(out), "--no-progress"]
    metrics = classify.main(dataset, arguments)
    assert EXPECTED_FILES <= {p.name for p in out.iterdir()}
    model = diynn.load_model(out / "model.npz")
    assert [type(model[i]).__name__ for i in (0, 3, 4)] == ["Conv2d", "PositionEmbedding", "Sequential"]
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert (config["optimizer"], config["weight_decay"], config["warmup"]) == ("adamw", 0.05, 3)  # the ViT's recipe
    loss = json.loads((out / "metrics.json").read_text())["history"]["loss"]
    assert loss[-1] < loss[0]
    assert 0 <= metrics["test_accuracy"] <= 1


def test_compare_activations_table(generated, tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "KMNIST", spec_for(generated, n_train=N_TRAIN, n_test=N_TEST))
    out = tmp_path / "out"
    results = classify.main(
        "kmnist",
        [
            "--data-dir",
            str(generated),
            "--epochs",
            "2",
            "--hidden",
            "16",
            "--compare-activations",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert set(results) == {"relu", "tanh", "sigmoid"}
    table = (out / "activations.md").read_text()
    assert all(f"| {name} |" in table for name in results)
    assert (out / "activations.png").stat().st_size > 0


def test_cuda_graph_flag(generated, tmp_path, monkeypatch):
    """--cuda-graph trains on the GPU with recorded steps; elsewhere it is the backend's clear error."""
    monkeypatch.setattr(loaders, "FASHION_MNIST", spec_for(generated, n_train=N_TRAIN, n_test=N_TEST))
    arguments = ["--data-dir", str(generated), "--epochs", "2", "--out", str(tmp_path / "out"), "--cuda-graph"]
    if diynn.get_backend().name != "cupy":
        with pytest.raises(diynn.BackendError, match="CUDA graph capture needs the cupy backend"):
            classify.main("fashion-mnist", arguments + ["--no-progress"])
    elif cupy_graph_refusal():  # CuPy 14 refuses to record cuBLAS calls
        with pytest.raises(diynn.BackendError, match="cuBLAS"):
            classify.main("fashion-mnist", arguments + ["--no-progress"])
    else:
        assert classify.main("fashion-mnist", arguments + ["--no-progress"])["test_accuracy"] > 0.5


def test_an_interrupted_cnn_run_resumes_to_the_same_model(generated, tmp_path, monkeypatch):
    """The run stops right after its epoch-2 checkpoint (as a kill would); --resume ends where an
    uninterrupted run does, bit for bit."""
    monkeypatch.setattr(loaders, "FASHION_MNIST", spec_for(generated, n_train=N_TRAIN, n_test=N_TEST))
    arguments = ["--data-dir", str(generated), "--model", "cnn", "--epochs", "3", "--channels", "4", "8"]
    arguments += ["--hidden", "16", "--no-progress"]
    classify.main("fashion-mnist", [*arguments, "--out", str(tmp_path / "whole")])
    with stopped_after_checkpoint(monkeypatch, epoch=2):
        classify.main("fashion-mnist", [*arguments, "--out", str(tmp_path / "cut")])
    classify.main("fashion-mnist", [*arguments, "--out", str(tmp_path / "cut"), "--resume"])
    assert_same_weights(tmp_path / "whole" / "model.npz", tmp_path / "cut" / "model.npz")
    with pytest.raises(SystemExit):
        classify.main("fashion-mnist", [*arguments, "--out", str(tmp_path / "nothing"), "--resume"])
