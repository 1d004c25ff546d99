"""Scaled dot-product attention and MultiheadAttention (diynn/functional/attention.py,
diynn/layers/attention.py): gradchecks in float64 (masks, causal, dropout with a fixed mask, several
heads, self- and cross-attention), parity with PyTorch (the output and every gradient within 1e-9 in
float64, and a Hypothesis sweep over batch, lengths, heads and masks), the masks' semantics (a query
with every key masked gets 0), weights exchanged with PyTorch through .safetensors, and save/load
with the config. The PyTorch comparisons are skipped without torch."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import diynn
import diynn.functional as F
from diynn import MultiheadAttention, Parameter, gradcheck

try:
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="the comparisons with PyTorch need torch")

TOLERANCE = {"rtol": 1e-9, "atol": 1e-10}

pytestmark = pytest.mark.usefixtures("one_thread")  # small arrays: see conftest.py


class Attention(diynn.Module):
    """q -> scaled_dot_product_attention(q, k, v, **options), with k and v as parameters, so that
    gradcheck checks the gradients of all three."""

    def __init__(self, k, v, fixed_dropout=False, **options):
        super().__init__()
        self.k, self.v = Parameter(k), Parameter(v)
        self.fixed_dropout, self.options = fixed_dropout, options

    def forward(self, q):
        options = dict(self.options)
        if self.fixed_dropout:  # the same mask on every call, so finite differences apply
            options["rng"] = diynn.backends.backend_of(q).rng(0)
        y, cache = F.scaled_dot_product_attention(q, self.k.data, self.v.data, **options)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        grad_q, grad_k, grad_v = F.scaled_dot_product_attention_backward(self.saved_for_backward(), grad_output)
        self.accumulate_grads(k=grad_k, v=grad_v)
        return grad_q


def qkv(rng, batch=(2, 3), length=4, keys=5, features=3, value_features=2):
    return (
        rng.normal(size=(*batch, length, features)),
        rng.normal(size=(*batch, keys, features)),
        rng.normal(size=(*batch, keys, value_features)),
    )


def masks(rng, length=4, keys=5):
    """Masks of each kind for (2, 3, L, S) logits: boolean (a query row with every key masked among
    them) and additive (-inf entries among them), broadcasting from fewer axes."""
    allowed = rng.random((length, keys)) < 0.6
    allowed[:, 0] = True
    allowed[1] = False  # query 1 attends to nothing
    additive = rng.normal(size=(3, length, keys))
    additive[0, 2, 1:] = -np.inf
    return {
        "none": None,
        "bool": allowed,
        "bool_per_head": rng.random((2, 3, length, keys)) < 0.7,
        "float": additive,
        "float_row": rng.normal(size=(1, keys)),
    }


MASK_KINDS = ["none", "bool", "bool_per_head", "float", "float_row"]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kind", MASK_KINDS)
def test_attention_gradients(backend, numpy_rng, kind, causal):
    q, k, v = qkv(numpy_rng)
    mask = masks(numpy_rng)[kind]
    mask = None if mask is None else backend.asarray(mask)
    module = Attention(backend.asarray(k), backend.asarray(v), attn_mask=mask, is_causal=causal)
    assert gradcheck(module, q, max_checks=40)


@pytest.mark.parametrize("length, keys", [(5, 3), (2, 6)])
def test_attention_gradients_causal_rectangular_and_dropout(backend, numpy_rng, length, keys):
    q, k, v = qkv(numpy_rng, batch=(2,), length=length, keys=keys)
    module = Attention(backend.asarray(k), backend.asarray(v), True, is_causal=True, dropout_p=0.4)
    assert gradcheck(module, q, max_checks=40)


def test_attention_keeps_float32_and_the_dropout_mask(backend, numpy_rng):
    xp = backend.xp
    q, k, v = (backend.asarray(a, dtype=xp.float32) for a in qkv(numpy_rng, length=40, keys=50))
    y, cache = F.scaled_dot_product_attention(q, k, v)
    assert y.dtype == xp.float32 and cache.weights.dtype == xp.float32 and cache.dropout_scale is None
    dropped, cache = F.scaled_dot_product_attention(q, k, v, dropout_p=0.25, rng=backend.rng(0))
    scale = backend.to_numpy(cache.dropout_scale)
    assert set(np.unique(scale)) <= {0.0, np.float32(1 / 0.75)}
    assert (scale == 0).mean() == pytest.approx(0.25, abs=0.02)
    weights = backend.to_numpy(cache.weights)
    expected = (weights * scale) @ backend.to_numpy(v)
    np.testing.assert_allclose(backend.to_numpy(dropped), expected, rtol=1e-5, atol=1e-6)
    grads = F.scaled_dot_product_attention_backward(cache, xp.ones(y.shape, dtype=xp.float32))
    assert all(grad.dtype == xp.float32 for grad in grads)


def test_attention_is_stable_for_large_logits(backend):
    xp = backend.xp
    q = backend.asarray(np.full((1, 2, 4), 100.0, np.float32))
    k = backend.asarray(np.asarray([[[100.0] * 4, [99.0] * 4, [-100.0] * 4]], np.float32))
    v = backend.asarray(np.eye(3, dtype=np.float32)[None])
    y, _ = F.scaled_dot_product_attention(q, k, v)  # logits 20000, 19800, -20000: exp overflows unshifted
    weights = backend.to_numpy(y)
    assert np.all(np.isfinite(weights))
    np.testing.assert_allclose(weights, [[[1, 0, 0], [1, 0, 0]]], atol=1e-6)
    assert y.dtype == xp.float32


def test_a_query_with_every_key_masked_gets_zero(backend, numpy_rng):
    q, k, v = (backend.asarray(a) for a in qkv(numpy_rng, batch=(2,)))
    allowed = np.ones((4, 5), bool)
    allowed[2] = False
    additive = np.zeros((4, 5))
    additive[2] = -np.inf
    for mask in (allowed, additive):
        y, cache = F.scaled_dot_product_attention(q, k, v, attn_mask=backend.asarray(mask))
        grad_y = backend.asarray(numpy_rng.normal(size=tuple(y.shape)))
        grad_q, grad_k, grad_v = F.scaled_dot_product_attention_backward(cache, grad_y)
        assert np.all(backend.to_numpy(y)[:, 2] == 0) and np.all(np.isfinite(backend.to_numpy(y)))
        assert np.all(backend.to_numpy(grad_q)[:, 2] == 0)
        assert np.all(np.isfinite(backend.to_numpy(grad_k))) and np.all(np.isfinite(backend.to_numpy(grad_v)))


def test_attention_refuses_what_does_not_fit(backend, numpy_rng):
    q, k, v = (backend.asarray(a) for a in qkv(numpy_rng))
    with pytest.raises(ValueError, match=r"does not broadcast to the logits' \(\.\.\., L, S\) = \(2, 3, 4, 5\)"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=backend.asarray(np.ones((4, 4), bool)))
    with pytest.raises(TypeError, match="must be boolean or of the inputs' dtype"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=backend.asarray(np.ones((4, 5), np.int64)))
    with pytest.raises(ValueError, match="expects k with q's feature size E = 3"):
        F.scaled_dot_product_attention(q, v, v)
    with pytest.raises(ValueError, match=r"as many values as keys \(S = 5\)"):
        F.scaled_dot_product_attention(q, k, q)
    with pytest.raises(ValueError, match="the same batch axes"):
        F.scaled_dot_product_attention(q[0, ...], k, v)
    with pytest.raises(ValueError, match="needs rng"):
        F.scaled_dot_product_attention(q, k, v, dropout_p=0.1)
    with pytest.raises(ValueError, match=r"dropout_p must be a finite number in \[0, 1\)"):
        F.scaled_dot_product_attention(q, k, v, dropout_p=1.0, rng=backend.rng(0))
    y, cache = F.scaled_dot_product_attention(q, k, v)
    with pytest.raises(ValueError, match=r"expects a gradient of the output's shape \(2, 3, 4, 2\)"):
        F.scaled_dot_product_attention_backward(cache, q)


class MaskedAttention(diynn.Module):
    """x -> attention(x, key, value, masks): key and value parameters (cross-attention) or None."""

    def __init__(self, attention, key=None, value=None, fixed_dropout=False, **masks):
        super().__init__()
        self.attention, self.masks, self.fixed_dropout = attention, masks, fixed_dropout
        self.key = None if key is None else Parameter(key)
        self.value = None if value is None else Parameter(value)

    def forward(self, x):
        if self.fixed_dropout:  # the same dropout mask on every call, so finite differences apply
            self.attention.rng = diynn.backends.backend_of(x).rng(0)
        key, value = (None if p is None else p.data for p in (self.key, self.value))
        return self.attention(x, key, value, **self.masks)

    def backward(self, grad_output, input_grad=True):
        grads = self.attention.backward(grad_output)
        if self.key is None:
            return grads
        self.accumulate_grads(key=grads[1], value=grads[2])
        return grads[0]


def module_masks(rng, kind, batch, heads, length, keys, float_dtype=np.float64):
    """{key_padding_mask, attn_mask} of a kind, in torch.nn.MultiheadAttention's convention (a
    boolean True masks out)."""
    padding = rng.random((batch, keys)) < 0.3
    padding[:, 0] = False
    chosen = {
        "none": {},
        "padding": {"key_padding_mask": padding},
        "float_padding": {"key_padding_mask": np.where(padding, -np.inf, rng.normal(size=(batch, keys)))},
        "bool": {"attn_mask": rng.random((length, keys)) < 0.3},
        "causal": {"attn_mask": np.triu(np.ones((length, keys), bool), 1)},
        "float": {"attn_mask": rng.normal(size=(length, keys))},
        "per_head": {"attn_mask": rng.normal(size=(batch * heads, length, keys))},
        "both": {"key_padding_mask": padding, "attn_mask": rng.random((length, keys)) < 0.3},
        "mixed": {"key_padding_mask": padding, "attn_mask": rng.normal(size=(length, keys))},
    }[kind]
    return {name: mask if mask.dtype == bool else mask.astype(float_dtype) for name, mask in chosen.items()}


MODULE_MASKS = ["none", "padding", "float_padding", "bool", "causal", "float", "per_head", "both", "mixed"]


@pytest.mark.parametrize("kind", MODULE_MASKS)
def test_multihead_attention_gradients(backend, numpy_rng, kind):
    attention = MultiheadAttention(6, 3, rng=0)
    chosen = module_masks(numpy_rng, kind, 2, 3, 4, 4)
    module = MaskedAttention(attention, **{name: backend.asarray(m) for name, m in chosen.items()})
    assert gradcheck(module, numpy_rng.normal(size=(2, 4, 6)), max_checks=30)


@pytest.mark.parametrize("bias", [True, False])
def test_multihead_cross_attention_gradients_with_dropout(backend, numpy_rng, bias):
    attention = MultiheadAttention(4, 2, dropout=0.3, bias=bias, rng=0)
    key, value = (backend.asarray(numpy_rng.normal(size=(2, 5, 4))) for _ in range(2))
    padding = backend.asarray(numpy_rng.random((2, 5)) < 0.3)
    module = MaskedAttention(attention, key, value, fixed_dropout=True, key_padding_mask=padding)
    assert gradcheck(module, numpy_rng.normal(size=(2, 3, 4)), max_checks=30)


def test_multihead_attention_sequence_first_gradients(backend, numpy_rng):
    attention = MultiheadAttention(4, 2, batch_first=False, rng=0)
    assert gradcheck(attention, numpy_rng.normal(size=(3, 2, 4)), max_checks=30)


def test_multihead_attention_in_a_residual_block_and_frozen(backend, numpy_rng):
    block = diynn.Residual(MultiheadAttention(4, 2, rng=0))
    x = numpy_rng.normal(size=(2, 3, 4))
    assert gradcheck(block, x, max_checks=30)
    attention = block.block.requires_grad_(False)
    block(backend.asarray(x))
    grad = block.backward(backend.asarray(np.ones((2, 3, 4))))
    assert tuple(grad.shape) == (2, 3, 4) and all(p.grad is None for p in attention.parameters())
    attention(backend.asarray(x))
    assert attention.backward(backend.asarray(np.ones((2, 3, 4))), input_grad=False) is None


def test_multihead_attention_layout_and_names(backend):
    attention = MultiheadAttention(8, 2, rng=0)
    assert [(name, tuple(p.shape)) for name, p in attention.named_parameters()] == [
        ("in_proj_weight", (24, 8)),
        ("in_proj_bias", (24,)),
        ("out_proj.weight", (8, 8)),
        ("out_proj.bias", (8,)),
    ]
    assert isinstance(attention.out_proj, diynn.Linear)
    assert [name for name, _ in MultiheadAttention(8, 2, bias=False).named_parameters()] == [
        "in_proj_weight",
        "out_proj.weight",
    ]
    x = backend.asarray(np.zeros((2, 3, 8), np.float32))
    assert attention(x).dtype == backend.xp.float32 and tuple(attention(x).shape) == (2, 3, 8)


def test_multihead_attention_refuses_what_does_not_fit(backend, numpy_rng):
    with pytest.raises(ValueError, match="num_heads must divide embed_dim, got 3 and 8"):
        MultiheadAttention(8, 3)
    attention = MultiheadAttention(4, 2, rng=0)
    x = backend.asarray(numpy_rng.normal(size=(2, 3, 4)).astype(np.float32))
    with pytest.raises(ValueError, match="both key and value, or neither"):
        attention(x, x)
    with pytest.raises(ValueError, match=r"expects size 4 on axis 2"):
        attention(backend.asarray(np.zeros((2, 3, 5), np.float32)))
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(2, 3\), got \(3, 2\)"):
        attention(x, key_padding_mask=backend.asarray(np.zeros((3, 2), bool)))
    with pytest.raises(ValueError, match=r"attn_mask must have shape \(3, 3\) or \(4, 3, 3\)"):
        attention(x, attn_mask=backend.asarray(np.zeros((2, 3, 3), bool)))
    with pytest.raises(TypeError, match="must be boolean or of the parameters' dtype .*float32"):
        attention(x, attn_mask=backend.asarray(np.zeros((3, 3))))
    with pytest.raises(ValueError, match="the same"):
        attention(x, x, backend.asarray(np.zeros((2, 4, 4), np.float32)))


def test_multihead_attention_masks_follow_torch_convention(backend, numpy_rng):
    """A boolean True masks a key out (the opposite of scaled_dot_product_attention's mask), and
    masking every key of a sequence gives out_proj's bias there."""
    attention = MultiheadAttention(4, 2, rng=0)
    attention.out_proj.bias.data = backend.asarray(np.arange(4, dtype=np.float32))
    x = backend.asarray(numpy_rng.normal(size=(2, 3, 4)).astype(np.float32))
    padding = np.zeros((2, 3), bool)
    padding[0] = True  # sequence 0 attends to nothing
    padding[1, 2] = True  # sequence 1 ignores its last key
    y = backend.to_numpy(attention(x, key_padding_mask=backend.asarray(padding)))
    np.testing.assert_array_equal(y[0], np.broadcast_to(np.arange(4, dtype=np.float32), (3, 4)))
    without_the_key = backend.to_numpy(attention(x[1:, ...], x[1:, :2, :], x[1:, :2, :]))
    np.testing.assert_allclose(y[1:], without_the_key, rtol=1e-5, atol=1e-6)
    grads = attention.backward(backend.asarray(np.ones((1, 3, 4), np.float32)))
    assert len(grads) == 3  # the latest forward's backward: cross-attention, (query, key, value)
    assert tuple(grads[1].shape) == (1, 2, 4)
    grad = attention.backward(backend.asarray(np.ones((2, 3, 4), np.float32)))
    assert tuple(grad.shape) == (2, 3, 4)  # self-attention: one array
    assert np.all(backend.to_numpy(grad)[0] == 0)  # sequence 0 attended to nothing


# -- PyTorch parity ------------------------------------------------------------------------------


def tensor(array, grad=False):
    return torch.tensor(np.asarray(array)).requires_grad_(grad)


@needs_torch
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kind", MASK_KINDS)
def test_attention_matches_torch(backend, numpy_rng, kind, causal):
    q, k, v = qkv(numpy_rng)
    mask = masks(numpy_rng)[kind]
    y, cache = F.scaled_dot_product_attention(
        *(backend.asarray(a) for a in (q, k, v)),
        attn_mask=None if mask is None else backend.asarray(mask),
        is_causal=causal,
    )
    grad_y = numpy_rng.normal(size=tuple(y.shape))
    grads = F.scaled_dot_product_attention_backward(cache, backend.asarray(grad_y))
    theirs = [tensor(a, grad=True) for a in (q, k, v)]
    torch_mask = None if mask is None else tensor(mask)
    if causal and mask is not None:  # torch refuses both with gradients: its causal mask, written out
        lower = torch.ones(4, 5, dtype=torch.bool).tril()
        torch_mask = torch_mask & lower if mask.dtype == bool else torch_mask.masked_fill(~lower, -math.inf)
        causal = False
    y_t = torch.nn.functional.scaled_dot_product_attention(*theirs, attn_mask=torch_mask, is_causal=causal)
    y_t.backward(tensor(grad_y))
    np.testing.assert_allclose(backend.to_numpy(y), y_t.detach().numpy(), **TOLERANCE, err_msg="y")
    for name, grad, reference in zip("qkv", grads, theirs):
        np.testing.assert_allclose(backend.to_numpy(grad), reference.grad.numpy(), **TOLERANCE, err_msg=name)


def torch_twin(ours, backend, batch_first=True):
    """torch.nn.MultiheadAttention with `ours`' weights, loaded by their names (float64)."""
    bias = ours.in_proj_bias is not None
    theirs = torch.nn.MultiheadAttention(
        ours.embed_dim, ours.num_heads, bias=bias, batch_first=batch_first, dtype=torch.float64
    )
    theirs.load_state_dict({name: tensor(backend.to_numpy(value)) for name, value in ours.state_dict().items()})
    return theirs


def compare_multihead(backend, ours, query, key, value, chosen, rng, batch_first=True):
    """Forward, input gradients and parameter gradients of `ours` (float64) against torch's."""
    ours.astype(backend.xp.float64)
    theirs = torch_twin(ours, backend, batch_first)
    cross = key is not None
    arguments = [backend.asarray(query)] + ([backend.asarray(key), backend.asarray(value)] if cross else [])
    with diynn.enable_grad():
        y = ours(*arguments, **{name: backend.asarray(mask) for name, mask in chosen.items()})
    grad_y = rng.normal(size=tuple(y.shape))
    ours.zero_grad()
    grads = ours.backward(backend.asarray(grad_y))
    query_t = tensor(query, grad=True)
    key_t, value_t = (tensor(key, grad=True), tensor(value, grad=True)) if cross else (query_t, query_t)
    y_t, _ = theirs(
        query_t, key_t, value_t, need_weights=False, **{name: tensor(mask) for name, mask in chosen.items()}
    )
    y_t.backward(tensor(grad_y))
    np.testing.assert_allclose(backend.to_numpy(y), y_t.detach().numpy(), **TOLERANCE, err_msg="y")
    references = (query_t, key_t, value_t) if cross else (query_t,)
    for name, grad, reference in zip(("query", "key", "value"), grads if cross else (grads,), references):
        np.testing.assert_allclose(backend.to_numpy(grad), reference.grad.numpy(), **TOLERANCE, err_msg=name)
    torch_parameters = dict(theirs.named_parameters())
    for name, parameter in ours.named_parameters():
        expected = torch_parameters[name].grad.numpy()
        np.testing.assert_allclose(backend.to_numpy(parameter.grad), expected, **TOLERANCE, err_msg=name)


@needs_torch
@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("kind", MODULE_MASKS)
def test_multihead_attention_matches_torch(backend, numpy_rng, kind, cross):
    batch, heads, length = 3, 4, 5
    keys = 6 if cross else length
    query = numpy_rng.normal(size=(batch, length, 8))
    key, value = (numpy_rng.normal(size=(batch, keys, 8)) for _ in range(2)) if cross else (None, None)
    chosen = module_masks(numpy_rng, kind, batch, heads, length, keys)
    compare_multihead(backend, MultiheadAttention(8, heads, rng=0), query, key, value, chosen, numpy_rng)


@needs_torch
def test_multihead_attention_sequence_first_and_without_bias_match_torch(backend, numpy_rng):
    query, key, value = (numpy_rng.normal(size=(4, 2, 6)) for _ in range(3))
    chosen = module_masks(numpy_rng, "both", 2, 3, 4, 4)
    ours = MultiheadAttention(6, 3, bias=False, batch_first=False, rng=0)
    compare_multihead(backend, ours, query, key, value, chosen, numpy_rng, batch_first=False)
    compare_multihead(backend, ours, query, None, None, chosen, numpy_rng, batch_first=False)


@st.composite
def multihead_case(draw):
    """(batch, heads, head features, L, S or None for self-attention, mask kind, bias, seed)."""
    cross = draw(st.booleans())
    length = draw(st.integers(1, 5))
    return (
        draw(st.integers(1, 3)),
        draw(st.integers(1, 4)),
        draw(st.integers(1, 3)),
        length,
        draw(st.integers(1, 6)) if cross else None,
        draw(st.sampled_from(MODULE_MASKS)),
        draw(st.booleans()),
        draw(st.integers(0, 2**31 - 1)),
    )


@pytest.mark.slow  # a float64 gradcheck or sweep of seconds; the full suite runs it
@needs_torch
@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(multihead_case())
def test_multihead_attention_matches_torch_over_shapes(case):
    batch, heads, head_features, length, keys, kind, bias, seed = case
    rng = np.random.default_rng(seed)
    embed = heads * head_features
    query = rng.normal(size=(batch, length, embed))
    key, value = (rng.normal(size=(batch, keys, embed)) for _ in range(2)) if keys else (None, None)
    chosen = module_masks(rng, kind, batch, heads, length, keys or length)
    backend = diynn.backends.get("numpy")
    ours = MultiheadAttention(embed, heads, bias=bias, rng=seed % 1000)
    compare_multihead(backend, ours, query, key, value, chosen, rng)


# -- files ---------------------------------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("bias", [True, False])
def test_weights_exchange_with_torch_through_safetensors(tmp_path, numpy_rng, bias):
    pytest.importorskip("safetensors")
    from safetensors.torch import load_file, save_file

    ours = MultiheadAttention(8, 2, bias=bias, rng=0)
    if bias:  # biases that are not 0, so that a misplaced one shows
        ours.in_proj_bias.data = numpy_rng.normal(size=24).astype(np.float32)
    theirs = torch.nn.MultiheadAttention(8, 2, bias=bias, batch_first=True, dtype=torch.float32)
    theirs.load_state_dict(load_file(diynn.save_model(ours, tmp_path / "ours.safetensors")))
    x = numpy_rng.normal(size=(3, 5, 8)).astype(np.float32)
    with torch.no_grad():
        expected, _ = theirs(*(torch.from_numpy(x),) * 3, need_weights=False)
    np.testing.assert_allclose(diynn.predict(ours, x), expected.numpy(), rtol=1e-5, atol=1e-5)

    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(8, 2, bias=bias, batch_first=True, dtype=torch.float32)
    if bias:
        torch.nn.init.normal_(theirs.in_proj_bias)
        torch.nn.init.normal_(theirs.out_proj.bias)
    save_file(theirs.state_dict(), tmp_path / "theirs.safetensors")
    ours = diynn.load_weights(MultiheadAttention(8, 2, bias=bias, rng=1), tmp_path / "theirs.safetensors")
    with torch.no_grad():
        expected, _ = theirs(*(torch.from_numpy(x),) * 3, need_weights=False)
    np.testing.assert_allclose(diynn.predict(ours, x), expected.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_save_and_load_with_the_config(tmp_path, numpy_rng, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    model = diynn.Sequential(
        MultiheadAttention(6, 3, dropout=0.1, rng=0), MultiheadAttention(6, 2, bias=False, batch_first=False, rng=1)
    )
    loaded = diynn.load_model(diynn.save_model(model, tmp_path / f"model{suffix}"))
    first, second = loaded.layers
    assert (first.embed_dim, first.num_heads, first.dropout, first.batch_first) == (6, 3, 0.1, True)
    assert (second.num_heads, second.in_proj_bias, second.batch_first) == (2, None, False)
    x = numpy_rng.normal(size=(2, 4, 6)).astype(np.float32)
    np.testing.assert_array_equal(diynn.predict(loaded, x), diynn.predict(model, x))
    assert MultiheadAttention.stored_size(first.config()) == sum(p.data.size for p in first.parameters())
    assert MultiheadAttention.stored_size(second.config()) == sum(p.data.size for p in second.parameters())
