"""diynn.summary (diynn/inspection/model_summary.py): parameter totals against PyTorch's count of
the same models, frozen parameters, the bytes the modules really hold after a training forward,
output shapes against a layer-by-layer forward, the FLOPs convention, and the model left as it was."""

import numpy as np
import pytest

import diynn

BUILDERS = {
    "mlp": (lambda: diynn.mlp([784, 32, 16, 10], dropout=0.2, rng=0), (784,)),
    "cnn": (lambda: diynn.cnn(channels=(4, 8), hidden=16, rng=0), (1, 28, 28)),
    "conv_autoencoder": (lambda: diynn.conv_autoencoder(8, channels=(4, 8), noise_std=0.1, rng=0), (1, 28, 28)),
    "resnet": (lambda: diynn.resnet(widths=(4, 8), blocks=2, rng=0), (1, 12, 12)),
    "unet": (lambda: diynn.unet(channels=(4, 6, 8), rng=0), (1, 8, 8)),
    "vit": (lambda: diynn.vit(8, 4, embed_dim=8, depth=2, num_heads=2, pooling="class", rng=0), (1, 8, 8)),
}


@pytest.mark.parametrize("name", BUILDERS)
def test_totals_equal_pytorchs_count_of_the_same_model(name):
    torch = pytest.importorskip("torch")
    from torch_references import torch_copy

    build, shape = BUILDERS[name]
    model = build()
    theirs = torch_copy(model)
    # the same model: every parameter and buffer has its counterpart, of its shape
    theirs.load_state_dict({key: torch.from_numpy(np.asarray(value)) for key, value in model.state_dict().items()})
    found = diynn.summary(model, shape)
    assert found.total_parameters == sum(p.numel() for p in theirs.parameters())
    assert found.trainable_parameters == found.total_parameters
    assert found.total_parameters == sum(row.parameters for row in found.rows)


def test_frozen_parameters_are_not_trainable():
    model = diynn.cnn(channels=(4, 8), hidden=16, rng=0)
    model[0].requires_grad_(False)
    model[9].bias.requires_grad = False
    found = diynn.summary(model, (1, 28, 28))
    rows = {row.path: row for row in found.rows}
    assert rows["0"].trainable == 0 and rows["0"].parameters == 4 * 9
    assert rows["9"].trainable == rows["9"].parameters - 16
    assert found.trainable_parameters == found.total_parameters - 4 * 9 - 16
    lines = str(found).splitlines()
    assert "frozen" in next(line for line in lines if line.strip().startswith("0 Conv2d"))


def held_by(module, parameters):
    """What `module`'s pending caches hold, computed apart from the library: the NumPy arrays found
    in them, each once, but not the parameters or buffers (nor views of them)."""
    arrays, stack = {}, list(module.__dict__.get("_pending", []))
    while stack:
        item = stack.pop()
        if isinstance(item, (np.ndarray, np.generic)):
            arrays[id(item)] = item
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    kept = [a for a in arrays.values() if not any(np.may_share_memory(a, p) for p in parameters)]
    return sum(a.nbytes for a in kept)


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize("batch_size", [1, 3])
def test_bytes_for_backward_are_what_the_modules_hold(name, batch_size):
    build, shape = BUILDERS[name]
    model = build()
    found = diynn.summary(model, shape, batch_size=batch_size)
    model.train()
    model(np.zeros((batch_size, *shape), dtype=np.float32))
    parameters = [p.data for p in model.parameters()] + [getattr(m, b) for m in model.modules() for b in m._buffers]
    expected, total, seen = {}, 0, set()
    for path, module in named_modules(model):
        if id(module) not in seen:
            seen.add(id(module))
            expected[path] = held_by(module, parameters)
            total += expected[path]
    model.clear_pending()
    assert {row.path: row.backward_bytes for row in found.rows} == expected
    assert found.backward_bytes == total > 0


def named_modules(module, path=""):
    yield path, module
    for name, child in module._modules.items():
        yield from named_modules(child, f"{path}.{name}" if path else name)


def forward_shapes(module, x, path=""):
    """{path: output shape} of every module, by running each container's parts one by one."""
    kind = type(module).__name__
    shapes = {}
    if kind == "Sequential":
        y = x
        for index, layer in enumerate(module.layers):
            found = forward_shapes(layer, y, f"{path}.{index}" if path else str(index))
            shapes.update(found)
            y = layer(y)
    else:
        parts = []  # (name, part, its input)
        if kind == "Residual":
            parts = [("block", module.block, x), ("shortcut", module.shortcut, x)]
        elif kind == "Concat":
            parts = [(str(i), branch, x) for i, branch in enumerate(module.branches)]
        elif kind == "Autoencoder":
            parts = [("encoder", module.encoder, x), ("decoder", module.decoder, module.encoder(x))]
        elif kind == "MultiheadAttention":  # out_proj takes the heads side by side, (N L, E)
            shapes[f"{path}.out_proj"] = (x.shape[0] * x.shape[1], module.embed_dim)
        for name, part, given in parts:
            shapes.update(forward_shapes(part, given, f"{path}.{name}" if path else name))
    shapes[path] = tuple(module(x).shape)
    return shapes


@pytest.mark.parametrize("name", BUILDERS)
def test_output_shapes_are_those_of_the_real_forward(name):
    build, shape = BUILDERS[name]
    model = build()
    found = diynn.summary(model, shape, batch_size=2)
    with diynn.no_grad():
        expected = forward_shapes(model.eval(), np.zeros((2, *shape), dtype=np.float32))
    assert {row.path: row.output_shape for row in found.rows} == expected
    assert found.input_shape == (2, *shape)


def test_flops_follow_the_convention():
    model = diynn.Sequential(
        diynn.Conv2d(2, 4, 3, padding=2, dilation=2, groups=2, rng=0),  # (4, 6, 6): 2 in-channels x 9 taps / 2
        diynn.ReLU(),
        diynn.MaxPool2d(2),  # (4, 3, 3), 4 reads each
        diynn.ConvTranspose2d(4, 3, 4, stride=2, padding=1, rng=0),  # (3, 6, 6) from 36 inputs
        diynn.Flatten(),
        diynn.Linear(108, 5, rng=0),
    )
    found = diynn.summary(model, (2, 6, 6), batch_size=4)
    flops = {row.path: row.flops for row in found.rows}
    assert flops == {
        "": 0,
        "0": 2 * 144 * 9 + 144,
        "1": 144,
        "2": 36 * 4,
        "3": 2 * 36 * 3 * 16 + 108,
        "4": 0,
        "5": 2 * 5 * 108 + 5,
    }
    assert found.flops == sum(flops.values()) and found.unknown_cost == ()


def test_a_token_model_is_measured_on_integer_ids_and_the_transformer_layers_follow_the_convention():
    model = diynn.Sequential(
        diynn.Embedding(10, 8, rng=0),
        diynn.LayerNorm(8),
        diynn.MultiheadAttention(8, 2, rng=1),
        diynn.GELU(),
        diynn.SiLU(),
        diynn.TokenPool(),
        diynn.Linear(8, 3, rng=2),
    )
    found = diynn.summary(model, (5,), batch_size=2)  # 5 tokens of 8 features, 2 heads
    assert (found.input_dtype, found.dtype) == ("int64", "float32")
    assert "Input: (2, 5) int64, parameters float32" in str(found)
    attention = 2 * 5 * 8 * 24 + 24 * 5 + 2 * 2 * 5 * 5 * 8 + 5 * 2 * 5  # projections, q k^T and a v, softmax
    flops = {row.path: row.flops for row in found.rows}
    assert flops == {
        "": 0,
        "0": 0,
        "1": 40,
        "2": attention,
        "2.out_proj": 2 * 5 * 8 * 8 + 40,
        "3": 40,
        "4": 40,
        "5": 40,
        "6": 2 * 3 * 8 + 3,
    }
    assert diynn.summary(model, (5,), input_dtype="int32").input_dtype == "int32"
    assert diynn.summary(diynn.vit(8, 4, embed_dim=8, depth=1, num_heads=2, rng=0), (1, 8, 8)).unknown_cost == ()


class Doubler(diynn.Module):
    def forward(self, x):
        return 2 * x

    def backward(self, grad_output, input_grad=True):
        return 2 * grad_output


def test_an_unknown_layer_has_an_unknown_cost_and_a_shared_one_counts_once():
    shared = diynn.Linear(3, 3, rng=0)
    model = diynn.Sequential(diynn.Residual(shared, diynn.Sequential(shared, Doubler())), diynn.Tanh())
    found = diynn.summary(model, (3,), batch_size=2)
    rows = {row.path: row for row in found.rows}
    assert found.total_parameters == 12 and found.unknown_cost == ("Doubler",)
    assert rows["0.shortcut.1"].flops is None and rows["0.block"].calls == 2
    assert rows["0.shortcut.0"].shared_with == "0.block" and rows["0.shortcut.0"].parameters == 0
    assert found.flops == 2 * (2 * 9 + 3) + 3 + 3
    text = str(found)
    assert "(shared with 0.block)" in text and "unknown cost, left out: Doubler" in text


def test_the_model_is_left_as_it_was():
    model = diynn.cnn(channels=(4, 8), hidden=16, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    model(x)  # a forward waiting for its backward
    model[4].eval()
    state = {key: value.copy() for key, value in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    stream = model[11].rng.state_dict()
    found = diynn.summary(model, (1, 28, 28), batch_size=5, dtype="float64")
    assert found.dtype == "float64" and found.input_shape == (5, 1, 28, 28)
    assert [m.training for m in model.modules()] == modes
    assert model[11].rng.state_dict() == stream
    for key, value in model.state_dict().items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, state[key], err_msg=key)
    assert [len(m.__dict__.get("_pending", [])) for m in model.modules()][1:4] == [1, 1, 1]
    grad = model.backward(np.ones((2, 10), dtype=np.float32))  # the pending forward is still there
    assert grad.shape == x.shape and all(p.grad is not None for p in model.parameters())
    assert "forward" not in model[0].__dict__


def test_summary_on_every_backend(backend):
    model = diynn.resnet(widths=(4,), blocks=1, rng=0)
    found = diynn.summary(model, (1, 8, 8), batch_size=2)
    assert found.total_parameters == sum(int(np.prod(p.shape)) for p in model.parameters())
    assert found.backward_bytes > 0 and found.flops > 0
    rows = {row.path: row for row in found.rows}
    assert rows["3.block.0"].output_shape == (2, 4, 8, 8)


def test_the_table_shows_the_tree():
    text = str(diynn.summary(diynn.resnet(widths=(4, 8), rng=0), (1, 12, 12)))
    lines = text.splitlines()
    assert lines[0].split() == ["Layer", "Output", "shape", "Parameters", "Trainable", "Kept", "for", "backward"] + [
        "FLOPs/sample"
    ]
    assert any(line.startswith("      3.block.0 Conv2d") and "(1, 4, 12, 12)" in line for line in lines)
    assert any(line.startswith("    7.shortcut Sequential") for line in lines)
    assert "Parameters: 2,870 (2,870 trainable, 0 frozen)" in text


def test_arguments_are_checked():
    with pytest.raises(TypeError, match="needs a diynn Module"):
        diynn.summary(lambda x: x, (3,))
    with pytest.raises(ValueError, match="input_shape"):
        diynn.summary(diynn.Linear(3, 2), (0,))
    with pytest.raises(ValueError, match="batch_size"):
        diynn.summary(diynn.Linear(3, 2), 3, batch_size=0)


def test_the_default_batch_is_one_or_two_where_a_batch_norm_needs_two():
    plain = diynn.Sequential(diynn.Linear(4, 8), diynn.ReLU(), diynn.Linear(8, 2))
    normed = diynn.Sequential(diynn.Linear(4, 8), diynn.BatchNorm1d(8), diynn.ReLU(), diynn.Linear(8, 2))
    assert diynn.summary(plain, 4).input_shape == (1, 4)
    found = diynn.summary(normed, 4)
    assert found.input_shape == (2, 4)
    assert found.backward_bytes == diynn.summary(normed, 4, batch_size=2).backward_bytes
    with pytest.raises(ValueError, match="more than one value per channel"):
        diynn.summary(normed, 4, batch_size=1)  # asked for: the batch norm's own error
