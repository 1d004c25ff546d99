"""The transformer's building blocks (issue #40): LayerNorm, GELU, SiLU, Embedding, and Linear and
Dropout on inputs with leading axes (N, ..., features). Gradients against finite differences on every
backend; forward and every gradient against PyTorch in float64 over shapes Hypothesis draws; the errors."""

import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import diynn
from diynn import functional as F
from diynn.functional.activations import GELU
from diynn.functional.selection import forced

torch = pytest.importorskip("torch", reason="the parity tests compare with PyTorch (pip install torch==2.13.0)")

EXAMPLES = settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
CLOSE = {"rtol": 1e-9, "atol": 1e-9}


def randomised(module, rng):
    """`module` in float64 on the active backend, every parameter drawn from N(0, 1) (not the ones and
    zeros it starts with)."""
    backend = diynn.get_backend()
    module.astype(backend.xp.float64)
    for parameter in module.parameters():
        parameter.data = backend.asarray(rng.standard_normal(parameter.data.shape))
    return module


# -- gradients against finite differences, on every backend --------------------------------------------


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: diynn.LayerNorm(5), (3, 5)),
        (lambda: diynn.LayerNorm((3, 4)), (2, 5, 3, 4)),
        (lambda: diynn.LayerNorm(4, bias=False), (2, 3, 4)),
        (lambda: diynn.LayerNorm(4, elementwise_affine=False), (6, 4)),
        (lambda: diynn.GELU(), (4, 6)),
        (lambda: diynn.GELU("tanh"), (2, 3, 4)),
        (diynn.SiLU, (3, 2, 5)),
        (lambda: diynn.Linear(4, 3, rng=0), (2, 3, 5, 4)),
    ],
    ids=[
        "layer_norm",
        "layer_norm_2d",
        "layer_norm_no_bias",
        "layer_norm_plain",
        "gelu",
        "gelu_tanh",
        "silu",
        "linear",
    ],
)
def test_gradients(backend, make, shape, numpy_rng):
    module = randomised(make(), numpy_rng)
    assert diynn.gradcheck(module, backend.asarray(2 * numpy_rng.standard_normal(shape)), max_checks=60)


def test_embedding_gradients(backend, numpy_rng):
    """Through an Embedding into a LayerNorm: indices repeat (their rows' gradients add up); the input,
    integer indices, has none (backward returns None)."""
    model = diynn.Sequential(diynn.Embedding(7, 4, padding_idx=6, rng=0), randomised(diynn.LayerNorm(4), numpy_rng))
    indices = backend.asarray(np.array([[1, 2, 2, 0], [5, 2, 1, 1]]))
    assert diynn.gradcheck(model, indices)
    with diynn.enable_grad():
        y = model(indices)
    assert model.backward(backend.xp.ones(y.shape, dtype=y.dtype)) is None


# -- parity with PyTorch, in float64 ----------------------------------------------------------------


def compare(ours, theirs, x, rng, *, input_gradient=True):
    """Copy ours' parameters into theirs, run both forward and backward, compare every output."""
    theirs = theirs.double()
    theirs.load_state_dict({name: torch.from_numpy(np.asarray(value)) for name, value in ours.state_dict().items()})
    y = ours(x)
    grad_output = rng.standard_normal(y.shape)
    grad_x = ours.backward(grad_output)
    x_t = torch.from_numpy(x)
    if input_gradient:
        x_t.requires_grad_(True)
    y_t = theirs(x_t)
    y_t.backward(torch.from_numpy(grad_output))
    np.testing.assert_allclose(y, y_t.detach().numpy(), **CLOSE, err_msg="output")
    if input_gradient:
        np.testing.assert_allclose(grad_x, x_t.grad.numpy(), **CLOSE, err_msg="input gradient")
    else:
        assert grad_x is None
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), **CLOSE, err_msg=name)


shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


@EXAMPLES
@given(
    leading=shapes,
    normalized=st.lists(st.integers(1, 6), min_size=1, max_size=2).map(tuple),
    eps=st.sampled_from([1e-5, 1e-3, 0.5]),
    affine=st.sampled_from([(True, True), (True, False), (False, False)]),
    implementation=st.sampled_from(["compiled", "portable"]),
    seed=st.integers(0, 2**16),
)
def test_layer_norm_matches_torch(leading, normalized, eps, affine, implementation, seed):
    rng = np.random.default_rng(seed)
    elementwise_affine, bias = affine
    ours = randomised(diynn.LayerNorm(normalized, eps, elementwise_affine, bias), rng)
    theirs = torch.nn.LayerNorm(normalized, eps, elementwise_affine, bias)
    x = rng.standard_normal((*leading, *normalized)) * rng.uniform(0.1, 10) + rng.uniform(-5, 5)
    with forced("layer_norm", implementation):
        compare(ours, theirs, x, rng)


@EXAMPLES
@given(
    shape=shapes,
    scale=st.sampled_from([1.0, 4.0, 30.0]),
    approximate=st.sampled_from(["none", "tanh"]),
    seed=st.integers(0, 2**16),
)
def test_gelu_matches_torch(shape, scale, approximate, seed):
    rng = np.random.default_rng(seed)
    x = scale * rng.standard_normal(shape)
    for implementation in ("compiled", "portable"):
        with forced("gelu", implementation):
            compare(diynn.GELU(approximate), torch.nn.GELU(approximate), x, rng)


@EXAMPLES
@given(shape=shapes, scale=st.sampled_from([1.0, 4.0, 30.0]), seed=st.integers(0, 2**16))
def test_silu_matches_torch(shape, scale, seed):
    rng = np.random.default_rng(seed)
    compare(diynn.SiLU(), torch.nn.SiLU(), scale * rng.standard_normal(shape), rng)


def test_gelu_and_silu_on_large_inputs_match_torch(numpy_rng):
    """Enough values for the compiled kernels (the selection's default on the CPU), the tails included."""
    x = np.concatenate([np.linspace(-40, 40, 20001), 5 * numpy_rng.standard_normal(20000)])
    for ours, theirs in [(diynn.GELU(), torch.nn.GELU()), (diynn.GELU("tanh"), torch.nn.GELU("tanh"))]:
        compare(ours, theirs, x, numpy_rng)
    compare(diynn.SiLU(), torch.nn.SiLU(), x, numpy_rng)


@EXAMPLES
@given(
    rows=st.integers(1, 12),
    width=st.integers(1, 5),
    shape=shapes,
    padding=st.one_of(st.none(), st.integers(-12, 11)),
    seed=st.integers(0, 2**16),
)
def test_embedding_matches_torch(rows, width, shape, padding, seed):
    padding = None if padding is None or not -rows <= padding < rows else padding
    rng = np.random.default_rng(seed)
    ours = diynn.Embedding(rows, width, padding_idx=padding, rng=seed).astype(np.float64)
    indices = rng.integers(0, rows, shape)
    compare(ours, torch.nn.Embedding(rows, width, padding_idx=padding), indices, rng, input_gradient=False)
    if padding is not None:
        assert not ours.weight.grad[padding].any()


@EXAMPLES
@given(
    leading=shapes,
    in_features=st.integers(1, 5),
    out_features=st.integers(1, 5),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_linear_with_leading_axes_matches_torch(leading, in_features, out_features, bias, seed):
    rng = np.random.default_rng(seed)
    ours = diynn.Linear(in_features, out_features, bias=bias, rng=seed).astype(np.float64)
    x = rng.standard_normal((*leading, in_features))
    if x.ndim == 1:
        x = x[None]
    compare(ours, torch.nn.Linear(in_features, out_features, bias=bias), x, rng)


def test_embedding_starts_as_torch_does():
    """N(0, 1) rows, the padding row zero; PyTorch's parameter names (a state_dict carries over)."""
    layer = diynn.Embedding(4000, 16, padding_idx=-1, rng=0)
    weight = np.asarray(layer.weight.data)
    assert layer.padding_idx == 3999 and not weight[3999].any()
    assert weight[:-1].std() == pytest.approx(1, rel=0.02) and abs(weight[:-1].mean()) < 0.01
    assert list(layer.state_dict()) == list(torch.nn.Embedding(4000, 16).state_dict())
    assert list(diynn.LayerNorm((3, 4)).state_dict()) == list(torch.nn.LayerNorm((3, 4)).state_dict())


def test_linear_takes_the_rows_of_a_contiguous_input_as_a_view(numpy_rng):
    x = numpy_rng.standard_normal((2, 3, 4))
    y, cache = F.linear(x, numpy_rng.standard_normal((5, 4)))
    assert y.shape == (2, 3, 5) and np.shares_memory(cache.x, x)
    grad_x, grad_weight, grad_bias = F.linear_backward(cache, numpy_rng.standard_normal((2, 3, 5)))
    assert grad_x.shape == (2, 3, 4) and grad_weight.shape == (5, 4) and grad_bias is None


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4), (2, 3, 4, 5)])
def test_dropout_takes_any_shape(backend, shape, numpy_rng):
    layer = diynn.Dropout(0.5, rng=0)
    x = backend.asarray(numpy_rng.standard_normal(shape))
    y = layer(x)
    grad = layer.backward(backend.xp.ones(shape, dtype=x.dtype))
    y, grad, x = backend.to_numpy(y), backend.to_numpy(grad), backend.to_numpy(x)
    kept = y != 0
    assert y.shape == shape and 0 < kept.mean() < 1
    np.testing.assert_allclose(y[kept], 2 * x[kept])
    np.testing.assert_array_equal(grad, 2.0 * kept)


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: diynn.LayerNorm(4)(np.ones((2, 5), np.float32)),
            ValueError,
            "layer_norm expects an input whose last axes are (4,), got shape (2, 5)",
        ),
        (lambda: diynn.LayerNorm((2, 3))(np.ones(3, np.float32)), ValueError, "last axes are (2, 3), got shape (3,)"),
        (lambda: diynn.LayerNorm(4)(np.ones((2, 4))), TypeError, "LayerNorm expects dtype float32"),
        (lambda: diynn.LayerNorm(0), ValueError, "normalized_shape must be an integer >= 1, got 0"),
        (lambda: diynn.LayerNorm(4, eps=0), ValueError, "eps must be a finite number in (0"),
        (
            lambda: F.layer_norm(np.ones((2, 4)), 4, np.ones(3)),
            ValueError,
            "layer_norm's weight expects shape (4,), got (3,)",
        ),
        (
            lambda: F.layer_norm(np.ones((2, 4)), (4,), np.ones((1, 4))),
            ValueError,
            "layer_norm's weight expects an input with 1 axes",
        ),
        (
            lambda: F.layer_norm(np.ones((2, 4)), 4, None, np.ones(3)),
            ValueError,
            "layer_norm's bias expects shape (4,), got (3,)",
        ),
        (
            lambda: F.layer_norm(np.ones((2, 4), np.float32), 4, np.ones(4)),
            TypeError,
            "layer_norm's weight has dtype float64 and its input float32: they must match",
        ),
        (lambda: F.layer_norm(np.ones((2, 4)), -1), ValueError, "normalized_shape must be positive integers, got -1"),
        (lambda: diynn.GELU("exact"), ValueError, "unknown approximate 'exact'; valid names are: none, tanh"),
        (lambda: F.gelu(np.ones(3), "erf"), ValueError, "gelu's approximate must be one of none, tanh, got 'erf'"),
        (
            lambda: diynn.Embedding(5, 2)(np.array([[0, 5]])),
            ValueError,
            "embedding's indices must be in [0, 5) for 5 rows, got 5",
        ),
        (
            lambda: diynn.Embedding(5, 2)(np.array([-1, 2])),
            ValueError,
            "embedding's indices must be in [0, 5) for 5 rows, got -1",
        ),
        (
            lambda: diynn.Embedding(5, 2)(np.array([0.0, 2.0])),
            TypeError,
            "embedding expects integer indices, got float64",
        ),
        (lambda: diynn.Embedding(5, 2)([0, 2]), TypeError, "embedding expects integer indices, got list"),
        (lambda: diynn.Embedding(5, 2, padding_idx=5), ValueError, "padding_idx must be in [-5, 5), got 5"),
        (lambda: diynn.Embedding(5, 2, padding_idx=-6), ValueError, "padding_idx must be an integer >= -5, got -6"),
        (
            lambda: F.embedding(np.array([1]), np.ones((5, 2)), padding_idx=7),
            ValueError,
            "embedding's padding_idx must be in [-5, 5) for 5 rows, got 7",
        ),
        (
            lambda: diynn.Linear(4, 3)(np.ones((2, 3, 5), np.float32)),
            ValueError,
            "Linear expects size 4 on axis 2, got shape (2, 3, 5)",
        ),
        (
            lambda: diynn.Linear(4, 3)(np.ones(4, np.float32)),
            ValueError,
            "Linear expects an input with at least 2 axes (N, ..., in), got shape (4,)",
        ),
        (
            lambda: F.linear(np.ones((2, 3, 5)), np.ones((3, 4))),
            ValueError,
            "linear expects size 4 on axis 2, got shape (2, 3, 5)",
        ),
        (
            lambda: F.linear_backward(F.linear(np.ones((2, 3, 4)), np.ones((3, 4)))[1], np.ones((6, 3))),
            ValueError,
            "linear_backward expects a gradient of the output's shape (2, 3, 3), got (6, 3)",
        ),
    ],
)
def test_errors_name_what_was_expected_and_given(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_backwards_refuse_other_caches_and_gradients():
    _, cache = F.gelu(np.ones((2, 3)))
    with pytest.raises(TypeError, match="layer_norm's backward expects a cache made by layer_norm, got tuple"):
        F.layer_norm_backward(cache, np.ones((2, 3)))
    with pytest.raises(TypeError, match="embedding_backward expects a cache made by embedding, got tuple"):
        F.embedding_backward(cache, np.ones((2, 3)))
    with pytest.raises(ValueError, match=re.escape("gelu_backward expects a gradient of the output's shape (2, 3)")):
        F.gelu_backward(cache, np.ones((3, 2)))
    _, cache = F.embedding(np.array([[1, 2]]), np.ones((4, 3)))
    with pytest.raises(
        ValueError, match=re.escape("embedding_backward expects a gradient of the output's shape (1, 2, 3)")
    ):
        F.embedding_backward(cache, np.ones((2, 3)))


@pytest.mark.parametrize("op", [F.gelu, F.silu, lambda x: F.layer_norm(x, 4)])
def test_an_integer_input_is_a_clear_error(backend, op):
    """Computed in the input's dtype, an integer input would be truncated (or become float64)."""
    with pytest.raises(TypeError, match="expects a real floating-point input, got dtype"):
        op(backend.asarray(np.arange(8).reshape(2, 4)))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_of_huge_inputs_saturates_without_warnings(backend, approximate):
    """|x| up to float32's largest: y = x or 0 and dy/dx = 1 or 0, on the portable path as on the
    compiled one, and no overflow warning from NumPy."""
    x = backend.asarray(np.array([1e20, -1e20, 3e38, -3e38, 0.5], np.float32))
    for name in GELU.serving(backend, x.size):
        with forced("gelu", name), warnings.catch_warnings():
            warnings.simplefilter("error")
            y, cache = F.gelu(x, approximate)
            grad = backend.to_numpy(F.gelu_backward(cache, backend.xp.ones_like(x)))
        np.testing.assert_array_equal(backend.to_numpy(y)[:4], np.array([1e20, 0, 3e38, 0], np.float32), err_msg=name)
        np.testing.assert_array_equal(grad[:4], [1, 0, 1, 0], err_msg=name)
