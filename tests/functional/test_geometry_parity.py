"""Property-based parity with PyTorch for every layer with a geometry (skipped without torch).

Hypothesis draws the kernel, the stride (larger than the kernel too), the padding (up to half the
kernel), odd and even image sizes, batch 1 and more, and inputs that are either normal or small
integers (so that max-pool windows hold ties); the forward and every gradient must equal
PyTorch's in float64. Examples are derandomised, so a failure reproduces from the same tree.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import diynn
from diynn.functional.convolution import CONV2D

# Hypothesis sweeps against PyTorch (about 6 s; the full suite runs them), on small arrays: one thread
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

torch = pytest.importorskip("torch")

EXAMPLES = settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
# Conv1d and MaxPool1d are the 2-D layers on a height-1 image, whose per-axis geometry the 2-D sweeps
# draw 500 times: 200 examples check the 1-D wrappers (their weights, their shapes) over the same space
EXAMPLES_1D = settings(EXAMPLES, max_examples=200)


def geometry(draw, transposed=False):
    """Kernel, stride, padding and an input size that gives at least one output position, per axis
    (drawn inline by `case`: a nested strategy would cost Hypothesis about 0.3 ms an example)."""
    kernel = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 5))
    padding = draw(st.integers(0, kernel // 2))
    output_padding = draw(st.integers(0, stride - 1)) if transposed else 0
    smallest = 1 if transposed else max(1, kernel - 2 * padding)
    size = draw(st.integers(smallest, smallest + 7))
    return kernel, stride, padding, output_padding, size


@st.composite
def case(draw, ndim=2, transposed=False, channels=True):
    """(axes geometries, batch, in channels, out channels, input, seed for the output gradient)."""
    axes = [geometry(draw, transposed) for _ in range(ndim)]
    batch = draw(st.integers(1, 3))
    in_channels = draw(st.integers(1, 3))
    out_channels = draw(st.integers(1, 3)) if channels else in_channels
    shape = (batch, in_channels, *(a[4] for a in axes))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    ties = draw(st.booleans())
    x = rng.integers(-2, 3, size=shape).astype(np.float64) if ties else rng.normal(size=shape)
    return axes, out_channels, x, rng


def pick(axes, index, one_d):
    values = tuple(a[index] for a in axes)
    return values[0] if one_d else values


def compare(ours, theirs, x, rng):
    """Copy ours' parameters into theirs, run both forward and backward, compare everything."""
    ours.astype(np.float64)
    theirs = theirs.double()
    with torch.no_grad():
        for (_, p), q in zip(ours.named_parameters(), theirs.parameters()):
            q.copy_(torch.from_numpy(np.asarray(p.data)))
    y = ours(x)
    grad_output = rng.normal(size=y.shape)
    grad_x = ours.backward(grad_output)
    x_t = torch.from_numpy(x).requires_grad_(True)
    y_t = theirs(x_t)
    y_t.backward(torch.from_numpy(grad_output))
    assert_close(y, y_t.detach().numpy(), "output")
    assert_close(grad_x, x_t.grad.numpy(), "input gradient")
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert_close(p.grad, q.grad.numpy(), name)


def assert_close(actual, expected, name, rtol=1e-10, atol=1e-12):
    """np.testing.assert_allclose (30 us a call) where a quick check, which passes only where it
    would (same shape, finite values within the tolerance), does not: it then reports as before."""
    quick = isinstance(actual, np.ndarray) and actual.shape == expected.shape
    if not (quick and np.all(np.abs(actual - expected) <= atol + rtol * np.abs(expected))):
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=name)


@EXAMPLES
@given(case())
def test_conv2d_matches_torch(sample):
    axes, out_channels, x, rng = sample
    kernel, stride, padding = pick(axes, 0, False), pick(axes, 1, False), pick(axes, 2, False)
    channels = x.shape[1]
    ours = diynn.Conv2d(channels, out_channels, kernel, stride=stride, padding=padding, rng=0)
    theirs = torch.nn.Conv2d(channels, out_channels, kernel, stride=stride, padding=padding)
    compare(ours, theirs, x, rng)


# Geometries the draws above do not reach: Winograd's F(2x2, 3x3) (3x3 stride 1, 8 or more input
# channels; odd output sizes, padding 0 to 2) and image-by-image products (256 or more output positions)
FAST_PATHS = [
    ((2, 8, 9, 8), 5, 3, 1, 1, "winograd"),
    ((3, 9, 7, 6), 4, 3, 1, 0, "winograd"),
    ((2, 8, 5, 5), 3, 3, 1, 2, "winograd"),
    ((2, 1, 17, 17), 3, 3, 1, 1, "compiled"),
    ((2, 2, 20, 19), 3, 4, 1, 1, "compiled"),
]


@pytest.mark.parametrize("shape, out_channels, kernel, stride, padding, path", FAST_PATHS)
def test_conv2d_compiled_paths_match_torch(shape, out_channels, kernel, stride, padding, path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape)
    ours = diynn.Conv2d(shape[1], out_channels, kernel, stride=stride, padding=padding, rng=0)
    theirs = torch.nn.Conv2d(shape[1], out_channels, kernel, stride=stride, padding=padding)
    compare(ours, theirs, x, rng)
    weight = np.asarray(ours.kernel)
    assert CONV2D.implementation_of(diynn.functional.conv2d(x, weight, None, stride, padding)[1]) == path


@EXAMPLES_1D
@given(case(ndim=1))
def test_conv1d_matches_torch(sample):
    axes, out_channels, x, rng = sample
    kernel, stride, padding = pick(axes, 0, True), pick(axes, 1, True), pick(axes, 2, True)
    channels = x.shape[1]
    ours = diynn.Conv1d(channels, out_channels, kernel, stride=stride, padding=padding, rng=0)
    theirs = torch.nn.Conv1d(channels, out_channels, kernel, stride=stride, padding=padding)
    compare(ours, theirs, x, rng)


@EXAMPLES
@given(case(transposed=True))
def test_conv_transpose2d_matches_torch(sample):
    axes, out_channels, x, rng = sample
    kernel, stride, padding, output_padding = (pick(axes, i, False) for i in range(4))
    channels = x.shape[1]
    arguments = dict(stride=stride, padding=padding, output_padding=output_padding)
    ours = diynn.ConvTranspose2d(channels, out_channels, kernel, rng=0, **arguments)
    theirs = torch.nn.ConvTranspose2d(channels, out_channels, kernel, **arguments)
    assume(all((a[4] - 1) * a[1] - 2 * a[2] + a[0] + a[3] >= 1 for a in axes))  # an output pixel at least
    compare(ours, theirs, x, rng)


@EXAMPLES
@given(case(channels=False))
def test_max_pool2d_matches_torch(sample):
    axes, _, x, rng = sample
    kernel, stride, padding = pick(axes, 0, False), pick(axes, 1, False), pick(axes, 2, False)
    compare(diynn.MaxPool2d(kernel, stride, padding), torch.nn.MaxPool2d(kernel, stride, padding), x, rng)


@EXAMPLES_1D
@given(case(ndim=1, channels=False))
def test_max_pool1d_matches_torch(sample):
    axes, _, x, rng = sample
    kernel, stride, padding = pick(axes, 0, True), pick(axes, 1, True), pick(axes, 2, True)
    compare(diynn.MaxPool1d(kernel, stride, padding), torch.nn.MaxPool1d(kernel, stride, padding), x, rng)


@EXAMPLES
@given(case(channels=False))
def test_avg_pool2d_matches_torch(sample):
    axes, _, x, rng = sample
    kernel, stride, padding = pick(axes, 0, False), pick(axes, 1, False), pick(axes, 2, False)
    compare(diynn.AvgPool2d(kernel, stride, padding), torch.nn.AvgPool2d(kernel, stride, padding), x, rng)


THE_ISSUES_CASES = [
    (lambda: diynn.MaxPool2d(2, stride=3, padding=1), lambda: torch.nn.MaxPool2d(2, 3, 1), (2, 3, 9, 9), False),
    (lambda: diynn.AvgPool2d(2, stride=3, padding=1), lambda: torch.nn.AvgPool2d(2, 3, 1), (2, 3, 9, 9), False),
    (
        lambda: diynn.MaxPool2d((2, 1), stride=(4, 1), padding=(1, 0)),
        lambda: torch.nn.MaxPool2d((2, 1), (4, 1), (1, 0)),
        (2, 1, 4, 3),
        True,
    ),
]


@pytest.mark.parametrize("ours, theirs, shape, integers", THE_ISSUES_CASES, ids=["max", "avg", "max_ties"])
def test_pooling_with_uncovered_pixels_matches_torch_in_float32(ours, theirs, shape, integers, numpy_rng):
    """Pixels that lie in no window (stride > kernel, with padding) get an exactly zero gradient."""
    x = numpy_rng.integers(0, 3, size=shape) if integers else numpy_rng.normal(size=shape)
    x = x.astype(np.float32)
    layer = ours()
    y = layer(x)
    grad_x = layer.backward(np.ones_like(y))
    x_t = torch.from_numpy(x).requires_grad_(True)
    y_t = theirs()(x_t)
    y_t.backward(torch.ones_like(y_t))
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(grad_x, x_t.grad.numpy(), rtol=1e-6, atol=1e-7)
