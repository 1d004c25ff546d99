"""Early stopping, gradient clipping, L1/L2 penalties and augmentation."""

import numpy as np
import pytest

import diynn
from diynn import L1L2, EarlyStopping, Parameter, RandomHorizontalFlip, RandomShift, clip_grad_norm


def test_clip_grad_norm_bounds_the_global_norm(backend, numpy_rng):
    grads = [numpy_rng.normal(size=(3, 4)), numpy_rng.normal(size=5)]
    params = [Parameter(backend.asarray(np.zeros_like(g))) for g in grads]
    for p, g in zip(params, grads):
        p.grad = backend.asarray(g.copy())
    norm = float(clip_grad_norm(params, 1.0))
    assert norm == pytest.approx(np.sqrt(sum((g**2).sum() for g in grads)))
    clipped = np.sqrt(sum((backend.to_numpy(p.grad) ** 2).sum() for p in params))
    assert clipped == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(backend.to_numpy(params[0].grad), grads[0] / norm, rtol=1e-5)
    float(clip_grad_norm(params, 10.0))  # below the bound: unchanged
    assert np.sqrt(sum((backend.to_numpy(p.grad) ** 2).sum() for p in params)) == pytest.approx(1.0, rel=1e-5)


def test_l1_l2_penalty_value_and_gradient(backend, numpy_rng):
    w = numpy_rng.normal(size=(3, 4))
    weight, bias = Parameter(backend.asarray(w.copy())), Parameter(backend.asarray(np.ones(4)))
    penalty = float(L1L2(l1=0.1, l2=0.2).apply([weight, bias]))
    assert penalty == pytest.approx(0.1 * np.abs(w).sum() + 0.1 * (w**2).sum())
    np.testing.assert_allclose(backend.to_numpy(weight.grad), 0.1 * np.sign(w) + 0.2 * w)
    assert bias.grad is None  # biases are not penalised
    with pytest.raises(ValueError, match=">= 0"):
        L1L2(l1=-1)


def test_trainer_with_penalty_and_clipping_still_learns(numpy_rng):
    x = numpy_rng.normal(size=(200, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = diynn.mlp([2, 8, 2], rng=0)
    trainer = diynn.Trainer(
        model, diynn.CrossEntropyLoss(), diynn.Adam(model.parameters(), lr=0.02), clip_norm=1.0, penalty=L1L2(l2=1e-3)
    )
    history = trainer.fit(x, y, epochs=10, batch_size=32, progress=False)
    assert history["accuracy"][-1] > 0.9


def test_early_stopping_restores_the_best_epoch(numpy_rng):
    x = numpy_rng.normal(size=(64, 3)).astype(np.float32)
    y = numpy_rng.integers(0, 2, size=64)  # noise: validation loss gets worse as the model overfits
    model = diynn.mlp([3, 64, 2], rng=0)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.Adam(model.parameters(), lr=0.05))
    snapshots = []
    stopper = EarlyStopping(model, monitor="val_loss", patience=2)
    history = trainer.fit(
        x[:32],
        y[:32],
        epochs=50,
        batch_size=8,
        validation_data=(x[32:], y[32:]),
        progress=False,
        callbacks=[stopper, lambda epoch, h: snapshots.append(model.state_dict())],
    )
    best = int(np.argmin(history["val_loss"])) + 1
    assert history["best_epoch"] == best and len(history["loss"]) == best + 2 < 50
    to_numpy = model.backend.to_numpy
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(to_numpy(value), to_numpy(snapshots[best - 1][name]))


def test_random_shift_keeps_shapes_and_content(backend):
    x = np.zeros((6, 1, 8, 8), np.float32)
    x[:, :, 3:5, 3:5] = 1.0
    shifted = backend.to_numpy(RandomShift(2, rng=0)(backend.asarray(x)))
    assert shifted.shape == x.shape and shifted.dtype == np.float32
    np.testing.assert_allclose(shifted.sum(axis=(1, 2, 3)), 4.0)  # a 2x2 block moved by <= 2 stays inside
    for image in shifted[:, 0]:
        rows, columns = np.nonzero(image)
        assert rows.max() - rows.min() == 1 and columns.max() - columns.min() == 1
        assert abs(rows.min() - 3) <= 2 and abs(columns.min() - 3) <= 2
    assert len({(np.nonzero(i)[0].min(), np.nonzero(i)[1].min()) for i in shifted[:, 0]}) > 1


def test_horizontal_flip(backend, numpy_rng):
    x = numpy_rng.random((40, 1, 3, 4)).astype(np.float32)
    flipped = backend.to_numpy(RandomHorizontalFlip(0.5, rng=0)(backend.asarray(x)))
    same = np.all(flipped == x, axis=(1, 2, 3))
    mirrored = np.all(flipped == x[..., ::-1], axis=(1, 2, 3))
    assert np.all(same | mirrored) and 5 < mirrored.sum() < 35


def test_augmentation_in_fit_keeps_labels(numpy_rng):
    x = numpy_rng.random((32, 1, 8, 8)).astype(np.float32)
    y = numpy_rng.integers(0, 3, size=32)
    seen = []

    def augment(batch):
        seen.append(batch.shape)
        return RandomShift(1, rng=0)(batch)

    model = diynn.Sequential(diynn.Flatten(), diynn.Linear(64, 3, rng=0))
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.SGD(model.parameters(), lr=0.1))
    trainer.fit(x, y, epochs=1, batch_size=16, progress=False, augment=augment)
    assert seen == [(16, 1, 8, 8), (16, 1, 8, 8)]


def test_random_erasing_blanks_one_rectangle_per_chosen_image(backend):
    from diynn import RandomErasing

    x = np.ones((16, 2, 10, 12), np.float32)
    erase = RandomErasing(p=1.0, scale=(0.1, 0.3), value=0.0, rng=3)
    out = backend.to_numpy(erase(backend.asarray(x)))
    for image in out:
        blank = image[0] == 0
        rows, columns = np.flatnonzero(blank.any(axis=1)), np.flatnonzero(blank.any(axis=0))
        assert blank.sum() == len(rows) * len(columns) > 0  # one filled rectangle
        assert np.array_equal(image[0], image[1])  # the same box in every channel
        assert 0.1 * 120 * 0.4 <= blank.sum() <= 0.3 * 120 * 2.2  # about the asked area (rounding)
    again = backend.to_numpy(RandomErasing(p=1.0, scale=(0.1, 0.3), rng=3)(backend.asarray(x)))
    np.testing.assert_array_equal(out, again)  # seeded
    untouched = backend.to_numpy(RandomErasing(p=0.0, rng=3)(backend.asarray(x)))
    np.testing.assert_array_equal(untouched, x)


def test_gaussian_noise_is_seeded_and_clipped(backend):
    from diynn import GaussianNoise

    x = backend.asarray(np.full((4, 1, 5, 5), 0.5, np.float32))
    first = backend.to_numpy(GaussianNoise(0.3, rng=1)(x))
    assert first.min() >= 0 and first.max() <= 1 and first.std() > 0.1
    np.testing.assert_array_equal(first, backend.to_numpy(GaussianNoise(0.3, rng=1)(x)))


def test_random_resized_crop_of_the_whole_image_is_the_image(backend, numpy_rng):
    from diynn import RandomResizedCrop

    x = numpy_rng.random((5, 2, 7, 9)).astype(np.float32)
    whole = RandomResizedCrop(scale=(1.0, 1.0), ratio=(1.0, 1.0), rng=0)(backend.asarray(x))
    np.testing.assert_allclose(backend.to_numpy(whole), x, atol=1e-5)


def test_random_resized_crop_resamples_a_box_of_the_asked_size(backend):
    """A constant image stays constant (bilinear weights sum to 1); a box of a horizontal ramp
    comes out as a ramp whose range is the box's share of the width."""
    from diynn import RandomResizedCrop

    crop = RandomResizedCrop(scale=(0.25, 0.5), ratio=(1.0, 1.0), rng=4)
    constant = backend.to_numpy(crop(backend.asarray(np.full((8, 1, 16, 16), 0.7, np.float32))))
    np.testing.assert_allclose(constant, 0.7, rtol=1e-5)
    ramp = np.broadcast_to(np.arange(16, dtype=np.float32), (8, 1, 16, 16)).copy()
    out = backend.to_numpy(RandomResizedCrop(scale=(0.25, 0.5), ratio=(1.0, 1.0), rng=4)(backend.asarray(ramp)))
    assert np.all(np.diff(out[:, 0, 0, :], axis=1) >= -1e-5)  # still increasing left to right
    widths = out[:, 0, 0, -1] - out[:, 0, 0, 0]  # box width sqrt(share) * 16, less one pixel
    assert np.all(widths >= 0.5 * 16 - 2) and np.all(widths <= np.sqrt(0.5) * 16)
    assert len(set(np.round(out[:, 0, 0, 0], 3))) > 1  # boxes at different places
    with pytest.raises(ValueError, match=r"scale is a \(min, max\) range"):
        RandomResizedCrop(scale=(0.9, 0.5))


def test_two_views_stack_two_draws_and_fit_pretrains_without_labels(backend, numpy_rng):
    """TwoViews + NTXentLoss + fit(x, None): the SimCLR loop of experiments/self_supervised.py."""
    from diynn import NTXentLoss, RandomResizedCrop, TwoViews

    x = numpy_rng.random((12, 1, 8, 8)).astype(np.float32)
    views = backend.to_numpy(TwoViews(RandomResizedCrop(rng=0))(backend.asarray(x)))
    assert views.shape == (24, 1, 8, 8) and not np.allclose(views[:12], views[12:])
    with backend_scope(backend):
        model = diynn.Sequential(diynn.Flatten(), diynn.Linear(64, 16, rng=0), diynn.ReLU(), diynn.Linear(16, 8, rng=1))
    trainer = diynn.Trainer(model, NTXentLoss(0.5), diynn.Adam(model.parameters(), lr=1e-2), metric=None)
    history = trainer.fit(x, None, epochs=3, batch_size=6, progress=False, augment=TwoViews(RandomResizedCrop(rng=1)))
    assert len(history["loss"]) == 3 and np.all(np.isfinite(history["loss"]))
    # the per-epoch loss is NT-Xent's mean over pairs, not doubled by the second view: at most log(2 * 6 - 1)
    assert max(history["loss"]) < np.log(11) + 0.5
    labelled = diynn.Trainer(model, NTXentLoss(0.5), diynn.Adam(model.parameters()))
    with pytest.raises(ValueError, match="metric=None"):
        labelled.fit(x, None, epochs=1, progress=False)
    targeted = diynn.Trainer(model, diynn.MSELoss(), diynn.Adam(model.parameters()), metric=None)
    with pytest.raises(ValueError, match="MSELoss compares predictions with targets"):
        targeted.fit(x, None, epochs=1, progress=False)
    with pytest.raises(TypeError, match="TwoViews needs an augmentation"):
        TwoViews(0.5)


def backend_scope(backend):
    return diynn.use(backend.name)
