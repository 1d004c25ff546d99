"""diynn.Monitor (diynn/inspection/monitor.py): each verdict on the network that has the problem and
none on a healthy one, the statistics in its history, hooks only on sampled steps, the figure."""

import math

import numpy as np
import pytest

import diynn


def blobs(samples=256, features=8, seed=0):
    """Two well separated Gaussian blobs: (samples, features) float32, labels 0 / 1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, samples)
    x = rng.normal(size=(samples, features)) + (2 * y[:, None] - 1) * 1.5
    return x.astype(np.float32), y


def monitored_fit(model, optimizer, monitor, epochs=2, loss=None, data=None):
    x, y = blobs() if data is None else data
    trainer = diynn.Trainer(model, loss or diynn.CrossEntropyLoss(), optimizer, metric=None)
    trainer.fit(x, y, epochs=epochs, batch_size=32, progress=False, callbacks=[monitor])
    return monitor


def kinds(monitor):
    return {(verdict.kind, verdict.path) for verdict in monitor.verdicts}


def test_a_relu_layer_behind_a_large_negative_bias_is_found_dead(backend):
    model = diynn.mlp([8, 32, 32, 2], rng=0)
    model[2].bias.data = model[2].bias.data - 10.0  # every pre-activation of ReLU (3) is negative
    monitor = monitored_fit(model, diynn.SGD(model.parameters(), lr=0.1), diynn.Monitor(every=2, window=5))
    dead = [verdict for verdict in monitor.verdicts if verdict.kind == "dead"]
    assert [verdict.path for verdict in dead] == ["3"]
    assert dead[0].message == "(3) ReLU: 100% of units never fired in the last 10 steps"
    assert dead[0].value == 1.0
    # nothing flows back through a dead layer: the weights before it stop
    assert ("updates too small", "0.weight") in kinds(monitor)


def test_the_units_of_a_convolutional_relu_are_its_channels():
    model = diynn.cnn(channels=(4, 8), hidden=16, rng=0)  # (2) BatchNorm2d then (3) ReLU on (N, 4, 14, 14)
    model[2].bias.data = np.array([-100.0, -100.0, -100.0, 0.0], dtype=np.float32)  # 3 of 4 channels die
    x = np.random.default_rng(0).random((64, 1, 28, 28)).astype(np.float32)
    y = np.arange(64) % 10
    monitor = monitored_fit(
        model, diynn.SGD(model.parameters(), lr=0.01), diynn.Monitor(every=1, window=3), 1, data=(x, y)
    )
    assert [str(verdict) for verdict in monitor.verdicts if verdict.kind == "dead"] == [
        "(3) ReLU: 75% of units never fired in the last 2 steps"  # a run of 2 steps, judged at its end
    ]
    assert set(monitor.history[-1]["parameters"]) >= {"0.weight", "2.weight", "2.bias", "12.weight"}


def test_a_sigmoid_network_with_huge_weights_is_found_saturated(capsys):
    model = diynn.mlp([8, 64, 64, 2], activation="sigmoid", rng=0)
    for layer in (model[0], model[2]):
        layer.weight.data = layer.weight.data * 30.0
    # a run shorter than the window: judged when training ends, over what was sampled
    monitor = monitored_fit(model, diynn.SGD(model.parameters(), lr=0.1), diynn.Monitor(every=1, window=100), 1)
    assert {("saturated", "1"), ("saturated", "3")} <= kinds(monitor)
    message = next(str(v) for v in monitor.verdicts if v.path == "1")
    assert message.startswith("(1) Sigmoid: ") and message.endswith("% of outputs saturated")
    assert int(message.split(": ")[1].split("%")[0]) > 50
    assert f"Monitor, step 7: {message}" in capsys.readouterr().err  # printed once, when found


def test_a_saturated_output_layer_is_a_confident_prediction_not_a_verdict():
    model = diynn.Sequential(diynn.Linear(8, 1, rng=0), diynn.Sigmoid())
    model[0].weight.data = model[0].weight.data * 30.0
    x, y = blobs()
    monitor = monitored_fit(
        model,
        diynn.SGD(model.parameters(), lr=0.1),
        diynn.Monitor(every=1, window=4),
        loss=diynn.BCELoss(),
        data=(x, y[:, None].astype(np.float32)),
    )
    assert monitor.history[-1]["layers"]["1"]["saturated"] > 0.5
    assert not any(verdict.kind == "saturated" for verdict in monitor.verdicts)


def test_a_learning_rate_of_10_makes_updates_too_large():
    model = diynn.mlp([8, 32, 32, 2], rng=0)
    monitor = monitored_fit(model, diynn.SGD(model.parameters(), lr=10.0), diynn.Monitor(every=2, window=5))
    large = [verdict for verdict in monitor.verdicts if verdict.kind == "updates too large"]
    assert large and all(verdict.value >= -1 for verdict in large)
    assert large[0].message.startswith(f"({large[0].path.split('.')[0]}) Linear weight: updates are 1e")
    assert large[0].message.endswith(" of the weights: learning rate too high?")


def test_a_healthy_kaiming_mlp_gets_no_verdict():
    model = diynn.mlp([8, 32, 32, 2], rng=0)
    monitor = monitored_fit(model, diynn.SGD(model.parameters(), lr=0.1), diynn.Monitor(every=2, window=5), 3)
    assert monitor.verdicts == []
    assert len(monitor.history) == 12  # 8 steps an epoch, every second one sampled


def test_history_holds_the_statistics_of_each_sampled_step(backend):
    model = diynn.mlp([8, 16, 2], rng=0)
    lr = 0.05
    monitor = monitored_fit(model, diynn.SGD(model.parameters(), lr=lr), diynn.Monitor(every=3, window=2))
    assert [entry["step"] for entry in monitor.history] == [0, 3, 6, 9, 12, 15]
    assert monitor.step == 16
    entry = monitor.history[-1]
    assert set(entry["layers"]) == {"0", "1", "2"}
    assert entry["layers"]["1"]["layer"] == "ReLU"
    assert {"mean", "std", "grad_std", "dead"} <= set(entry["layers"]["1"])
    assert 0 <= entry["layers"]["1"]["dead"] <= 1
    assert entry["layers"]["1"]["mean"] >= 0 and entry["layers"]["0"]["std"] > 0
    assert set(entry["parameters"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    for stats in entry["parameters"].values():
        # plain SGD: the change across the step is lr * the gradient
        assert stats["update_norm"] == pytest.approx(lr * stats["grad_norm"], rel=1e-3)
        assert stats["log10_update_ratio"] == pytest.approx(math.log10(stats["update_norm"] / stats["norm"]))


def test_hooks_are_registered_on_sampled_steps_only():
    model = diynn.mlp([8, 16, 2], rng=0)
    counted = []

    class CountHooks:  # after the monitor's on_step_begin: what this step's forward will run with
        def on_step_begin(self, trainer):
            counted.append(sum(len(module._forward_hooks or {}) for module in model.modules()))

    x, y = blobs(64)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.SGD(model.parameters(), lr=0.1))
    trainer.fit(x, y, epochs=1, batch_size=8, progress=False, callbacks=[diynn.Monitor(every=4), CountHooks()])
    assert counted == [3, 0, 0, 0, 3, 0, 0, 0]  # Linear, ReLU, Linear hooked at steps 0 and 4
    assert all(not module._forward_hooks and not module._backward_hooks for module in model.modules())


@pytest.mark.parametrize("where, error", [("forward", ValueError("a bad batch")), ("backward", KeyboardInterrupt())])
def test_no_hook_stays_on_the_model_when_a_sampled_step_raises(where, error):
    runs, hooked = {"forward": 0, "backward": 0}, []

    def count(method):  # raises at the fifth step's forward or backward: step 4, sampled with every=4
        runs[method] += 1
        if method == where and runs[method] == 5:
            hooked.append(sum(len(module._forward_hooks or {}) for module in model.modules()))
            raise error

    class Fails(diynn.ReLU):
        def forward(self, x):
            count("forward")
            return super().forward(x)

        def backward(self, grad_output, input_grad=True):
            count("backward")
            return super().backward(grad_output, input_grad)

    model = diynn.Sequential(diynn.Linear(8, 16, rng=0), Fails(), diynn.Linear(16, 2, rng=1))
    x, y = blobs(64)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.SGD(model.parameters(), lr=0.1))
    with pytest.raises(type(error)):
        trainer.fit(x, y, epochs=1, batch_size=8, progress=False, callbacks=[diynn.Monitor(every=4)])
    assert hooked == [3]  # the step that raised ran with the monitor's hooks
    assert all(not module._forward_hooks and not module._backward_hooks for module in model.modules())


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="low < high"):
        diynn.Monitor(updates=(-1, -5))
    with pytest.raises(ValueError, match="every"):
        diynn.Monitor(every=0)
    with pytest.raises(RuntimeError, match="no step sampled"):
        diynn.Monitor().figure("never.png")


@pytest.mark.slow  # a float64 gradcheck or sweep of seconds; the full suite runs it
def test_the_figure_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    model = diynn.mlp([8, 16, 16, 2], rng=0)
    monitor = monitored_fit(model, diynn.Adam(model.parameters(), lr=1e-2), diynn.Monitor(every=2, verbose=False))
    written = monitor.figure(tmp_path / "monitor.png")
    assert written == tmp_path / "monitor.png"
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="not supported"):  # nothing half-written is left behind
        monitor.figure(tmp_path / "monitor.unknown")
    assert [path.name for path in tmp_path.iterdir()] == ["monitor.png"]
