"""Where a diverging run made its first NaN or infinity.

`Trainer.fit` keeps at the start of each epoch what a re-run of it needs (`EpochStart`: copies of
the weights, buffers and optimiser state, made on the device with no read to the host, and the
positions of the random streams). When an epoch's losses or its final weights are not all finite,
fit restores that start and runs the epoch again with `training.steps.CheckedStep`, which checks
every stage of each step through a `Watch`: the batch; in the forward, each module's output (a
forward hook on every module); the loss and its gradient; in the backward, the gradient each module
returns and the gradients of its own parameters (a backward hook on every module); the gradients
the optimiser gets; and the weights after its update. The first NaN or infinity stops the re-run
there with `NonFinite`, which names the module (by its place in the model, "(3.1) Conv2d"), the
pass and the array, says what was still finite, and whether a smaller learning rate is the likely
fix. The model keeps the weights from before the step that made it.
"""

from __future__ import annotations

from ..backends import BackendError, backend_of

LEARNING_RATE = "try a smaller learning rate"


class NonFinite(FloatingPointError):
    """The first NaN or infinity of a checked step.

    Attributes:
        learning_rate: whether a smaller learning rate is the likely fix (the weights grew through
            the updates), rather than a layer, the data or the labels.
    """

    def __init__(self, text: str, learning_rate: bool):
        super().__init__(text)
        self.learning_rate = learning_rate


class EpochStart:
    """What a re-run of an epoch needs, kept at its start: copies of the model's parameters and
    buffers and of the optimiser's state (device copies: no read to the host), and the positions
    of the random streams that can give theirs (dropout and augmentation on the host; CuPy's device
    streams cannot, and a re-run draws anew from them).

    Args:
        trainer: the Trainer whose model and optimiser to copy.
        generators: the random streams of the run by name (`TrainingState.generators`).
    """

    def __init__(self, trainer, generators: dict):
        self.trainer = trainer
        self.model = trainer.model.state_dict()
        self.optimizer = trainer.optimizer.state_dict()
        self.streams = []
        for generator in generators.values():
            try:
                self.streams.append((generator, generator.state_dict()))
            except BackendError:
                pass

    def restore(self) -> None:
        """Put the model, the optimiser and the random streams back as they were at the start."""
        self.trainer.model.load_state_dict(self.model)
        self.trainer.optimizer.load_state_dict(self.optimizer)
        for generator, state in self.streams:
            generator.load_state_dict(state)


class Watch:
    """The checks of a re-run epoch: within `with watch:`, a forward and a backward hook on every
    module of `model`; between the stages of a step, `CheckedStep` calls the methods below. Each
    raises NonFinite at the first NaN or infinity.

    Args:
        model: the model being trained.
        loss: its loss.
        first_update: whether the epoch's first step is the fit's first update (weights that are
            not finite then were so before training).
        losses: the run's loss so far (the history's epoch means): with this epoch's steps, shows
            whether the loss grew before it diverged.
    """

    def __init__(self, model, loss, first_update: bool, losses):
        self.model, self.loss = model, loss
        self.names = {id(module): name for name, module in model.named_modules()}
        self.modules = {name: module for name, module in model.named_modules()}
        self.first_update = first_update
        self.losses = [float(value) for value in losses]
        self.step = 0  # the step being checked, counted from 0 in the epoch
        self.handles = []

    def __enter__(self) -> Watch:
        for _, module in self.model.named_modules():
            self.handles.append(module.register_forward_hook(self._forward))
            self.handles.append(module.register_backward_hook(self._backward))
        return self

    def __exit__(self, kind, error, traceback):
        for handle in self.handles:
            handle.remove()
        if kind is not None:  # a check stopped a step midway: forget the caches of its forwards
            self.model.clear_pending()
            self.loss.clear_pending()

    # -- the stages of a step ----------------------------------------------------------------
    def batch(self, x) -> None:
        """The batch as the step gets it (after any augmentation)."""
        kind = _non_finite(x)
        if kind:
            raise NonFinite(f"the batch holds {kind} (the data are finite: an augmentation made it)", False)

    def loss_value(self, value, output, target):
        """The loss of the model's (finite) output; returns it."""
        kind = _non_finite(value)
        if kind:
            context = f"its input was finite, {_span(output)}"
            labels = _labels_outside(output, target)
            if labels:
                context += f"; {labels}"
            raise NonFinite(f"{_loss_place(self.loss)}: forward value is {kind} ({context})", False)
        return value

    def loss_gradient(self, grad):
        """d loss / d output, from a finite loss; returns it."""
        kind = _non_finite(grad)
        if kind:
            raise NonFinite(f"{_loss_place(self.loss)}: backward returned {kind} (its value was finite)", False)
        return grad

    def gradients(self, value) -> None:
        """The loss with the penalty, and every gradient the optimiser gets (after clipping)."""
        kind = _non_finite(value)
        if kind:
            raise NonFinite(
                f"the penalty made the loss {kind} (the weights are finite: {self._largest_weight()})", True
            )
        for place, name, parameter in self._parameters():
            kind = parameter.grad is not None and _non_finite(parameter.grad)
            if kind:
                raise NonFinite(f"{place}: the gradient of its {name} has {kind} after the penalty and clipping", True)

    def updated(self, optimizer, value) -> None:
        """The weights after the optimiser's update (before zero_grad: the gradients are still there)."""
        for place, name, parameter in self._parameters():
            kind = _non_finite(parameter.data)
            if kind:
                grad = parameter.grad
                given = f"its gradient was finite, {_magnitude(grad)}" if grad is not None else "it had no gradient"
                raise NonFinite(
                    f"the optimiser ({type(optimizer).__name__}, learning rate {float(optimizer.lr):.3g}) made the "
                    f"{name} of {place} {kind} in its update ({given})",
                    True,
                )
        self.losses.append(float(value))
        self.step += 1

    # -- the hooks ----------------------------------------------------------------------------
    def _forward(self, module, inputs, output):
        kind = _non_finite(output)
        if not kind:
            return None
        x, bad = inputs[0], self._bad_parameters(module)
        if bad:
            context = _holding(bad)
            if self._first():
                context, learning_rate = f"{context} before this fit's first update", False
            else:
                context, learning_rate = f"{context}, made so by an earlier update", True
        elif _non_finite(x):
            context, learning_rate = f"its input already held {_non_finite(x)}{self._made_inside(module)}", False
        else:
            context = f"its input was finite, {_span(x)}"
            if module._parameters:
                context += f", and so were its parameters, {self._largest_weight(module)}"
            overflowed = _overflowed(kind, x, *(p.data for p in module.parameters()))
            learning_rate = (overflowed and not self._first()) or self._loss_grew()
        raise NonFinite(f"{self._place(module)}: forward output has {kind} ({context})", learning_rate)

    def _backward(self, module, grad_inputs, grad_outputs):
        returned, given = grad_inputs[0], grad_outputs[0]
        kind = returned is not None and _non_finite(returned)
        if kind:
            what = f"backward returned {kind}"
        else:
            bad = [(name, _non_finite(p.grad)) for name, p in module._parameters.items() if p.grad is not None]
            bad = [(name, found) for name, found in bad if found]
            if not bad:
                return None
            name, kind = bad[0]
            what = f"backward made the gradient of its {name} {kind}"
        if _non_finite(given):
            context = f"its output gradient already held {_non_finite(given)}{self._made_inside(module)}"
            learning_rate = False
        else:
            context = f"its output gradient was finite, {_magnitude(given)}"
            overflowed = _overflowed(kind, given, *(p.data for p in module.parameters()))
            learning_rate = overflowed and not self._first()  # not a layer's own NaN from moderate values
        raise NonFinite(f"{self._place(module)}: {what} ({context})", learning_rate)

    # -- helpers ------------------------------------------------------------------------------
    def _place(self, module) -> str:
        name = self.names.get(id(module))
        return type(module).__name__ if name is None else _place(name, module)

    def _made_inside(self, module) -> str:
        """', made inside (3) Block' where the module is a child: a value its parent computed itself."""
        name = self.names.get(id(module))
        if not name:
            return ""
        parent = name.rpartition(".")[0]
        return f", made inside {_place(parent, self.modules[parent])}"

    def _first(self) -> bool:
        return self.first_update and self.step == 0

    def _loss_grew(self) -> bool:
        """Whether the last loss before this step is more than twice the run's lowest so far."""
        return len(self.losses) >= 2 and self.losses[-1] > 2 * min(self.losses)

    def _parameters(self):
        """(place, name, parameter) of every parameter of the model, each once."""
        seen = set()
        for _, module in self.model.named_modules():
            for name, parameter in module._parameters.items():
                if id(parameter) not in seen:
                    seen.add(id(parameter))
                    yield self._place(module), name, parameter

    def _bad_parameters(self, module):
        """(name, how many values are not finite) of the module's own parameters that hold some."""
        bad = []
        for name, parameter in module._parameters.items():
            xp = backend_of(parameter.data).xp
            count = int(xp.sum(xp.astype(~xp.isfinite(parameter.data), xp.int64)))
            if count:
                bad.append((name, count))
        return bad

    def _largest_weight(self, module=None) -> str:
        """The largest magnitude among the parameters of `module` (default: the whole model)."""
        arrays = [p.data for p in (module or self.model).parameters()]
        if not arrays:
            return "no parameters"
        return f"largest magnitude {max(_largest(array) for array in arrays):.3g}"


def located(found: NonFinite, step: int, detected: int | None) -> str:
    """The end of a TrainingDiverged message: where the first NaN or infinity arose (`found`, at
    `step` of the epoch, counted from 0), after the report of the step whose loss was not finite
    (`detected`, or None where the weights were the first to show it)."""
    text = f": {found}" if step == detected else f"; it began at step {step + 1}: {found}"
    return text + (f"; {LEARNING_RATE}" if found.learning_rate else "")


def _place(name: str, module) -> str:
    """A module's place in the model as messages show it: "(3.1) Conv2d", "Sequential (the model)"."""
    return f"({name}) {type(module).__name__}" if name else f"{type(module).__name__} (the model)"


def _loss_place(loss) -> str:
    return f"the loss ({type(loss).__name__})"


def _non_finite(array) -> str | None:
    """'NaN', 'inf', '-inf' or several of them, joined by 'and', for what `array` holds; None where
    it is finite (or not floating point)."""
    if array is None or not hasattr(array, "dtype"):
        return None
    xp = backend_of(array).xp
    if not xp.isdtype(array.dtype, "real floating") or bool(xp.all(xp.isfinite(array))):
        return None
    kinds = [
        kind
        for kind, present in (("NaN", xp.isnan(array)), ("inf", array == xp.inf), ("-inf", array == -xp.inf))
        if bool(xp.any(present))
    ]
    return " and ".join(kinds)


def _overflowed(kind: str, *finite) -> bool:
    """Whether a `kind` of non-finite value made from the `finite` arrays is an overflow: an infinity
    alone, or values so large (above the square root of the dtype's largest) that their products
    overflow and inf - inf gives NaN. The mark of weights grown through too large updates."""
    if "NaN" not in kind:
        return True
    arrays = [array for array in finite if array is not None and array.size]
    if not arrays:
        return False
    limit = float(backend_of(arrays[0]).xp.finfo(arrays[0].dtype).max) ** 0.5
    return max(_largest(array) for array in arrays) > limit


def _holding(bad) -> str:
    """'its weight holds 1 non-finite value' for [("weight", 1)], parameters joined by 'and'."""
    return " and ".join(f"its {name} holds {count} non-finite value{'' if count == 1 else 's'}" for name, count in bad)


def _largest(array) -> float:
    xp = backend_of(array).xp
    return float(xp.max(xp.abs(array))) if array.size else 0.0


def _magnitude(array) -> str:
    return f"largest magnitude {_largest(array):.3g}"


def _span(array) -> str:
    """'in [lo, hi]' of a finite array."""
    xp = backend_of(array).xp
    if not array.size:
        return "empty"
    return f"in [{float(xp.min(array)):.3g}, {float(xp.max(array)):.3g}]"


def _labels_outside(output, target) -> str | None:
    """Where `target` holds integer class labels for `output` (N, C): which lie outside 0..C-1."""
    if target is None or output.ndim != 2:
        return None
    xp = backend_of(target).xp
    if not xp.isdtype(target.dtype, "integral") or target.ndim != 1 or not target.size:
        return None
    low, high, classes = int(xp.min(target)), int(xp.max(target)), output.shape[1]
    if low >= 0 and high < classes:
        return None
    return f"its target holds labels from {low} to {high}, outside the {classes} classes 0..{classes - 1}"
