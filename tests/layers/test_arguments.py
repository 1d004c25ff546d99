"""Wrong calls end in a clear TypeError or ValueError naming the argument, never a raw error from
deep inside (ZeroDivisionError, AttributeError, math domain error) and never a silent acceptance.

The examples first (each failed before the checks existed), then Hypothesis: random argument
values of every kind for each constructor; whatever it draws must either build a working module
or raise TypeError / ValueError."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import diynn


def params():
    return diynn.Linear(2, 2, rng=0).parameters()


CLEAR_ERRORS = {
    "Linear(0, 5)": (lambda: diynn.Linear(0, 5), ValueError, "in_features must be an integer >= 1, got 0"),
    "Linear(-3, 5)": (lambda: diynn.Linear(-3, 5), ValueError, "in_features"),
    "Linear(2.5, 5)": (lambda: diynn.Linear(2.5, 5), TypeError, "in_features must be an integer"),
    "Conv2d kernel 0": (lambda: diynn.Conv2d(1, 1, 0), ValueError, "kernel_size must be an integer >= 1, got 0"),
    "Conv2d stride 0": (lambda: diynn.Conv2d(1, 1, 3, stride=0), ValueError, "stride must be an integer >= 1"),
    "Conv2d padding -1": (lambda: diynn.Conv2d(1, 1, 3, padding=-1), ValueError, "padding must be an integer >= 0"),
    "Conv2d kernel (3,)": (lambda: diynn.Conv2d(1, 1, (3,)), ValueError, "kernel_size must be an integer or a pair"),
    "MaxPool2d stride 0": (lambda: diynn.MaxPool2d(2, stride=0), ValueError, "stride must be an integer >= 1"),
    "BatchNorm2d(0)": (lambda: diynn.BatchNorm2d(0), ValueError, "num_features"),
    "BatchNorm2d momentum 2": (lambda: diynn.BatchNorm2d(3, momentum=2), ValueError, "momentum"),
    'Dropout("0.5")': (lambda: diynn.Dropout("0.5"), TypeError, "dropout probability"),
    "Dropout(1.0)": (lambda: diynn.Dropout(1.0), ValueError, "dropout probability"),
    "Unflatten((0, 2))": (lambda: diynn.Unflatten((0, 2)), ValueError, r"shape\[0\]"),
    "Linear on a list": (lambda: diynn.Linear(2, 1, rng=0)([[1.0, 2.0]]), TypeError, "Linear expects an array"),
    "Adam lr nan": (lambda: diynn.Adam(params(), lr=float("nan")), ValueError, "lr"),
    "SGD lr -1": (lambda: diynn.SGD(params(), lr=-1), ValueError, "lr"),
    "SGD momentum -0.5": (lambda: diynn.SGD(params(), lr=0.1, momentum=-0.5), ValueError, "momentum"),
    "Adam betas 1.5": (lambda: diynn.Adam(params(), betas=(1.5, 0.999)), ValueError, r"betas\[0\]"),
    "Adam eps -1e-8": (lambda: diynn.Adam(params(), eps=-1e-8), ValueError, "eps"),
    "AdamW weight_decay -1": (lambda: diynn.AdamW(params(), weight_decay=-1), ValueError, "weight_decay"),
    "StepLR step 0": (lambda: diynn.StepLR(diynn.SGD(params(), lr=0.1), 0), ValueError, "step_size"),
    "CosineLR epochs 0": (lambda: diynn.CosineLR(diynn.SGD(params(), lr=0.1), 0), ValueError, "epochs"),
    "EarlyStopping patience 0": (lambda: diynn.EarlyStopping(None, patience=0), ValueError, "patience"),
    "RandomResizedCrop scale 0.5": (lambda: diynn.RandomResizedCrop(scale=0.5), TypeError, "scale must be a"),
    "RandomResizedCrop scale (0, 1)": (lambda: diynn.RandomResizedCrop(scale=(0, 1)), ValueError, "scale"),
    "RandomErasing ratio (3, 1)": (lambda: diynn.RandomErasing(ratio=(3, 1)), ValueError, "ratio is a"),
    "RandomBrightnessContrast contrast 1.5": (
        lambda: diynn.RandomBrightnessContrast(contrast=1.5),
        ValueError,
        r"contrast must be a finite number in \[0, 1\]",
    ),
    "RandomBrightnessContrast brightness -1": (
        lambda: diynn.RandomBrightnessContrast(brightness=-1),
        ValueError,
        "brightness must be",
    ),
    "TwoViews(None)": (lambda: diynn.TwoViews(None), TypeError, "TwoViews needs an augmentation"),
    "NTXentLoss temperature 0": (lambda: diynn.NTXentLoss(0), ValueError, "temperature"),
    "RandomShift('a')": (lambda: diynn.RandomShift("a"), TypeError, "max_shift must be an integer >= 0"),
    "RandomShift(-1)": (lambda: diynn.RandomShift(-1), ValueError, "max_shift must be an integer >= 0"),
    "RandomHorizontalFlip(2)": (
        lambda: diynn.RandomHorizontalFlip(2),
        ValueError,
        r"p must be a finite number in \[0, 1\]",
    ),
    "RandomHorizontalFlip('x')": (lambda: diynn.RandomHorizontalFlip("x"), TypeError, "p must be a real number"),
    "cnn_encoder(image_size=)": (lambda: diynn.cnn_encoder(image_size=28), TypeError, "image_size"),
    "cnn(image_size=3)": (lambda: diynn.cnn(image_size=3), ValueError, "image_size must be an integer >= 4"),
    "CrossEntropyLoss on no rows": (
        lambda: diynn.CrossEntropyLoss()(np.zeros((0, 10), np.float32), np.zeros(0, np.int64)),
        ValueError,
        r"CrossEntropyLoss got an empty batch \(prediction shape \(0, 10\)\)",
    ),
    "MSELoss on no rows": (
        lambda: diynn.MSELoss()(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)),
        ValueError,
        "MSELoss got an empty batch",
    ),
    "Unflatten((3, 3)) on 10 features": (
        lambda: diynn.Unflatten((3, 3))(np.zeros((2, 10), np.float32)),
        ValueError,
        r"Unflatten expects size 9 on axis 1, got shape \(2, 10\)",
    ),
}


@pytest.mark.parametrize("case", list(CLEAR_ERRORS))
def test_bad_arguments_are_clear_errors(case):
    make, kind, message = CLEAR_ERRORS[case]
    with pytest.raises(kind, match=message):
        make()


def trainer():
    model = diynn.mlp([2, 3], rng=0)
    return diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.SGD(model.parameters(), lr=0.1))


X, Y = np.random.default_rng(0).random((8, 2), dtype=np.float32), np.arange(8) % 3

BAD_CALLS = {
    "fit on no samples": (lambda: trainer().fit(X[:0], Y[:0], progress=False), ValueError, "no samples"),
    "fit lengths differ": (lambda: trainer().fit(X, Y[:5], progress=False), ValueError, "8 samples but y has 5"),
    "fit epochs -1": (lambda: trainer().fit(X, Y, epochs=-1), ValueError, "epochs must be an integer >= 1"),
    "fit batch 0": (lambda: trainer().fit(X, Y, batch_size=0), ValueError, "batch_size"),
    "fit strings": (lambda: trainer().fit([["a", "b"]], [0]), TypeError, "x must be numeric"),
    "fit validation not a pair": (
        lambda: trainer().fit(X, Y, validation_data=X, progress=False),
        TypeError,
        "validation_data must be a pair",
    ),
    "evaluate batch 0": (lambda: trainer().evaluate(X, Y, batch_size=0), ValueError, "batch_size"),
    "predict no samples": (lambda: trainer().predict(X[:0]), ValueError, "no samples"),
    "accuracy lengths differ": (
        lambda: diynn.accuracy(trainer().model, X, Y[:3]),
        ValueError,
        "8 samples but y has 3",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_training_calls_are_clear_errors(case):
    call, kind, message = BAD_CALLS[case]
    with pytest.raises(kind, match=message):
        call()


ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.lists(st.integers(-1, 4), max_size=3),
)

CONSTRUCTORS = {
    "Linear": (lambda a, b, c: diynn.Linear(a, b, rng=0), lambda layer: (3, layer.in_features)),
    "Conv2d": (
        lambda a, b, c: diynn.Conv2d(2, a, b, stride=c, rng=0),
        lambda layer: (2, 2, 9, 9),
    ),
    "ConvTranspose2d": (
        lambda a, b, c: diynn.ConvTranspose2d(2, a, b, stride=c, rng=0),
        lambda layer: (2, 2, 4, 4),
    ),
    "MaxPool2d": (lambda a, b, c: diynn.MaxPool2d(a, stride=b, padding=c), lambda layer: (2, 1, 9, 9)),
    "AvgPool2d": (lambda a, b, c: diynn.AvgPool2d(a, stride=b, padding=c), lambda layer: (2, 1, 9, 9)),
    "BatchNorm1d": (lambda a, b, c: diynn.BatchNorm1d(a, eps=b, momentum=c), lambda layer: (4, layer.num_features)),
    "Dropout": (lambda a, b, c: diynn.Dropout(a), lambda layer: (3, 4)),
    "LeakyReLU": (lambda a, b, c: diynn.LeakyReLU(a), lambda layer: (3, 4)),
    "SGD": (lambda a, b, c: diynn.SGD(params(), lr=a, momentum=b, weight_decay=c), None),
    "Adam": (lambda a, b, c: diynn.Adam(params(), lr=a, betas=b, eps=c), None),
}


@pytest.mark.parametrize("name", list(CONSTRUCTORS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=ANYTHING, b=ANYTHING, c=ANYTHING)
def test_any_argument_builds_a_working_module_or_is_a_clear_error(name, a, b, c):
    make, input_shape = CONSTRUCTORS[name]
    try:
        built = make(a, b, c)
    except (TypeError, ValueError) as error:
        assert str(error), "an error must say what was wrong"
        return
    if input_shape is None:
        return
    backend = diynn.get_backend()  # where the module was built (DIYNN_BACKEND's)
    x = backend.asarray(np.random.default_rng(0).random(input_shape(built), dtype=np.float32))
    try:
        y = built(x)
    except ValueError as error:  # an input too small for a valid kernel is the input's error
        assert "smaller than the kernel" in str(error)
        return
    assert np.all(np.isfinite(backend.to_numpy(y))) or name == "LeakyReLU" and not math.isfinite(float(a))
    built.backward(backend.xp.ones_like(y))
