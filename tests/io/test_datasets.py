"""Loaders on small generated files; downloads against a loopback server, never the internet."""

import dataclasses
import gzip

import numpy as np
import pytest
from datasets_fixtures import N_TEST, N_TRAIN, FileServer, make_files, spec_for

from diynn import datasets
from diynn.datasets import DatasetError, DatasetNotFoundError, load, parse_idx
from diynn.datasets import files as dataset_files


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own empty cache folder and no DIYNN_DATA_DIR."""
    monkeypatch.setenv("DIYNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DIYNN_DATA_DIR", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def source(tmp_path):
    folder = tmp_path / "source"
    arrays = make_files(folder)
    return folder, arrays, spec_for(folder)


def test_both_layouts_and_scaling(source):
    folder, arrays, spec = source
    flat = load(spec, root=folder)
    assert flat.x_train.shape == (N_TRAIN, 784) and flat.x_test.shape == (N_TEST, 784)
    assert flat.x_train.dtype == np.float32 and flat.y_train.dtype == np.int64
    np.testing.assert_allclose(flat.x_train[3], arrays["train-images-idx3-ubyte.gz"][3].ravel() / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(flat.y_test, arrays["t10k-labels-idx1-ubyte.gz"])
    image = load(spec, root=folder, flat=False)
    assert image.x_train.shape == (N_TRAIN, 1, 28, 28)
    np.testing.assert_array_equal(image.x_train.reshape(N_TRAIN, -1), flat.x_train)
    assert len(flat.class_names) == 10


def test_data_dir_environment_variable(source, monkeypatch):
    folder, _, spec = source
    monkeypatch.setenv("DIYNN_DATA_DIR", str(folder))
    assert load(spec).x_train.shape == (N_TRAIN, 784)


def test_npz_layout(tmp_path, source):
    folder, arrays, spec = source
    npz = tmp_path / "npz"
    npz.mkdir()
    order = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    for name, idx_name in zip(spec.npz_names, order):
        np.savez_compressed(npz / name, arrays[idx_name])
    data = load(spec, root=npz, download=False)
    np.testing.assert_array_equal(data.y_train, arrays["train-labels-idx1-ubyte.gz"])
    (npz / spec.npz_names[0]).write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(DatasetError, match="kmnist-train-imgs.npz: corrupt or truncated"):
        load(spec, root=npz, download=False)


def test_parse_idx_errors():
    with pytest.raises(DatasetError, match="x.idx: not an IDX file"):
        parse_idx(b"\x12\x34\x08\x01", "x.idx")
    header = bytes([0, 0, 8, 3]) + np.array([2, 28, 28], ">u4").tobytes()
    with pytest.raises(DatasetError, match="truncated"):
        parse_idx(header + bytes(100), "x.idx")
    with pytest.raises(DatasetError, match="trailing bytes"):
        parse_idx(header + bytes(2 * 784 + 1), "x.idx")
    with pytest.raises(DatasetError, match="truncated IDX header"):
        parse_idx(bytes([0, 0, 8, 3, 0, 0]), "x.idx")
    huge = bytes([0, 0, 8, 3]) + np.array([2**32 - 1] * 3, ">u4").tobytes()
    with pytest.raises(
        DatasetError, match=r"x.idx: IDX dimensions \(4294967295, 4294967295, 4294967295\) are too large"
    ):
        parse_idx(huge, "x.idx")


def test_truncated_gzip_names_the_file(source):
    folder, _, spec = source
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz: corrupt or truncated gzip"):
        load(spec, root=folder, download=False)


def test_wrong_sample_count(source):
    folder, _, spec = source
    spec = dataclasses.replace(spec, test_labels=dataclasses.replace(spec.test_labels, samples=N_TEST + 1))
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: wrong size, shape \(12,\)"):
        load(spec, root=folder, download=False)


def test_checksum_mismatch(source):
    folder, _, spec = source
    make_files(folder, seed=1)  # same layout, different bytes
    with pytest.raises(DatasetError, match="checksum mismatch: .*train-images-idx3-ubyte.gz"):
        load(spec, root=folder, download=False)


def test_recompressed_copy_is_checked_by_its_payload(source):
    folder, _, spec = source
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()), compresslevel=1, mtime=1))
    assert load(spec, root=folder, download=False).x_train.shape == (N_TRAIN, 784)


def test_verification_is_cached(source, monkeypatch):
    folder, _, spec = source
    load(spec, root=folder)

    def no_hashing(*args):
        raise AssertionError("hashed again")

    monkeypatch.setattr(dataset_files.hashlib, "md5", no_hashing)
    monkeypatch.setattr(dataset_files.hashlib, "sha256", no_hashing)
    assert load(spec, root=folder).x_train.shape == (N_TRAIN, 784)


def test_download_into_cache(source, private_cache):
    folder, arrays, spec = source
    with FileServer({p.name: p.read_bytes() for p in folder.iterdir()}) as server:
        spec = dataclasses.replace(spec, base_url=server.url)
        data = load(spec, progress=False)
    np.testing.assert_array_equal(data.y_train, arrays["train-labels-idx1-ubyte.gz"])
    assert sorted(p.name for p in (private_cache / "kmnist").iterdir()) == sorted(f.name for f in spec.files)
    assert load(spec, download=False).x_test.shape == (N_TEST, 784)  # now from the cache


def test_download_checksum_mismatch_leaves_nothing(source, private_cache):
    folder, _, spec = source
    served = {p.name: p.read_bytes() for p in folder.iterdir()}
    served["train-images-idx3-ubyte.gz"] = served["train-images-idx3-ubyte.gz"][::-1]
    with FileServer(served) as server, pytest.raises(DatasetError, match="checksum mismatch.*train-images"):
        load(dataclasses.replace(spec, base_url=server.url), progress=False)
    assert not (private_cache / "kmnist" / "train-images-idx3-ubyte.gz").exists()
    assert not list((private_cache / "kmnist").glob(".*part"))


def test_connection_dropped_mid_file_leaves_nothing(source, private_cache):
    folder, _, spec = source
    served = {p.name: p.read_bytes() for p in folder.iterdir()}
    with FileServer(served, drop={"train-images-idx3-ubyte.gz"}) as server:
        with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz"):
            load(dataclasses.replace(spec, base_url=server.url), progress=False)
    assert not (private_cache / "kmnist" / "train-images-idx3-ubyte.gz").exists()
    assert not list((private_cache / "kmnist").glob(".*part"))


def test_offline_error_lists_missing_files_and_remedies(source):
    _, _, spec = source
    spec = dataclasses.replace(spec, base_url="http://127.0.0.1:1/")  # nothing listens on port 1
    with pytest.raises(DatasetNotFoundError) as error:
        load(spec, progress=False)
    message = str(error.value)
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "root=" in message and "DIYNN_DATA_DIR" in message and "cache folder" in message
    with pytest.raises(DatasetNotFoundError, match="download=False"):
        load(spec, download=False)


def test_official_specs_carry_the_published_checksums():
    assert datasets.FASHION_MNIST.train_images.md5 == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"
    assert datasets.KMNIST.train_images.gz_size == 18165135
    assert datasets.KMNIST.base_url == "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"
    assert all(f.samples in (60000, 10000) for spec in (datasets.FASHION_MNIST, datasets.KMNIST) for f in spec.files)


def test_iris_split_is_stratified():
    data = datasets.load_iris()
    assert data.x_train.dtype == np.float32 and data.x_train.shape == (105, 4)
    assert np.bincount(data.y_test).tolist() == [15, 15, 15]
