import numpy as np
import pytest

import diynn
from diynn import ModelFileError, load_model, load_weights, save_model


def test_round_trip_rebuilds_architecture_and_weights(backend, tmp_path, numpy_rng):
    model = diynn.Sequential(diynn.Linear(4, 8, rng=0), diynn.LeakyReLU(0.2), diynn.Linear(8, 2, bias=False, rng=1))
    path = save_model(model, tmp_path / "model.npz")
    loaded = load_model(path)
    assert repr(loaded) == repr(model)
    x = backend.asarray(numpy_rng.normal(size=(3, 4)).astype(np.float32))
    np.testing.assert_array_equal(backend.to_numpy(loaded(x)), backend.to_numpy(model(x)))
    other = diynn.Sequential(diynn.Linear(4, 8, rng=5), diynn.LeakyReLU(0.2), diynn.Linear(8, 2, bias=False, rng=6))
    load_weights(other, path)
    np.testing.assert_array_equal(backend.to_numpy(other(x)), backend.to_numpy(model(x)))


def test_file_has_no_pickles(tmp_path):
    path = save_model(diynn.mlp([3, 2], rng=0), tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as archive:
        assert all(archive[name].dtype != object for name in archive.files)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.npz does not exist"):
        load_model(tmp_path / "nothere.npz")


def test_truncated_file(tmp_path):
    path = save_model(diynn.mlp([30, 20, 2], rng=0), tmp_path / "m.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_model(path)


def test_not_a_model(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(ModelFileError, match="not a diynn model"):
        load_model(path)
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ModelFileError, match="text.npz"):
        load_model(tmp_path / "text.npz")


def test_mismatched_model(tmp_path):
    path = save_model(diynn.mlp([3, 4, 2], rng=0), tmp_path / "m.npz")
    with pytest.raises(ModelFileError, match="does not match the model.*shape"):
        load_weights(diynn.mlp([3, 5, 2], rng=0), path)


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = save_model(diynn.mlp([3, 2], rng=0), tmp_path / "m.npz")
    before = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_model(diynn.mlp([3, 2], rng=1), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]
