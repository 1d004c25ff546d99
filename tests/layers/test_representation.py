"""The self-supervised evaluation protocol (experiments/helpers/representation.py)."""

import numpy as np

import diynn
from diynn_experiments import representation


def reference_knn(train, y_train, test, y_test, k, temperature):
    """The InstDisc vote written out one test sample at a time."""
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    train, test = unit(train.astype(np.float64)), unit(test.astype(np.float64))
    correct = 0
    for sample, label in zip(test, y_test):
        similarity = train @ sample
        nearest = np.argsort(-similarity)[:k]
        votes = np.zeros(y_train.max() + 1)
        for index in nearest:
            votes[y_train[index]] += np.exp(similarity[index] / temperature)
        correct += votes.argmax() == label
    return correct / len(test)


def test_cosine_knn_is_the_temperature_weighted_vote(numpy_rng):
    train, test = numpy_rng.normal(size=(300, 6)), numpy_rng.normal(size=(50, 6))
    y_train, y_test = numpy_rng.integers(0, 3, 300), numpy_rng.integers(0, 3, 50)
    ours = representation.cosine_knn(train, y_train, test, y_test, k=20, temperature=0.1, chunk=7)
    assert ours == reference_knn(train, y_train, test, y_test, 20, 0.1)
    scaled = representation.cosine_knn(train * 5.0, y_train, test * 0.1, y_test, k=20, temperature=0.1)
    assert scaled == ours  # cosine similarity: the features' lengths do not matter


def test_batch_norm_statistics_are_re_estimated_on_the_images(numpy_rng):
    images = (numpy_rng.normal(size=(600, 2, 3, 3)) * [[[[2.0]], [[0.5]]]] + 3.0).astype(np.float32)
    model = diynn.Sequential(diynn.BatchNorm2d(2), diynn.Flatten())
    representation.reestimate_batch_norm(model, images, batch_size=100)
    np.testing.assert_allclose(model[0].running_mean, images.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(model[0].running_var, images.var(axis=(0, 2, 3)), rtol=0.05)
    assert model[0].momentum == 0.1 and not model.training


def test_pooled_and_flattened_features_of_the_cnn_encoder(numpy_rng):
    encoder = diynn.cnn_encoder(rng=0).eval()
    features = representation.pooled_and_flattened(encoder, numpy_rng.random((5, 1, 28, 28), dtype=np.float32))
    assert features["pooled"].shape == (5, 64) and features["flattened"].shape == (5, 64 * 7 * 7)
    np.testing.assert_allclose(features["pooled"], features["flattened"].reshape(5, 64, 49).mean(axis=2), rtol=1e-5)


def test_label_subsets(numpy_rng):
    labels = numpy_rng.integers(0, 10, 5000)
    subsets = representation.label_subsets(labels, seed=0)
    assert np.all(np.bincount(labels[subsets["10 per class"]]) == 10)
    assert len(subsets["1%"]) == 50 and len(subsets["10%"]) == 500 and len(subsets["100%"]) == 5000
    assert set(subsets["1%"]) <= set(subsets["10%"])
    assert all(np.array_equal(a, b) for a, b in zip(subsets.values(), representation.label_subsets(labels, 0).values()))
