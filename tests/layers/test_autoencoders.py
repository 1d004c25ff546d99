"""Autoencoder models, and smoke runs of the autoencoder experiments on generated data."""

import json

import numpy as np
import pytest
from datasets_fixtures import make_files, spec_for

import diynn
from diynn.datasets import loaders


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_encode_decode_shapes(backend, kind, numpy_rng):
    model = diynn.dense_autoencoder(8, rng=0) if kind == "dense" else diynn.conv_autoencoder(8, channels=(4, 8), rng=0)
    shape = (3, 784) if kind == "dense" else (3, 1, 28, 28)
    x = backend.asarray(numpy_rng.random(shape, dtype=np.float32))
    z = model.encode(x)
    assert tuple(z.shape) == (3, 8)
    y = model.decode(z)
    assert tuple(y.shape) == shape
    values = backend.to_numpy(model(x))
    assert values.min() >= 0 and values.max() <= 1


def test_autoencoder_gradients(backend, numpy_rng):
    model = diynn.Autoencoder(
        diynn.Sequential(diynn.Linear(6, 3, rng=0), diynn.Tanh()), diynn.Sequential(diynn.Linear(3, 6, rng=1))
    )
    assert diynn.gradcheck(model, numpy_rng.normal(size=(4, 6)))


def test_conv_autoencoder_gradients(backend, numpy_rng):
    model = diynn.conv_autoencoder(4, channels=(2, 3), image_size=8, rng=0)
    for name, parameter in model.named_parameters():
        if name.endswith("bias"):  # zero biases on all-zero ReLU inputs sit exactly on the kink
            parameter.data = backend.asarray(numpy_rng.normal(size=parameter.shape).astype(np.float32))
    # 12 random entries of every array (all of the smaller ones): a forward on the strict backend costs about 7 ms
    assert diynn.gradcheck(model, numpy_rng.random((2, 1, 8, 8)), max_checks=12)


def test_noise_only_in_training(numpy_rng):
    model = diynn.dense_autoencoder(4, hidden=(8,), input_size=10, noise_std=0.5, rng=0)
    backend = model.backend
    x = backend.asarray(numpy_rng.random((5, 10)).astype(np.float32))
    assert not np.allclose(backend.to_numpy(model(x)), backend.to_numpy(model(x)))  # fresh noise each pass
    model.eval()
    np.testing.assert_array_equal(backend.to_numpy(model(x)), backend.to_numpy(model(x)))
    with pytest.raises(ValueError, match="noise_std"):
        diynn.Autoencoder(diynn.ReLU(), diynn.ReLU(), noise_std=-1)


def test_save_and_load_autoencoder(backend, tmp_path, numpy_rng):
    model = diynn.conv_autoencoder(5, channels=(2, 4), noise_std=0.1, rng=0)
    path = diynn.save_model(model, tmp_path / "ae.npz")
    loaded = diynn.load_model(path)
    assert isinstance(loaded, diynn.Autoencoder) and loaded.noise_std == 0.1
    x = backend.asarray(numpy_rng.random((2, 1, 28, 28), dtype=np.float32))
    model.eval()
    loaded.eval()
    np.testing.assert_array_equal(backend.to_numpy(loaded.encode(x)), backend.to_numpy(model.encode(x)))
    np.testing.assert_array_equal(backend.to_numpy(loaded(x)), backend.to_numpy(model(x)))


def test_denoising_autoencoder_learns_to_remove_noise(numpy_rng):
    """On blobs with structure, a denoising AE's output is closer to the clean data than its input."""
    clean = np.repeat(numpy_rng.random((300, 2)), 10, axis=1).astype(np.float32) * 0.8 + 0.1
    model = diynn.dense_autoencoder(2, hidden=(16,), input_size=20, noise_std=0.1, rng=0)
    trainer = diynn.Trainer(model, diynn.MSELoss(), diynn.Adam(model.parameters(), lr=1e-2), metric=None)
    trainer.fit(clean, clean, epochs=40, batch_size=32, progress=False)
    noisy = model.backend.to_numpy(diynn.add_noise(clean, 0.1, rng=1))
    denoised = model.backend.to_numpy(diynn.predict(model, noisy))
    assert np.mean((denoised - clean) ** 2) < 0.5 * np.mean((noisy - clean) ** 2)


def _fashion_files(folder):
    """Generated Fashion-MNIST files in `folder` (120 training, 100 test images) and their spec."""
    make_files(folder, n_train=120, n_test=100, separable=True)
    return spec_for(folder, n_train=120, n_test=100)


@pytest.fixture
def fashion(tmp_path, monkeypatch):
    monkeypatch.setenv("DIYNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(loaders, "FASHION_MNIST", _fashion_files(tmp_path / "data"))
    return ["--data-dir", str(tmp_path / "data"), "--epochs", "1"]


def _few_probe_epochs(monkeypatch):
    """Every linear probe and from-scratch CNN trains 2 epochs (the recipe's are 4 to 200): the
    scripts' code paths are the same, their accuracies at toy size mean nothing either way."""
    import self_supervised

    from diynn_experiments import representation

    monkeypatch.setattr(representation, "PROBE_EPOCHS", dict.fromkeys(representation.PROBE_EPOCHS, 2))
    monkeypatch.setattr(self_supervised, "PROBE_EPOCHS", dict.fromkeys(self_supervised.PROBE_EPOCHS, 2))
    monkeypatch.setattr(self_supervised, "SCRATCH_EPOCHS", dict.fromkeys(self_supervised.SCRATCH_EPOCHS, 2))


@pytest.mark.slow
def test_autoencoder_script(fashion, tmp_path):
    import autoencoder

    results = autoencoder.main([*fashion, "--latents", "2", "4", "--out", str(tmp_path / "out")])
    assert set(results[4]) >= {"dense", "conv", "pca"}
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"reconstruction.md", "metrics.json", "reconstructions.png", "interpolation.png"} <= files
    assert "| 4 |" in (tmp_path / "out" / "reconstruction.md").read_text()


@pytest.mark.filterwarnings("ignore:The least populated class")
@pytest.mark.slow
def test_latent_tsne_script(fashion, tmp_path):
    import latent_tsne

    result = latent_tsne.main([*fashion, "--latent", "4", "--samples", "100", "--out", str(tmp_path / "out")])
    assert set(result["scores"]) == {"latent codes", "raw pixels", "PCA-4"}
    assert len(result["overlaps"]) == 5
    assert (tmp_path / "out" / "tsne.png").stat().st_size > 0


@pytest.mark.slow
def test_preprocessing_script(fashion, tmp_path):
    import preprocessing

    results = preprocessing.main([*fashion, "--latent", "4", "--classifier-epochs", "1", "--out", str(tmp_path / "o")])
    assert len(results) == 4 and all(0 <= value <= 1 for value in results.values())
    assert "linear probe" in (tmp_path / "o" / "preprocessing.md").read_text()


@pytest.mark.slow
def test_denoising_script(fashion, tmp_path):
    import denoising

    results = denoising.main([*fashion, "--noise", "0.3", "--latent", "4", "--out", str(tmp_path / "o")])
    assert set(results) == {"conv", "unet"}  # the default denoisers, trained alike
    for kind in results:  # one epoch on 120 images: finite figures, not yet a gain
        assert 0 < results[kind][0.3]["psnr_denoised"] < 100 and results[kind][0.3]["psnr_noisy"] > 0, kind
    saved = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert "0.3" in saved["results"]["unet"] and (tmp_path / "o" / "denoising.png").stat().st_size > 0
    assert "| U-Net | 0.3 |" in (tmp_path / "o" / "denoising.md").read_text()


@pytest.mark.slow
def test_perceptual_script(fashion, tmp_path):
    """A quick run with a saved (untrained) CNN as the feature network: both autoencoders are
    trained and judged, and the table, figure and metrics are written."""
    import perceptual

    import diynn

    classifier = diynn.save_model(diynn.cnn(rng=0), tmp_path / "cnn.npz")
    metrics = perceptual.main(
        [*fashion, "--classifier", str(classifier), "--classifier-epochs", "1", "--out", str(tmp_path / "o")]
    )
    assert set(metrics["results"]) == {
        "pixel MSE",
        "pixel MSE + perceptual (conv blocks)",
        "pixel MSE + perceptual (conv blocks + dense head)",
    }
    for result in metrics["results"].values():
        assert 0 <= result["ssim"] <= 1 and 0 <= result["linear_probe"] <= 1 and result["pixel_mse"] > 0
    assert "| pixel MSE + perceptual (conv blocks + dense head) |" in (tmp_path / "o" / "perceptual.md").read_text()
    assert (tmp_path / "o" / "reconstructions.png").stat().st_size > 0


def test_perceptual_targets_are_said_met_or_not():
    import perceptual

    text = perceptual.targets(
        {
            "pixel MSE": {"drop": 0.014, "linear_probe": 0.80},
            "A": {"drop": 0.011, "linear_probe": 0.79},
            "B": {"drop": 0.004, "linear_probe": 0.81},
        }
    )
    assert text == (
        "Targets (pixel loss alone: drop 1.40 points, probe 0.8000): "
        "A: the drop on reconstructions at most 0.5 points: NOT met (1.10); the latent probe above the pixel "
        "loss's: NOT met (0.7900). "
        "B: the drop on reconstructions at most 0.5 points: met (0.40); the latent probe above the pixel "
        "loss's: met (0.8100)."
    )


@pytest.fixture(scope="module")
def self_supervised_run(tmp_path_factory):
    """self_supervised.py run once (2 pretraining epochs) for the tests that read what it wrote."""
    import self_supervised

    folder = tmp_path_factory.mktemp("self_supervised")
    arguments = ["--data-dir", str(folder / "data"), "--epochs", "2", "--batch-size", "32", "--tsne-samples", "60"]
    arguments += ["--autoencoder", str(folder / "none.npz"), "--no-progress"]
    with pytest.MonkeyPatch.context() as monkeypatch:
        spec = _fashion_files(folder / "data")
        monkeypatch.setenv("DIYNN_CACHE_DIR", str(folder / "cache"))
        monkeypatch.setattr(loaders, "FASHION_MNIST", spec)
        _few_probe_epochs(monkeypatch)
        metrics = self_supervised.main([*arguments, "--out", str(folder / "whole")])
    return {"arguments": arguments, "spec": spec, "metrics": metrics, "out": folder / "whole"}


@pytest.mark.slow
def test_self_supervised_script(self_supervised_run):
    """A quick run: pretraining without labels, the probes of every representation, the label
    shares (at least 10 labels each), the table, figures, metrics and the saved encoder."""
    import self_supervised

    import diynn

    metrics, out = self_supervised_run["metrics"], self_supervised_run["out"]
    assert metrics["probes"].keys() >= {"SimCLR-pretrained encoder", self_supervised.RANDOM, "raw pixels"}
    assert all(0 <= p["linear_probe"] <= 1 and 0 <= p["knn"] <= 1 for p in metrics["probes"].values())
    assert [s["labels"] for s in metrics["label_efficiency"].values()] == [10, 12, 120]
    assert len(metrics["pretraining"]["loss"]) == 2 and np.isfinite(metrics["pretraining"]["loss"]).all()
    text = (out / "self_supervised.md").read_text()
    assert "| SimCLR-pretrained encoder | 3136 |" in text and "| 1% (10) |" in text and "Targets:" in text
    assert {"label_efficiency.png", "tsne.png", "metrics.json"} <= {p.name for p in out.iterdir()}
    assert diynn.load_model(out / "encoder.npz")(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 3136)


@pytest.mark.slow
def test_self_supervised_protocol_script(fashion, tmp_path, monkeypatch):
    """Two seeds at toy size: encoders pretrained and saved, then loaded on a second run; every
    representation judged by cosine k-NN and the four probes; the table says whether the targets are met."""
    import self_supervised_protocol as protocol

    from diynn_experiments import classification
    from diynn_experiments.common import write_json

    _few_probe_epochs(monkeypatch)
    arguments = [*fashion, "--seeds", "0", "1", "--batch-size", "32", "--encoders", str(tmp_path / "enc")]
    arguments += ["--scratch-max-epochs", "1", "--default-runs", str(tmp_path / "runs")]
    arguments += ["--autoencoder", str(tmp_path / "none.npz")]  # missing: a 3-epoch one is trained
    default_run = tmp_path / "runs" / "fashion-mnist-cnn-seed1"  # seed 1's 100% row comes from its default run
    config = {**vars(classification.parse_args("fashion-mnist", ["--model", "cnn", "--seed", "1"])), "limit": None}
    write_json(default_run / "metrics.json", {"config": config, "test_accuracy": 0.125})
    metrics = protocol.main([*arguments, "--out", str(tmp_path / "o"), "--no-progress"])
    assert {p.name for p in (tmp_path / "enc").iterdir()} >= {"encoder_seed0.npz", "pretrain_seed1.json"}
    assert len(metrics["results"][f"{protocol.RANDOM} / pooled"]) == 2
    scores = metrics["results"][f"{protocol.PRETRAINED} / flattened"][0]
    assert set(scores) == {"knn", "probe 10 per class", "probe 1%", "probe 10%", "probe 100%"}
    assert all(0 <= value <= 1 for value in scores.values())
    scratch = metrics["results"][protocol.SCRATCH]
    assert set(scratch[0]) == set(scores) - {"knn"} and scratch[1]["probe 100%"] == 0.125
    assert scratch[0]["probe 100%"] != 0.125  # seed 0 has no default run there: trained
    text = (tmp_path / "o" / "protocol.md").read_text()
    assert (
        "| raw pixels |" in text
        and "| conv autoencoder codes (latent 32) |" in text
        and "cosine k-NN gain" in text
        and "1%-label probe gain" in text
    )
    again = protocol.main([*arguments, "--out", str(tmp_path / "p"), "--no-progress"])  # loads the encoders
    assert again["results"][f"{protocol.PRETRAINED} / pooled"] == metrics["results"][f"{protocol.PRETRAINED} / pooled"]
    with pytest.raises(SystemExit, match="encoder_seed0.npz was not pretrained by this recipe"):
        protocol.main([*arguments, "--epochs", "2", "--out", str(tmp_path / "q"), "--no-progress"])


@pytest.mark.slow
def test_self_supervised_pretraining_resumes(self_supervised_run, tmp_path, monkeypatch):
    """Pretraining stopped right after its epoch-1 checkpoint and resumed with --resume ends with
    the encoder of the uninterrupted run, bit for bit."""
    import self_supervised
    from conftest import assert_same_weights, stopped_after_checkpoint

    monkeypatch.setenv("DIYNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(loaders, "FASHION_MNIST", self_supervised_run["spec"])
    _few_probe_epochs(monkeypatch)
    arguments = self_supervised_run["arguments"]
    with stopped_after_checkpoint(monkeypatch, epoch=1):
        self_supervised.main([*arguments, "--out", str(tmp_path / "cut")])
    self_supervised.main([*arguments, "--out", str(tmp_path / "cut"), "--resume"])
    assert_same_weights(self_supervised_run["out"] / "encoder.npz", tmp_path / "cut" / "encoder.npz")


@pytest.mark.parametrize("head_input, width", [("pooled", 64), ("flattened", 3136)])
def test_the_projection_head_reads_the_pooled_or_the_flattened_map(head_input, width, numpy_rng):
    import self_supervised

    encoder = diynn.cnn_encoder(rng=0)
    args = self_supervised.parse_args(["--head-input", head_input, "--seed", "0"])
    head = self_supervised.projection(encoder, args)
    x = numpy_rng.random((3, 1, 28, 28), dtype=np.float32)
    with diynn.no_grad():
        features = encoder.eval()(x)
        head_input_values = diynn.Sequential(*head.layers[:-3])(features) if head_input == "pooled" else features
    assert head_input_values.shape == (3, width)
    if head_input == "pooled":  # the mean of each channel's 7x7 map
        expected = features.reshape(3, 64, 49).mean(axis=2)
        np.testing.assert_allclose(head_input_values, expected, rtol=1e-5, atol=1e-6)
