"""`Monitor`: a `Trainer.fit` callback that looks inside the network while it trains, every `every`
steps, and says in a sentence when a layer is in trouble (dead ReLUs, saturated tanh / sigmoid
units, updates far too large or too small for the weights).

What a sampled step costs, and why unsampled steps cost nothing: the monitor registers its forward
and backward hooks at the start of a sampled step and removes them at its end, so every other step
runs the layers without hooks (the per-step callbacks return after one modulo). On a sampled step
each watched layer adds a handful of reductions over its output and its output's gradient (mean,
std, which units fired, the saturated share, a strided subset of at most `histogram_size` values
for the figure); before the optimiser's step the trained parameters are copied once (their change
across the step is the update), after it one subtraction and norm each; every number then comes to
the host in one transfer. That is about a forward's worth of elementwise work and one copy of the
weights, once in `every` steps. Measured by benchmarks/monitor_cost.py (an epoch of the default CNN,
Adam, batch 128, 150 steps, with and without a Monitor at its default one step in 50, fresh
processes taking turns; results/inspection/monitor-cost.json, AMD EPYC, 2 cores): the median of 5
paired rounds' time ratios with / without was 0.95 at 1 thread and 0.93 at 2, with rounds from 0.73
to 1.07: the cost is below what the run-to-run noise lets the benchmark resolve.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections import deque
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

from .. import arguments
from ..backends import backend_of
from ..io.files import atomic_write
from ..layers import LeakyReLU, ReLU, Sigmoid, Tanh
from ..module import Module

ACTIVATIONS = (ReLU, LeakyReLU, Tanh, Sigmoid)  # watched besides the layers with parameters
# Saturated: |tanh(x)| > 0.99 (|x| > 2.65) or sigmoid(x) outside [0.01, 0.99] (|x| > 4.6), where the
# local derivative is below 2% of its largest value (tanh: 1 - y^2 < 0.02; sigmoid: y(1 - y) < 0.01 of 0.25).
SATURATED = 0.99
TYPICAL_UPDATES = -3.0  # log10(|update| / |weight|) of a healthy run: about 1e-3 (drawn in the figure)


@dataclass(frozen=True)
class Verdict:
    """A problem `Monitor` found: one per layer (or parameter) and kind.

    Attributes:
        step: the training step it was found at (the monitor's count, from 0).
        path: the layer's dotted place ("3", "0.block.1"), or for updates the parameter's ("0.weight").
        kind: "dead" (ReLU units that never fired), "saturated" (tanh / sigmoid outputs),
            "updates too large" or "updates too small".
        value: what crossed the threshold, over the window: the share (0 to 1) of units or outputs,
            or the median log10(|update| / |weight|).
        message: the sentence, e.g. "(3) ReLU: 71% of units never fired in the last 500 steps".
    """

    step: int
    path: str
    kind: str
    value: float
    message: str

    def __str__(self) -> str:
        return self.message


class Monitor:
    """A training callback that samples a step every `every`, records per-layer statistics, and
    gives a verdict (printed once) when a layer crosses a threshold.

    Give it to fit: `trainer.fit(x, y, callbacks=[monitor])`, then read `monitor.verdicts`,
    `monitor.history` or `monitor.figure(path)`. It uses the fit's per-step callback methods, so it
    does not combine with `fit(cuda_graph=True)`.

    Watched layers: the model's modules with parameters of their own, and its ReLU, LeakyReLU,
    Tanh and Sigmoid activations, named by their dotted place ("(3) ReLU"; a model that is one
    such layer by its class name alone). On a sampled step the monitor measures:

    - each layer's output: mean and std; with a ReLU, which units (features of an (N, F) output,
      channels of an (N, C, ...) one) were positive for at least one sample; with a tanh or sigmoid,
      the share of outputs saturated (|tanh| > 0.99, sigmoid < 0.01 or > 0.99);
    - the std of d loss / d output of each layer (the backward hooks);
    - each trained parameter's gradient norm (before the optimiser's step, after clipping), its
      norm, and the norm of its change across the optimiser's step: the update as applied (the
      learning rate times the optimiser's step, momentum and weight decay included).

    Verdicts, each given once per layer (or weight) and kind, judged over the last `window` sampled
    steps (from the first full window on, and when training ends over what the window holds, in a
    run too short to fill it):

    - "(3) ReLU: 71% of units never fired in the last 500 steps": more than `dead` of a ReLU's units
      were never positive on any sampled batch of the window;
    - "(2) Sigmoid: 64% of outputs saturated": the window's mean saturated share exceeds `saturated`
      (not judged for the model's last layer, where an output near 0 or 1 is a confident prediction);
    - "(0) Linear weight: updates are 1e-1 of the weights: learning rate too high?": the median
      log10(|update| / |weight|) of the window's steps that moved the weight is >= `updates[1]`
      (after a step far too large the weights may stop: dead ReLUs, saturated logits);
    - "(0) Linear weight: updates are 1e-5 of the weights: learning rate too low or vanishing
      gradients?": the window's median log10(|update| / |weight|) <= `updates[0]` ("updates are 0"
      where the weights did not move at all). A healthy run is near 1e-3. Updates are judged for
      weights (two or more axes) only: biases and normalisation scales start at 0 or 1, where the
      ratio says little.

    Args:
        every: sample one step in `every` (the steps 0, every, 2 every, ... of the monitor's count,
            which runs on across fits), >= 1.
        window: the sampled steps a verdict looks back over, >= 1.
        dead: the share of a ReLU's units that, never fired, gives a verdict, in [0, 1].
        saturated: the share of a tanh's or sigmoid's outputs that, saturated, gives a verdict, in [0, 1].
        updates: (low, high): log10(|update| / |weight|) at or below low, or at or above high, gives a
            verdict.
        histogram_size: at most this many values of each layer's output and output gradient (a
            strided subset) are kept from the last sampled step for `figure`, >= 1.
        verbose: print each verdict to stderr when it is found ("Monitor, step 120: (3) ReLU: ...").

    Attributes:
        history: one dict per sampled step: {"step": int, "layers": {path: {"layer": class name,
            "mean", "std", "grad_std", and "dead" (ReLU: the share of units that never fired over
            the window so far) or "saturated" (tanh / sigmoid)}}, "parameters": {name: {"grad_norm",
            "norm", "update_norm", "log10_update_ratio"}}}, floats.
        verdicts: the `Verdict`s found, in order (each layer and kind once).
        step: the steps seen so far.
    """

    def __init__(
        self, every=50, window=10, dead=0.5, saturated=0.5, updates=(-5.0, -1.0), histogram_size=4096, verbose=True
    ):
        self.every, self.window = arguments.integer("every", every), arguments.integer("window", window)
        self.dead = arguments.real("dead", dead, low=0, high=1)
        self.saturated = arguments.real("saturated", saturated, low=0, high=1)
        low, high = (arguments.real("updates", bound) for bound in updates)
        if not low < high:
            raise ValueError(f"updates must be (low, high) with low < high, got {updates!r}")
        self.updates, self.histogram_size = (low, high), arguments.integer("histogram_size", histogram_size)
        self.verbose = verbose
        self.history, self.verdicts, self.step = [], [], 0
        self._sample = self._last = None
        self._handles = []
        self._fired = {}  # ReLU path -> the window's (units,) masks, on the device
        self._recent = {}  # (kind, path) -> the window's values, floats
        self._labels = {}  # path or parameter name -> "(3) ReLU", "(0) Linear weight"
        self._judged = set()  # (kind, path) already given a verdict

    # -- the fit's per-step callbacks ------------------------------------------------------
    def on_step_begin(self, trainer) -> None:
        """Register the hooks when this step is sampled (before its forward)."""
        if self._handles:  # left by a step that raised
            self._remove_hooks()
        self._sample = None
        if self.step % self.every:
            return
        self._sample = _Sample(self.step, self.histogram_size)
        for path, module in _watched(trainer.model):
            self._labels[path] = _label(path, module)
            self._handles.append(module.register_forward_hook(self._sample.forward_hook(path)))
            self._handles.append(module.register_backward_hook(self._sample.backward_hook(path)))

    def on_before_optimizer_step(self, trainer) -> None:
        """On a sampled step: the gradients' norms, and a copy of the weights before their update."""
        if self._sample is not None:
            self._remove_hooks()
            self._sample.before_update(trainer.model, self._labels)

    def on_step_end(self, trainer) -> None:
        """On a sampled step: the updates, one transfer to the host, the history entry and verdicts."""
        sample, self._sample = self._sample, None
        self.step += 1
        if sample is None:
            return
        self._remove_hooks()
        sample.after_update(trainer.model)
        self._window_of_fired(sample)
        entry = sample.read()
        self.history.append(entry)
        self._last = sample
        self._remember(entry, sample)
        self._judge(final=False)

    def on_train_end(self, history) -> None:
        """Judge what the windows hold, full or not (a short run), and remove any hooks left."""
        self._remove_hooks()
        self._sample = None
        self._judge(final=True)

    def on_exception(self, error) -> None:
        """Fit raised (in a sampled step, say, or KeyboardInterrupt): remove any hooks left on the model."""
        self._remove_hooks()
        self._sample = None

    # -- bookkeeping -----------------------------------------------------------------------
    def _remove_hooks(self):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _window_of_fired(self, sample):
        """Add each ReLU's fired units to its window; its "dead" statistic: the share never fired in it."""
        for path, fired in sample.fired.items():
            window = self._fired.setdefault(path, deque(maxlen=self.window))
            if window and window[-1].shape != fired.shape:  # another model under the same name
                window.clear()
            window.append(fired)
            xp = backend_of(fired).xp
            ever = reduce(xp.logical_or, window)
            sample.layers[path][1]["dead"] = 1 - xp.mean(xp.astype(ever, sample.dtype))

    def _remember(self, entry, sample):
        """Keep the judged values of the last `window` sampled steps."""

        def keep(kind, path, value):
            self._recent.setdefault((kind, path), deque(maxlen=self.window)).append(value)

        for path, stats in entry["layers"].items():
            if not (math.isfinite(stats["mean"]) and math.isfinite(stats["std"])):
                continue  # the run diverged: Trainer says where
            if "dead" in stats:
                keep("dead", path, stats["dead"])
            if "saturated" in stats and path != sample.order[-1]:  # the model's output: not judged
                keep("saturated", path, stats["saturated"])
        for name, stats in entry["parameters"].items():
            if sample.ndim[name] >= 2 and not math.isnan(stats["log10_update_ratio"]):
                keep("updates", name, stats["log10_update_ratio"])

    def _judge(self, final: bool):
        """Give each verdict whose value over a full window (or, when `final`, over what the window
        holds) crosses its threshold, once per (kind, path)."""
        for (measure, path), values in self._recent.items():
            if len(values) < self.window and not final:
                continue
            if measure == "updates":  # medians: a first step's transient, or one odd step, does not decide
                # too large: over the steps that moved the weight at all (after a step too large the
                # weights may stop: the layer's ReLUs died, or the logits saturated; log10 -inf)
                moved = [value for value in values if math.isfinite(value)]
                candidates = [("updates too large", statistics.median(moved))] if moved else []
                candidates.append(("updates too small", statistics.median(values)))
            else:  # "dead" is a share over the window already
                candidates = [(measure, values[-1] if measure == "dead" else sum(values) / len(values))]
            steps = len(values) * self.every if len(values) >= self.window else min(len(values) * self.every, self.step)
            for kind, value in candidates:
                message = None if (kind, path) in self._judged else self._problem(kind, path, value, steps)
                if message is not None:
                    self._judged.add((kind, path))
                    self.verdicts.append(Verdict(self.step - 1, path, kind, value, message))
                    if self.verbose:
                        print(f"Monitor, step {self.step - 1}: {message}", file=sys.stderr, flush=True)

    def _problem(self, kind, path, value, steps):
        """The verdict's sentence where `value` (over the last `steps` steps) crosses the threshold
        of `kind`, else None."""
        label = self._labels[path]
        if kind == "dead" and value > self.dead:
            return f"{label}: {value:.0%} of units never fired in the last {steps} step{'s' * (steps != 1)}"
        if kind == "saturated" and value > self.saturated:
            return f"{label}: {value:.0%} of outputs saturated"
        if kind == "updates too large" and value >= self.updates[1]:
            return f"{label}: updates are {_power(value)} of the weights: learning rate too high?"
        if kind == "updates too small" and value <= self.updates[0]:
            return f"{label}: updates are {_power(value)} of the weights: learning rate too low or vanishing gradients?"
        return None

    # -- the figure ------------------------------------------------------------------------
    def figure(self, path) -> Path:
        """Write a figure of the last sampled step and of the updates over the run.

        One histogram per watched layer of its output and of d loss / d output at the last sampled
        step (a strided subset of at most `histogram_size` values each), and below,
        log10(|update| / |weight|) of each weight over the sampled steps, with the thresholds.

        Args:
            path: the image file to write (its suffix picks the format: .png, .pdf, .svg).

        Returns:
            path: the file written, a Path.

        Raises:
            ImportError: matplotlib is not installed (an optional dependency: the experiments extra).
            RuntimeError: no step has been sampled yet.
            ValueError: a suffix matplotlib cannot write (no file is written, an old one stays).
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as error:
            raise ImportError(
                "Monitor.figure draws with matplotlib, which is not installed: pip install matplotlib "
                "(or the project's extra: pip install -e '.[experiments]')"
            ) from error
        if self._last is None:
            raise RuntimeError("Monitor.figure: no step sampled yet; train with the monitor in fit's callbacks first")
        layers = list(self._last.activations)
        columns = max(1, min(len(layers), 6))
        rows = max(1, math.ceil(len(layers) / columns))
        figure = Figure(figsize=(2.8 * columns, 2.3 * (2 * rows + 1.4)), layout="constrained")
        grid = figure.add_gridspec(2 * rows + 1, columns, height_ratios=[1] * (2 * rows) + [1.4])
        last = self._last
        blocks = ((last.activations, "output", "tab:blue"), (last.gradients, "output gradient", "tab:orange"))
        for index, layer in enumerate(layers):
            row, column = divmod(index, columns)
            for block, (values, what, colour) in enumerate(blocks):
                if layer in values:
                    axes = figure.add_subplot(grid[block * rows + row, column])
                    self._histogram(axes, values[layer], f"{self._labels[layer]} {what}", colour)
        self._draw_updates(figure.add_subplot(grid[2 * rows, :]))
        figure.suptitle(f"Monitor: layers at step {self._last.step}; updates over the sampled steps")
        with atomic_write(path) as file:  # all at once or not at all: never a half-written image
            figure.savefig(file, format=Path(path).suffix[1:].lower() or None, dpi=110)
        return Path(path)

    def _histogram(self, axes, values, title, colour):
        values = backend_of(values).to_numpy(values)
        values = values[abs(values) < math.inf]  # NaN and infinities (a diverged run) left out
        if values.size:
            axes.hist(values, bins=50, color=colour)
        axes.set_title(f"{title}\nstd {values.std():.2g}" if values.size else f"{title}\nnot finite", fontsize=8)
        axes.tick_params(labelsize=7)
        axes.set_yticks([])

    def _draw_updates(self, axes):
        steps = [entry["step"] for entry in self.history]
        for name, ndim in self._last.ndim.items():
            if ndim >= 2:
                ratios = [
                    entry["parameters"].get(name, {}).get("log10_update_ratio", math.nan) for entry in self.history
                ]
                axes.plot(steps, ratios, marker=".", label=self._labels[name])
        for bound, label in zip(self.updates, ("thresholds", None)):
            axes.axhline(bound, color="tab:red", linestyle="--", linewidth=1, label=label)
        axes.axhline(TYPICAL_UPDATES, color="grey", linestyle=":", linewidth=1, label="typical")
        axes.set_xlabel("step")
        axes.set_ylabel("log10 |update| / |weight|")
        axes.legend(fontsize=7, ncol=4)


class _Sample:
    """What one sampled step measures: statistics as 0-d device arrays until `read`, the fired
    units of each ReLU, a strided subset of each layer's output and output gradient, and the
    parameters' copies from before the update."""

    def __init__(self, step: int, histogram_size: int):
        self.step, self.size = step, histogram_size
        self.layers = {}  # path -> (class name, {statistic: 0-d array})
        self.order = []  # the paths in the order their forwards ran
        self.fired = {}  # ReLU path -> (units,) bool
        self.activations, self.gradients = {}, {}  # path -> at most `size` values
        self.parameters, self.before, self.ndim = {}, {}, {}  # name -> statistics, copy, axes
        self.dtype = None

    def forward_hook(self, path):
        def hook(module, inputs, output):
            if hasattr(output, "shape") and output.ndim > 0:
                self._forward(path, module, output)

        return hook

    def backward_hook(self, path):
        def hook(module, grad_input, grad_output):
            grad = grad_output[0]
            if path in self.layers and hasattr(grad, "shape") and grad.ndim > 0:
                self.layers[path][1]["grad_std"] = backend_of(grad).xp.std(grad)
                self.gradients[path] = _subset(grad, self.size)

        return hook

    def _forward(self, path, module, y):
        xp = backend_of(y).xp
        self.dtype = self.dtype or y.dtype
        stats = {"mean": xp.mean(y), "std": xp.std(y)}
        if isinstance(module, ReLU):
            self.fired[path] = xp.any(y > 0, axis=(0, *range(2, y.ndim)))  # units: axis 1
        elif isinstance(module, Tanh):
            stats["saturated"] = xp.mean(xp.astype(xp.abs(y) > SATURATED, y.dtype))
        elif isinstance(module, Sigmoid):
            stats["saturated"] = xp.mean(xp.astype((y < 1 - SATURATED) | (y > SATURATED), y.dtype))
        self.layers[path] = (type(module).__name__, stats)
        if path in self.order:  # a module run twice: its last call counts
            self.order.remove(path)
        self.order.append(path)
        self.activations[path] = _subset(y, self.size)

    def before_update(self, model: Module, labels: dict):
        """Each trained parameter's gradient norm and norm, and a copy of it (its change is the update)."""
        for path, module in model.named_modules():
            for attribute, parameter in module._parameters.items():
                name = f"{path}.{attribute}" if path else attribute
                if parameter is None or not parameter.requires_grad or parameter.grad is None:
                    continue
                labels[name] = _label(path, module, attribute)
                xp = backend_of(parameter.data).xp
                self.parameters[name] = {"grad_norm": _norm(xp, parameter.grad), "norm": _norm(xp, parameter.data)}
                self.before[name], self.ndim[name] = xp.asarray(parameter.data, copy=True), parameter.data.ndim
                self.dtype = self.dtype or parameter.data.dtype

    def after_update(self, model: Module):
        """The norm of each parameter's change across the optimiser's step."""
        current = dict(model.named_parameters())
        for name, before in self.before.items():
            xp = backend_of(before).xp
            self.parameters[name]["update_norm"] = _norm(xp, current[name].data - before)
        self.before = {}

    def read(self) -> dict:
        """The history entry: every statistic brought to the host in one transfer."""
        keys = [(True, path, stat) for path, (_, stats) in self.layers.items() for stat in stats]
        keys += [(False, name, stat) for name, stats in self.parameters.items() for stat in stats]
        values = [self.layers[path][1][stat] if layer else self.parameters[path][stat] for layer, path, stat in keys]
        entry = {"step": self.step, "layers": {}, "parameters": {}}
        if values:
            backend = backend_of(values[0])
            stacked = backend.xp.stack([backend.xp.astype(backend.xp.asarray(v), self.dtype) for v in values])
            for (layer, path, stat), value in zip(keys, backend.to_numpy(stacked).tolist()):
                if layer:
                    entry["layers"].setdefault(path, {"layer": self.layers[path][0]})[stat] = value
                else:
                    entry["parameters"].setdefault(path, {})[stat] = value
        for stats in entry["parameters"].values():
            stats["log10_update_ratio"] = _log10_ratio(stats.get("update_norm", math.nan), stats["norm"])
        return entry


def _watched(model: Module):
    """(path, module) of the modules the monitor hooks: those with parameters of their own, and activations."""
    return [(path, m) for path, m in model.named_modules() if m._parameters or isinstance(m, ACTIVATIONS)]


def _label(path: str, module: Module, attribute: str = "") -> str:
    """How a verdict names a layer or a parameter: "(3) ReLU", "(0) Linear weight" ("Linear" at the root)."""
    name = f"({path}) {type(module).__name__}" if path else type(module).__name__
    return f"{name} {attribute}" if attribute else name


def _subset(values, size: int):
    """At most `size` of the array's values, every k-th of its flattened copy, on its device."""
    xp = backend_of(values).xp
    flat = xp.reshape(values, (-1,))
    step = max(1, math.ceil(flat.shape[0] / size))
    return xp.asarray(flat[::step], copy=True)


def _norm(xp, array):
    return xp.sqrt(xp.sum(array * array))


def _log10_ratio(update: float, norm: float) -> float:
    """log10(update / norm): -inf for no change, inf for a change of a zero weight, nan where unknown
    (a NaN, or both zero or both infinite: weights that overflowed)."""
    unknown = (update == 0 and norm == 0) or (math.isinf(update) and math.isinf(norm))
    if unknown or math.isnan(update) or math.isnan(norm):
        return math.nan
    ratio = update / norm if norm else math.inf
    return math.log10(ratio) if ratio > 0 else -math.inf  # 0: no change (or an infinite weight)


def _power(value: float) -> str:
    """log10 of a ratio as a power of ten: "1e-1" (or "0" for no change at all)."""
    if value == -math.inf:
        return "0"
    return f"1e{round(value)}" if math.isfinite(value) else str(value)
