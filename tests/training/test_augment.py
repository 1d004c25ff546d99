"""Augmentations of image batches (diynn/augment.py)."""

import numpy as np
import pytest

import diynn
from diynn import RandomHorizontalFlip, RandomShift


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


def test_brightness_contrast_scales_each_image_about_its_mean_and_shifts_it(backend, numpy_rng):
    from diynn import RandomBrightnessContrast

    x = (0.4 + 0.2 * numpy_rng.random((64, 1, 6, 6))).astype(np.float32)  # no clipping at these strengths
    jitter = RandomBrightnessContrast(brightness=0.1, contrast=0.3, p=1.0, rng=5)
    y = backend.to_numpy(jitter(backend.asarray(x)))
    assert y.shape == x.shape and y.dtype == np.float32
    mean_x, mean_y = x.mean(axis=(1, 2, 3)), y.mean(axis=(1, 2, 3))
    factor = ((y - mean_y[:, None, None, None]) * (x - mean_x[:, None, None, None])).sum(axis=(1, 2, 3))
    factor /= ((x - mean_x[:, None, None, None]) ** 2).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(
        y, (x - mean_x[:, None, None, None]) * factor[:, None, None, None] + mean_y[:, None, None, None], atol=1e-5
    )
    assert np.all(np.abs(factor - 1) <= 0.3 + 1e-5) and factor.std() > 0.1  # one contrast per image
    offset = mean_y - mean_x
    assert np.all(np.abs(offset) <= 0.1 + 1e-6) and offset.std() > 0.03  # one brightness per image
    again = backend.to_numpy(RandomBrightnessContrast(brightness=0.1, contrast=0.3, p=1.0, rng=5)(backend.asarray(x)))
    np.testing.assert_array_equal(y, again)  # seeded


def test_brightness_contrast_leaves_unchosen_images_and_clips_to_the_image_range(backend, numpy_rng):
    from diynn import RandomBrightnessContrast

    x = numpy_rng.random((200, 1, 4, 4)).astype(np.float32)
    untouched = backend.to_numpy(RandomBrightnessContrast(p=0.0, rng=1)(backend.asarray(x)))
    np.testing.assert_array_equal(untouched, x)
    y = backend.to_numpy(RandomBrightnessContrast(brightness=0.5, contrast=1.0, p=0.5, rng=1)(backend.asarray(x)))
    changed = np.any(y != x, axis=(1, 2, 3))
    assert 60 < changed.sum() < 140 and y.min() >= 0 and y.max() <= 1
