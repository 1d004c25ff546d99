"""Checkpoints (diynn/training/checkpoint.py): optimiser, schedule and generator states, a fit killed with
SIGKILL and resumed ending bitwise where an uninterrupted one does, and bad files named."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import diynn
from diynn.training.checkpoint import CheckpointError, TrainingState, data_digest, load_checkpoint, save_checkpoint

RUN = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import diynn

    mode, folder = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    x = rng.random((48, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 3, 48)
    model = diynn.Sequential(
        diynn.Conv2d(1, 4, 3, padding=1, rng=1), diynn.BatchNorm2d(4), diynn.ReLU(), diynn.MaxPool2d(2),
        diynn.Flatten(), diynn.Dropout(0.3, rng=2), diynn.Linear(64, 3, rng=3),
    )
    optimizer = diynn.Adam(model.parameters(), lr=0.01)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), optimizer)
    shifts = diynn.Compose(diynn.RandomShift(1, rng=4), diynn.RandomHorizontalFlip(rng=5))
    calls = [0]

    def augment(batch):  # mode "killed": SIGKILL at the first batch of epoch 3
        calls[0] += 1
        if mode == "killed" and calls[0] == 2 * 3 + 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return shifts(batch)

    callbacks = [diynn.CosineLR(optimizer, 4, warmup=1), diynn.EarlyStopping(model, monitor="loss", patience=9)]
    resume = os.path.join(folder, "checkpoint.npz") if mode == "resume" else None
    history = trainer.fit(
        x, y, epochs=4, batch_size=16, seed=6, progress=False, augment=augment, callbacks=callbacks,
        checkpoint=os.path.join(folder, "checkpoint.npz"), resume=resume,
    )
    np.savez(os.path.join(folder, f"{mode}.npz"), **model.state_dict(), loss=np.array(history["loss"]))
""")


def run(tmp_path, mode):
    script = tmp_path / "run.py"
    script.write_text(RUN)
    return subprocess.run([sys.executable, str(script), mode, str(tmp_path)], capture_output=True, text=True)


def test_a_killed_fit_resumes_to_the_uninterrupted_weights_bit_for_bit(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    assert run(full, "full").returncode == 0
    killed = run(tmp_path, "killed")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_checkpoint(tmp_path / "checkpoint.npz")["epoch"] == 2
    resumed = run(tmp_path, "resume")
    assert resumed.returncode == 0, resumed.stderr
    with np.load(full / "full.npz") as expected, np.load(tmp_path / "resume.npz") as got:
        assert sorted(expected.files) == sorted(got.files)
        for name in expected.files:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: diynn.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
        lambda p: diynn.Adam(p, lr=0.01),
        lambda p: diynn.AdamW(p, lr=0.01, weight_decay=0.1),
    ],
    ids=["sgd", "adam", "adamw"],
)
def test_an_optimiser_continues_from_its_state_dict(make, numpy_rng):
    model, copy = diynn.mlp([3, 4, 2], rng=0), diynn.mlp([3, 4, 2], rng=0)
    x, y = numpy_rng.random((8, 3), dtype=np.float32), numpy_rng.integers(0, 2, 8)
    optimizer = make(model.parameters())
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), optimizer)
    for _ in range(3):
        trainer.step(x, y)
    copy.load_state_dict(model.state_dict())
    continued = make(copy.parameters())
    continued.load_state_dict(optimizer.state_dict())
    other = diynn.Trainer(copy, diynn.CrossEntropyLoss(), continued)
    for _ in range(2):
        trainer.step(x, y)
        other.step(x, y)
    for a, b in zip(model.parameters(), copy.parameters()):
        np.testing.assert_array_equal(a.data, b.data)


def test_optimiser_state_of_the_wrong_shape_is_named():
    adam = diynn.Adam(diynn.mlp([3, 2], rng=0).parameters())
    adam.state[id(adam.parameters[0])] = {"step": 1, "m": np.zeros((2, 3), np.float32)}
    other = diynn.Adam(diynn.mlp([4, 2], rng=0).parameters())
    with pytest.raises(ValueError, match=r"state 'm' of parameter 0 has shape \(2, 3\), the parameter \(2, 4\)"):
        other.load_state_dict(adam.state_dict())


def test_a_generator_continues_from_its_state(backend):
    generator = backend.rng(3)
    generator.uniform(0, 1, (5,))
    state = generator.state_dict()
    expected = backend.to_numpy(generator.uniform(0, 1, (4,)))
    again = backend.rng(99)
    again.load_state_dict(state)
    np.testing.assert_array_equal(backend.to_numpy(again.uniform(0, 1, (4,))), expected)
    with pytest.raises(ValueError, match="not a random generator state"):
        again.load_state_dict({"bit_generator": {"bit_generator": "nonsense"}})


def test_the_training_state_finds_every_generator():
    model = diynn.Sequential(diynn.Linear(2, 2, rng=0), diynn.Dropout(0.5, rng=1))
    trainer = diynn.Trainer(model, diynn.MSELoss(), diynn.SGD(model.parameters()), metric=None)
    augment = diynn.Compose(diynn.RandomShift(1, rng=2), diynn.GaussianNoise(rng=3))
    data = (np.zeros((8, 3), np.float32), None)
    state = TrainingState(trainer, diynn.get_backend().rng(0), augment, [], data, validated=False)
    assert len(state.generators) == 4 and "shuffle" in state.generators


def _trained(tmp_path, optimizer=diynn.SGD):
    model = diynn.mlp([3, 2], rng=0)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), optimizer(model.parameters(), lr=0.1))
    x, y = np.random.default_rng(0).random((8, 3), dtype=np.float32), np.arange(8) % 2
    trainer.fit(x, y, epochs=2, progress=False, checkpoint=tmp_path / "c.npz")
    return trainer, x, y


def test_bad_checkpoints_are_named(tmp_path):
    trainer, x, y = _trained(tmp_path)
    (tmp_path / "truncated.npz").write_bytes((tmp_path / "c.npz").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated.npz is not a readable checkpoint"):
        trainer.fit(x, y, epochs=3, progress=False, resume=tmp_path / "truncated.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(CheckpointError, match="other.npz is not a diynn checkpoint"):
        load_checkpoint(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz does not exist"):
        load_checkpoint(tmp_path / "missing.npz")
    adam_model = diynn.mlp([3, 2], rng=0)
    adam = diynn.Trainer(adam_model, diynn.CrossEntropyLoss(), diynn.Adam(adam_model.parameters()))
    with pytest.raises(CheckpointError, match="saved with optimiser 'SGD', this run uses 'Adam'"):
        adam.fit(x, y, epochs=3, progress=False, resume=tmp_path / "c.npz")
    wider = diynn.mlp([3, 5, 2], rng=0)
    other = diynn.Trainer(wider, diynn.CrossEntropyLoss(), diynn.SGD(wider.parameters()))
    with pytest.raises(CheckpointError, match="does not match this training run"):
        other.fit(x, y, epochs=3, progress=False, resume=tmp_path / "c.npz")
    with pytest.raises(CheckpointError, match="saved by a run without validation data, this run has some"):
        trainer.fit(x, y, epochs=3, progress=False, validation_data=(x, y), resume=tmp_path / "c.npz")
    trainer.fit(x, y, epochs=2, progress=False, validation_data=(x, y), checkpoint=tmp_path / "validated.npz")
    with pytest.raises(CheckpointError, match="saved by a run with validation data, this run has none"):
        trainer.fit(x, y, epochs=3, progress=False, resume=tmp_path / "validated.npz")
    with pytest.raises(CheckpointError, match="saved by a run on 8 training samples, this run has 6"):
        trainer.fit(x[:6], y[:6], epochs=3, progress=False, resume=tmp_path / "c.npz")
    with pytest.raises(CheckpointError, match=r"other training data of the same size \(8 samples\)"):
        trainer.fit(x[::-1], y[::-1], epochs=3, progress=False, resume=tmp_path / "c.npz")
    other_labels = (y + 1) % 2
    with pytest.raises(CheckpointError, match="other training data of the same size"):
        trainer.fit(x, other_labels, epochs=3, progress=False, resume=tmp_path / "c.npz")


def test_an_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    _trained(tmp_path)
    before = (tmp_path / "c.npz").read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "c.npz", {"epoch": 3})
    assert (tmp_path / "c.npz").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]


def test_resuming_a_finished_run_trains_no_more(tmp_path):
    trainer, x, y = _trained(tmp_path)
    weights = [p.data.copy() for p in trainer.model.parameters()]
    history = trainer.fit(x, y, epochs=2, progress=False, resume=tmp_path / "c.npz")
    assert len(history["loss"]) == 2
    for before, parameter in zip(weights, trainer.model.parameters()):
        np.testing.assert_array_equal(before, parameter.data)
    assert os.path.getsize(tmp_path / "c.npz") > 0


def test_a_checkpoint_from_before_the_size_and_digest_were_saved_still_resumes(tmp_path):
    trainer, x, y = _trained(tmp_path)
    state = load_checkpoint(tmp_path / "c.npz")
    assert state["samples"] == 8 and len(state["digest"]) == 16
    del state["samples"], state["digest"]
    save_checkpoint(tmp_path / "old.npz", state)
    history = trainer.fit(x, y, epochs=3, progress=False, resume=tmp_path / "old.npz")
    assert len(history["loss"]) == 3


def test_the_data_digest_tells_training_sets_apart_on_every_backend(backend):
    x = np.random.default_rng(0).random((10, 2, 3), dtype=np.float32)
    y = np.arange(10) % 3
    digest = data_digest(backend, backend.asarray(x), backend.asarray(y))
    assert digest == data_digest(diynn.backends.get("numpy"), x, y)  # the values decide, not the backend
    assert digest == data_digest(backend, backend.asarray(x.copy()), backend.asarray(y.copy()))
    others = [(x[::-1], y[::-1]), (x, (y + 1) % 3), (x, None), (x[:9], y[:9]), (x.astype(np.float64), y)]
    digests = {data_digest(backend, backend.asarray(a), None if b is None else backend.asarray(b)) for a, b in others}
    assert len(digests) == len(others) and digest not in digests
