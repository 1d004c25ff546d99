import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def _write_model_file(path, architecture, arrays):
    """An .npz in diynn's layout with a hand-edited architecture (what a corrupted or crafted file holds)."""
    header = json.dumps({"format": "diynn-model-1", "architecture": architecture})
    np.savez(path, __architecture__=np.array(header), **arrays)
    return path


def _saved(tmp_path):
    model = diynn.Sequential(diynn.Linear(4, 3, rng=0), diynn.ReLU(), diynn.Linear(3, 2, rng=1))
    path = save_model(model, tmp_path / "good.npz")
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return json.loads(str(arrays.pop("__architecture__")))["architecture"], arrays


def _edit(architecture, edit):
    copied = json.loads(json.dumps(architecture))
    edit(copied)
    return copied


def _deep_header(depth):
    """The JSON text of Sequentials nested `depth` deep (too deep for json.dumps to write)."""
    inner = '{"type": "ReLU", "config": {}}'
    opening = '{"type": "Sequential", "config": {"layers": [{"__module__": ' * depth
    architecture = opening + inner + "}]}}" * depth
    return '{"format": "diynn-model-1", "architecture": ' + architecture + "}"


EDITS = {
    "size as a string": (
        lambda a: a["config"]["layers"][0]["__module__"]["config"].update(in_features="4"),
        "in_features",
    ),
    "negative size": (lambda a: a["config"]["layers"][0]["__module__"]["config"].update(in_features=-4), "in_features"),
    "zero size": (lambda a: a["config"]["layers"][0]["__module__"]["config"].update(out_features=0), "out_features"),
    "null size": (lambda a: a["config"]["layers"][0]["__module__"]["config"].update(in_features=None), "in_features"),
    "missing key": (lambda a: a["config"]["layers"][0]["__module__"]["config"].pop("in_features"), "in_features"),
    "unknown key": (lambda a: a["config"]["layers"][1]["__module__"]["config"].update(inplace=True), "inplace"),
    "list for an object": (lambda a: a["config"]["layers"][0].update(__module__=[1, 2]), "expected an object"),
    "unknown type": (lambda a: a["config"]["layers"][1]["__module__"].update(type="os.system"), "unknown module type"),
    "config not an object": (lambda a: a["config"]["layers"][1]["__module__"].update(config="x"), "config must be an"),
    "huge size": (
        lambda a: a["config"]["layers"][0]["__module__"]["config"].update(in_features=10**6, out_features=10**6),
        "more parameters than the file holds",
    ),
    "layers not a list": (lambda a: a["config"].update(layers=3), "Sequential's layers must be a list of modules"),
}


@pytest.mark.parametrize("case", list(EDITS))
def test_edited_architecture_is_a_model_file_error_naming_the_entry(tmp_path, case):
    architecture, arrays = _saved(tmp_path)
    edit, message = EDITS[case]
    path = _write_model_file(tmp_path / "edited.npz", _edit(architecture, edit), arrays)
    with pytest.raises(ModelFileError, match=message) as raised:
        load_model(path)
    assert "architecture" in str(raised.value)


def test_deep_nesting_is_refused_before_recursing(tmp_path):
    path = tmp_path / "deep.npz"
    np.savez(path, __architecture__=np.array(_deep_header(5000)))
    with pytest.raises(ModelFileError, match="deep"):
        load_model(path)


def test_files_that_are_not_diynn_models(tmp_path):
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(ModelFileError, match="plain.npy is not a readable .npz"):
        load_model(tmp_path / "plain.npy")
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(ModelFileError, match="is a directory"):
        load_model(tmp_path / "folder.npz")
    import zipfile

    with zipfile.ZipFile(tmp_path / "odd.npz", "w") as archive:
        archive.writestr("__architecture__.npy", b"not an array")
    with pytest.raises(ModelFileError, match="odd.npz"):
        load_model(tmp_path / "odd.npz")


@pytest.mark.parametrize("dtype", [np.complex64, np.bool_, np.int32, "datetime64[s]"])
def test_weights_must_be_real_floats(tmp_path, dtype):
    architecture, arrays = _saved(tmp_path)
    name = next(iter(arrays))
    arrays[name] = np.zeros(arrays[name].shape, dtype)
    path = _write_model_file(tmp_path / "typed.npz", architecture, arrays)
    with pytest.raises(ModelFileError, match=f"weights '{name}' are .*not real floating point"):
        load_model(path)


def test_float64_model_stays_float64(tmp_path, backend):
    model = diynn.mlp([3, 4, 2], rng=0).astype(backend.xp.float64)
    loaded = load_model(save_model(model, tmp_path / "double.npz"))
    assert all(p.data.dtype == backend.xp.float64 for p in loaded.parameters())
    x = np.random.default_rng(0).random((2, 3))
    np.testing.assert_array_equal(
        backend.to_numpy(loaded(backend.asarray(x))), backend.to_numpy(model(backend.asarray(x)))
    )


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 10**7), st.floats(), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_corruption_of_the_architecture_is_a_model_file_error(tmp_path_factory, data):
    """Replace one value anywhere in a saved architecture with random JSON: the load either works
    (the value was harmless) or raises ModelFileError; nothing else, and nothing huge is allocated."""
    folder = tmp_path_factory.mktemp("fuzz")
    architecture, arrays = _saved(folder)
    locations = []

    def walk(value, path):
        locations.append(path)
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
        for key, item in items:
            walk(item, [*path, key])

    walk(architecture, [])
    where = data.draw(st.sampled_from(locations[1:]))
    replacement = data.draw(JSON_VALUES)
    edited = json.loads(json.dumps(architecture))
    target = edited
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = replacement
    path = _write_model_file(folder / "fuzzed.npz", edited, arrays)
    try:
        load_model(path)
    except ModelFileError as error:
        assert str(error)


@pytest.mark.parametrize(
    "make",
    [
        lambda: diynn.cnn(rng=0),
        lambda: diynn.conv_autoencoder(8, rng=0),
        lambda: diynn.dense_autoencoder(4, hidden=(16,), rng=0),
        lambda: diynn.Sequential(diynn.Conv1d(2, 3, 5, rng=0), diynn.MaxPool1d(2), diynn.BatchNorm1d(3)),
        lambda: diynn.Sequential(diynn.ConvTranspose2d(2, 3, 4, stride=2, output_padding=1, bias=False, rng=0)),
    ],
    ids=["cnn", "conv_autoencoder", "dense_autoencoder", "conv1d", "transposed"],
)
def test_every_kind_of_layer_survives_the_architecture_checks(tmp_path, make):
    """stored_size agrees with what each layer really stores, so valid files are never refused."""
    model = make()
    loaded = load_model(save_model(model, tmp_path / "m.npz"))
    assert repr(loaded) == repr(model)
    assert sum(type(m).stored_size(m.config()) for m in model.modules()) == sum(
        int(np.prod(v.shape)) for v in model.state_dict().values()
    )


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda arrays: arrays.pop("0.weight"), r"missing '0.weight' of shape \(3, 4\)"),
        (
            lambda arrays: arrays.update({"0.weight": np.array(1.0)}),
            r"'0.weight' has shape \(\), the model expects \(3, 4\)",
        ),
    ],
    ids=["missing", "0-d"],
)
def test_a_missing_or_wrong_weight_names_the_entry_and_its_shape(tmp_path, damage, message):
    architecture, arrays = _saved(tmp_path)
    damage(arrays)
    path = _write_model_file(tmp_path / "damaged.npz", architecture, arrays)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_unknown_zip_compression_is_a_model_file_error(tmp_path):
    """Zip members compressed with a method Python cannot read (here: a made-up method 99)."""
    path = save_model(diynn.mlp([3, 2], rng=0), tmp_path / "m.npz")
    raw = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # local and central headers
        start = raw.find(signature)
        while start >= 0:
            raw[start + offset : start + offset + 2] = (99).to_bytes(2, "little")
            start = raw.find(signature, start + 4)
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="m.npz is not a readable .npz model file"):
        load_model(path)


def test_a_user_class_with_a_built_in_name_changes_nothing(tmp_path):
    class Linear(diynn.Module):  # a user's own class that happens to share the name
        def __init__(self, in_features, out_features, bias=True, init="kaiming"):
            super().__init__()

    path = save_model(diynn.mlp([3, 2], rng=0), tmp_path / "m.npz")
    assert type(load_model(path)[0]) is diynn.Linear
    assert Linear is not diynn.Linear


def test_user_classes_are_built_only_when_passed(tmp_path):
    class Doubler(diynn.Module):
        def forward(self, x):
            return 2 * x

        def backward(self, grad_output, input_grad=True):
            return 2 * grad_output

    path = save_model(diynn.Sequential(diynn.Linear(3, 2, rng=0), Doubler()), tmp_path / "m.npz")
    with pytest.raises(ModelFileError, match=r"unknown module type 'Doubler' .*classes=\[\.\.\.\]"):
        load_model(path)
    assert type(load_model(path, classes=[Doubler])[1]) is Doubler
    with pytest.raises(TypeError, match="classes must hold Module subclasses"):
        load_model(path, classes=["Doubler"])
