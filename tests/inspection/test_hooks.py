"""Forward and backward hooks (Module.register_forward_hook / register_backward_hook): what they see,
what a returned value replaces, removal, order, and that containers run their children's."""

import numpy as np
import pytest

import diynn
from diynn import Concat, Identity, Linear, MultiheadAttention, ReLU, Residual, Sequential
from diynn.training.checkpoint import generators_in


def mlp(rng=0):
    return Sequential(Linear(4, 8, rng=rng), ReLU(), Linear(8, 3, rng=rng + 1))


def batch(backend, numpy_rng, shape=(5, 4)):
    return backend.asarray(numpy_rng.normal(size=shape), dtype=backend.xp.float32)


def test_hooks_see_each_modules_input_output_and_gradients(backend, numpy_rng):
    model, x = mlp(), batch(backend, numpy_rng)
    grad_y = batch(backend, numpy_rng, (5, 3))
    expected_y = model(x)
    expected_dx = model.run_backward(grad_y)
    expected_grads = [backend.to_numpy(p.grad) for p in model.parameters()]
    model.zero_grad()

    seen_forward, seen_backward = [], []
    for layer in model:
        layer.register_forward_hook(lambda m, inputs, output: seen_forward.append((m, inputs, output)))
        layer.register_backward_hook(lambda m, grad_in, grad_out: seen_backward.append((m, grad_in, grad_out)))
    y = model(x)
    dx = model.run_backward(grad_y)

    assert [m for m, _, _ in seen_forward] == list(model)
    assert all(isinstance(inputs, tuple) and len(inputs) == 1 for _, inputs, _ in seen_forward)
    assert seen_forward[0][1][0] is x
    for (_, _, output), (_, next_inputs, _) in zip(seen_forward, seen_forward[1:]):
        assert next_inputs[0] is output  # each layer's output is the next one's input
    assert seen_forward[-1][2] is y
    np.testing.assert_array_equal(backend.to_numpy(y), backend.to_numpy(expected_y))

    assert [m for m, _, _ in seen_backward] == list(reversed(list(model)))
    assert seen_backward[0][2][0] is grad_y
    for (_, grad_in, _), (_, _, next_grad_out) in zip(seen_backward, seen_backward[1:]):
        assert next_grad_out[0] is grad_in[0]  # what a layer returns is the gradient of the one before
    assert seen_backward[-1][1][0] is dx
    np.testing.assert_array_equal(backend.to_numpy(dx), backend.to_numpy(expected_dx))
    for parameter, grad in zip(model.parameters(), expected_grads):
        np.testing.assert_array_equal(backend.to_numpy(parameter.grad), grad)


def test_a_returned_value_replaces_the_output_or_the_input_gradient(backend, numpy_rng):
    model, x = mlp(), batch(backend, numpy_rng)
    hidden = model[1](model[0](x))
    model.clear_pending()
    model[1].register_forward_hook(lambda m, inputs, output: 2 * output)
    np.testing.assert_allclose(backend.to_numpy(model(x)), backend.to_numpy(model[2](2 * hidden)), rtol=1e-6, atol=1e-6)
    model.clear_pending()

    xp = backend.xp
    model[1].register_backward_hook(lambda m, grad_in, grad_out: (xp.zeros_like(grad_in[0]),))
    model(x)
    model.run_backward(batch(backend, numpy_rng, (5, 3)))
    assert not np.any(backend.to_numpy(model[0].weight.grad))  # nothing reaches the first layer
    assert np.any(backend.to_numpy(model[2].weight.grad))

    last, grad_y = Linear(8, 3, rng=1), batch(backend, numpy_rng, (5, 3))
    last(hidden)
    plain = last.run_backward(grad_y)
    last.register_backward_hook(lambda m, grad_in, grad_out: 3 * grad_in[0])  # a bare array is taken too
    last(hidden)
    np.testing.assert_allclose(backend.to_numpy(last.run_backward(grad_y)), 3 * backend.to_numpy(plain), rtol=1e-6)
    last.register_backward_hook(lambda m, grad_in, grad_out: (grad_in[0], grad_in[0]))
    last(hidden)
    with pytest.raises(ValueError, match="returned 2 input gradients"):
        last.run_backward(grad_y)


def test_removed_hooks_are_not_called_and_hooks_run_in_registration_order(numpy_rng):
    model, x = mlp(), numpy_rng.normal(size=(5, 4)).astype(np.float32)
    calls = []
    first = model[0].register_forward_hook(lambda m, i, o: calls.append("first"))
    model[0].register_forward_hook(lambda m, i, o: calls.append("second") or o + 1)
    model[0].register_forward_hook(lambda m, i, o: calls.append(("third sees", float(o[0, 0]))))
    model.eval()
    y0 = model[0].forward(x)
    model(x)
    assert calls == ["first", "second", ("third sees", pytest.approx(float(y0[0, 0]) + 1))]
    first.remove()
    first.remove()  # a second remove does nothing
    calls.clear()
    model(x)
    assert calls[0] == "second" and "first" not in calls

    def removes_itself(module, inputs, output):
        calls.append("once")
        handle.remove()

    handle = model[2].register_backward_hook(removes_itself)
    model.train()
    for _ in range(2):
        model(x)
        model.run_backward(np.ones((5, 3), np.float32))
    assert calls.count("once") == 1
    with pytest.raises(TypeError, match="a hook must be callable"):
        model.register_forward_hook("not a function")


def nested():
    return Sequential(
        Linear(4, 6, rng=0),
        Residual(Sequential(Linear(6, 6, rng=1), ReLU()), Identity()),
        Concat(Linear(6, 2, rng=2), Linear(6, 3, rng=3)),
    )


def test_hooks_fire_for_every_module_of_nested_containers(backend, numpy_rng):
    model, x = nested(), batch(backend, numpy_rng)
    forward, backward = [], []
    for name, module in model.named_modules():
        module.register_forward_hook(lambda m, i, o, name=name: forward.append(name))
        module.register_backward_hook(lambda m, gi, go, name=name: backward.append(name))
    y = model(x)
    model.run_backward(backend.xp.ones_like(y))
    # children finish before their parents; a fork's branches run backward in reverse order
    assert forward == ["0", "1.block.0", "1.block.1", "1.block", "1.shortcut", "1", "2.0", "2.1", "2", ""]
    assert backward == ["2.1", "2.0", "2", "1.shortcut", "1.block.1", "1.block.0", "1.block", "1", "0", ""]


def test_a_shared_module_runs_its_hooks_at_each_call(numpy_rng):
    shared = Linear(4, 4, rng=0)
    model = Sequential(shared, ReLU(), shared)
    assert [name for name, _ in model.named_modules()] == ["", "0", "1"]  # once, under its first name
    inputs, grads = [], []
    shared.register_forward_hook(lambda m, i, o: inputs.append(i[0]))
    shared.register_backward_hook(lambda m, gi, go: grads.append(go[0]))
    x = numpy_rng.normal(size=(3, 4)).astype(np.float32)
    y = model(x)
    model.run_backward(np.ones_like(y))
    assert len(inputs) == 2 and inputs[0] is x and inputs[1] is not x
    assert len(grads) == 2 and np.array_equal(grads[0], np.ones_like(y))


def test_hooks_are_not_saved_and_do_not_change_the_state(tmp_path, numpy_rng):
    model = mlp()
    before = model.state_dict()
    model.register_forward_hook(lambda m, i, o: o)
    model[0].register_backward_hook(lambda m, gi, go: None)
    assert model.state_dict().keys() == before.keys()
    diynn.save_model(model, tmp_path / "model.npz")
    loaded = diynn.load_model(tmp_path / "model.npz")
    assert all(not module._forward_hooks and not module._backward_hooks for module in loaded.modules())
    captured = diynn.get_backend().rng(0)
    model[1].register_forward_hook(lambda m, i, o: captured)
    assert generators_in(model, "model") == {}  # a checkpoint keeps no hook's random stream


def test_trainer_and_autoencoder_run_the_hooks(numpy_rng):
    x = numpy_rng.normal(size=(16, 4)).astype(np.float32)
    model = mlp()
    calls = {"model": 0, "layer": 0, "backward": 0}
    model.register_forward_hook(lambda m, i, o: calls.__setitem__("model", calls["model"] + 1))
    model[2].register_forward_hook(lambda m, i, o: calls.__setitem__("layer", calls["layer"] + 1))
    model[0].register_backward_hook(lambda m, gi, go: calls.__setitem__("backward", calls["backward"] + 1))
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.SGD(model.parameters(), lr=0.1))
    trainer.fit(x, numpy_rng.integers(0, 3, size=16), epochs=1, batch_size=8, progress=False)
    assert calls == {"model": 2, "layer": 2, "backward": 2}
    encoder, decoder = Sequential(Linear(4, 2, rng=0)), Sequential(Linear(2, 4, rng=1))
    autoencoder, seen = diynn.Autoencoder(encoder, decoder), []
    encoder[0].register_forward_hook(lambda m, i, o: seen.append("encoder"))
    decoder.register_backward_hook(lambda m, gi, go: seen.append("decoder"))
    autoencoder.run_backward(np.ones_like(autoencoder(x)))
    assert seen == ["encoder", "decoder"]


def recorder(calls, name):
    """A forward and a backward hook that append (kind, name, input shapes, output shapes) to `calls`."""

    def shapes(arrays):
        return tuple(None if a is None else tuple(a.shape) for a in arrays)

    def forward(module, inputs, output):
        calls.append(("forward", name, shapes(inputs), tuple(output.shape)))

    def backward(module, grad_input, grad_output):
        calls.append(("backward", name, shapes(grad_input), shapes(grad_output)))

    return forward, backward


def test_hooks_fire_on_multihead_attention_and_its_out_proj(backend, numpy_rng):
    attention, calls = MultiheadAttention(8, 2, rng=0), []
    for name, module in (("attention", attention), ("out_proj", attention.out_proj)):
        forward, backward = recorder(calls, name)
        module.register_forward_hook(forward)
        module.register_backward_hook(backward)
    x = batch(backend, numpy_rng, (3, 5, 8))
    y = attention(x)
    attention.run_backward(backend.xp.ones_like(y))
    tokens = (3, 5, 8)
    assert calls == [
        ("forward", "out_proj", ((15, 8),), (15, 8)),  # the heads side by side, (N L, E)
        ("forward", "attention", (tokens,), tokens),
        ("backward", "out_proj", ((15, 8),), ((15, 8),)),
        ("backward", "attention", (tokens,), (tokens,)),
    ]

    # cross-attention: the hooks see the three inputs (not the keyword masks) and their three gradients
    calls.clear()
    key = batch(backend, numpy_rng, (3, 4, 8))
    padding = backend.asarray(np.zeros((3, 4), dtype=bool))
    y = attention(x, key, key, key_padding_mask=padding)
    plain = attention.run_backward(backend.xp.ones_like(y))
    assert calls[1] == ("forward", "attention", (tokens, (3, 4, 8), (3, 4, 8)), tokens)
    assert calls[3] == ("backward", "attention", (tokens, (3, 4, 8), (3, 4, 8)), (tokens,))
    attention.register_backward_hook(lambda m, grad_in, grad_out: tuple(2 * g for g in grad_in))
    attention(x, key, key, key_padding_mask=padding)
    doubled = attention.run_backward(backend.xp.ones_like(y))
    for got, expected in zip(doubled, plain):
        np.testing.assert_allclose(backend.to_numpy(got), 2 * backend.to_numpy(expected), rtol=1e-6)
    attention.register_backward_hook(lambda m, grad_in, grad_out: grad_in[0])
    attention(x, key, key)
    with pytest.raises(ValueError, match="return a tuple of 3 arrays"):
        attention.run_backward(backend.xp.ones_like(y))


def test_hooks_fire_on_the_attention_of_an_encoder_block(backend, numpy_rng):
    block, calls = diynn.encoder_block(8, 2, mlp_ratio=2, rng=0), []
    attention = block[0].block[1]
    assert isinstance(attention, MultiheadAttention)
    for name, module in block.named_modules():
        forward, backward = recorder(calls, name)
        module.register_forward_hook(forward)
        module.register_backward_hook(backward)
    y = block(batch(backend, numpy_rng, (3, 5, 8)))
    block.run_backward(backend.xp.ones_like(y))
    forwards = [name for kind, name, _, _ in calls if kind == "forward"]
    backwards = [name for kind, name, _, _ in calls if kind == "backward"]
    assert forwards[:4] == ["0.block.0", "0.block.1.out_proj", "0.block.1", "0.block"]
    assert backwards[-6:] == ["0.block.1.out_proj", "0.block.1", "0.block.0", "0.block", "0", ""]
    assert forwards.count("0.block.1") == backwards.count("0.block.1") == 1
