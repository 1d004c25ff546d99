"""`compare_with_torch(model, x)`: run a model and its PyTorch copy forward and backward in float64,
and find the first layer where they part.

The diynn side is observed by wrapping each module's forward and backward for the time of the run
(`probe.recording`), the PyTorch side by forward hooks and full backward hooks. Outputs are checked
in the order the forward finishes them, then the loss, then input and parameter gradients in the
order the backward finishes them: the first layer that disagrees in that order is where the error
starts (every later disagreement may be its consequence: a wrong input gradient spoils the
gradients of all the layers before it).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

from ..autoencoder import Autoencoder
from ..backends import backend_of, get_backend
from ..grad_mode import enable_grad
from ..layers import Dropout, MultiheadAttention
from ..losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss
from ..module import Module
from .probe import preserved, recording, tree, unique_modules
from .table import table
from .torch_copy import as_torch, import_torch, torch_copy

OUTPUT, INPUT_GRADIENT = "output", "input gradient"


@dataclass(frozen=True)
class ComparisonRow:
    """One call of one module, diynn against PyTorch.

    Attributes:
        path: the module's dotted place ("" for the model, "loss" for the loss); "#2" and so on
            are appended for the later calls of a module that runs more than once.
        depth: how deep it is nested (0 for the model and the loss).
        layer: the module's (or loss's) class name.
        errors: the largest absolute difference of each quantity compared: "output" (the loss's
            value, on the loss row), "input gradient" (d loss / d output, on the loss row),
            "gradient of <name>" for each parameter, and each buffer by name after the forward
            (batch normalisation's running statistics).
        disagreeing: the quantities outside the tolerance, in the order of `errors`.
    """

    path: str
    depth: int
    layer: str
    errors: dict = field(default_factory=dict)
    disagreeing: tuple = ()


@dataclass(frozen=True)
class Disagreement:
    """Where diynn and PyTorch first part: a layer and what differs there.

    Attributes:
        path: the layer's dotted place ("" for the model, "loss" for the loss).
        layer: its class name.
        what: the quantities that differ there, e.g. ("input gradient",).
        error: the largest absolute difference among them.
    """

    path: str
    layer: str
    what: tuple
    error: float

    def __str__(self) -> str:
        return f"{self.path or 'the model'} ({self.layer}): {', '.join(self.what)} differs by up to {self.error:.3g}"


@dataclass(frozen=True)
class Comparison:
    """What `compare_with_torch` found.

    `str(comparison)` is a table, one row per layer call, the first disagreement marked.

    Attributes:
        rows: one `ComparisonRow` per module call, parents before their children, then the loss.
        max_error: the largest absolute difference anywhere (0.0 when nothing was compared).
        first_disagreement: None when everything agrees within the tolerance, else the
            `Disagreement` where the error starts.
        atol: the absolute tolerance; rtol: the relative one (|ours - torch| <= atol + rtol |torch|).
    """

    rows: tuple
    max_error: float
    first_disagreement: Disagreement | None
    atol: float
    rtol: float

    @property
    def agrees(self) -> bool:
        """Whether every quantity of every layer agrees within the tolerance."""
        return self.first_disagreement is None

    def __str__(self) -> str:
        first = self.first_disagreement
        cells = []
        for row in self.rows:
            gradients = [e for name, e in row.errors.items() if name not in (OUTPUT, INPUT_GRADIENT)]
            status = "ok" if not row.disagreeing else "differs: " + ", ".join(row.disagreeing)
            if first is not None and (row.path, row.layer) == (first.path, first.layer):
                status += "  <- first disagreement"
            cells.append(
                [
                    "  " * row.depth + (f"{row.path} " if row.path else "") + row.layer,
                    _error(row.errors.get(OUTPUT)),
                    _error(row.errors.get(INPUT_GRADIENT)),
                    _error(max(gradients) if gradients else None),
                    status,
                ]
            )
        headers = ["Layer", "Output", "Input gradient", "Parameters, buffers", "Status"]
        verdict = "all layers agree" if first is None else f"first disagreement: {first}"
        footer = f"largest difference {self.max_error:.3g} (atol {self.atol:g}, rtol {self.rtol:g}); {verdict}"
        return table(headers, cells, right={1, 2, 3}) + "\n\n" + footer

    def __repr__(self) -> str:
        return str(self)


def _error(value) -> str:
    return "--" if value is None else f"{value:.1e}"


def compare_with_torch(model: Module, x, y=None, loss=None, modules=None, atol=1e-9, rtol=1e-7) -> Comparison:
    """Run `model` and its PyTorch copy forward and backward in float64 and compare every layer.

    Builds the torch.nn copy of the model (same parameter names, weights and running statistics
    copied), runs both on `x` in float64, then backward from `loss(output, y)` (its PyTorch
    counterpart on the torch side) or, without a loss, from the gradient of sum(output), and
    compares per layer the output, the input gradient and each parameter's gradient. The model is
    left untouched (its parameters, gradients, modes, caches and random streams).

    Supported: Sequential, Residual, Concat, Identity, Autoencoder, Flatten, Unflatten, Permute,
    Linear, Conv1d, Conv2d (stride, padding, dilation, groups), ConvTranspose2d, MaxPool1d, MaxPool2d,
    AvgPool2d, AdaptiveAvgPool2d, Upsample, BatchNorm1d and BatchNorm2d (each module in its own
    mode: training uses the batch's statistics; the running statistics are compared after the
    forward), LayerNorm, ReLU, LeakyReLU, Tanh, Sigmoid, GELU, SiLU, Softmax, Embedding (x integer
    ids), MultiheadAttention (self-attention, compared whole), PositionEmbedding, ClassToken,
    TokenPool; losses MSELoss, CrossEntropyLoss, BCELoss and BCEWithLogitsLoss. Dropout, an
    attention's dropout and an Autoencoder's noise are random: both sides run them in eval mode.

    Args:
        model: a Module made of those layers and of classes in `modules`.
        x: the input, an array of the model's backend (or NumPy), e.g. (N, 1, 28, 28); converted
            to float64 (integers, token ids, stay integers).
        y: the target the loss takes (labels (N,) int, or an array of the output's shape).
        loss: a diynn loss of a class listed above; None: the gradient of sum(output), ones.
        modules: {diynn class: factory} for layers of other classes (a layer of your own):
            factory(module) -> a torch.nn.Module computing what the module computes, with the
            weights copied (`diynn.inspection.as_torch(array)` gives a float64 tensor; the
            factory runs with torch's default dtype float64). Its parameters are matched by name,
            else in order. A class given here is compared as a whole (its children get no rows).
        atol: the absolute tolerance.
        rtol: the relative tolerance, of PyTorch's value.

    Returns:
        comparison: a `Comparison`: `.max_error`, `.first_disagreement` (None, or the layer path
            and what differed there), `.rows`; `str()` a table.

    Raises:
        ImportError: PyTorch is not installed (the message says `pip install torch`).
        TypeError: a module or loss with no PyTorch counterpart (the message names the class and
            the `modules=` argument), or a model that is not a Module.
        ValueError: a loss without y, or y without a loss.
    """
    torch = import_torch()
    theirs_loss = _checked(model, y, loss)
    backend = model.backend or (backend_of(x) if hasattr(x, "shape") else get_backend())
    xp = backend.xp
    with preserved(model, *([loss] if loss is not None else [])):
        model.astype(xp.float64).zero_grad()
        for module in unique_modules(model):
            if isinstance(module, (Dropout, Autoencoder, MultiheadAttention)):
                object.__setattr__(module, "training", False)  # random: compared as the identity
        copy = torch_copy(model, modules)
        _mirror_modes(model, copy)
        x, y = _float64(backend, x), None if y is None else _float64(backend, y)
        ours = _run_ours(model, x, y, loss)
        theirs = _run_theirs(torch, copy, _labels(torch, x) if _integral(x) else as_torch(x), y, theirs_loss)
        return _compare(torch, model, copy, loss, ours, theirs, atol, rtol)


def _float64(backend, values):
    """`values` as an array of `backend`, in float64 if floating (integer labels stay integers)."""
    xp, array = backend.xp, backend.asarray(values)
    return xp.astype(array, xp.float64) if xp.isdtype(array.dtype, "real floating") else array


def _checked(model, y, loss):
    """The torch counterpart of `loss` (None without one), once the arguments fit together."""
    if not isinstance(model, Module):
        raise TypeError(f"compare_with_torch needs a diynn Module, got {type(model).__name__}")
    if isinstance(loss, Loss) and loss.needs_target and y is None:
        raise ValueError(f"{type(loss).__name__} needs a target: pass y")
    if loss is None and y is not None:
        raise ValueError("y is the loss's target: pass loss= too (without a loss the gradient is that of sum(output))")
    return _torch_loss(loss)


def _torch_loss(loss):
    if loss is None:
        return None
    if not isinstance(loss, Loss):
        raise TypeError(f"loss must be a diynn loss, got {type(loss).__name__}")
    nn = import_torch().nn
    counterparts = {
        MSELoss: lambda: nn.MSELoss(),
        CrossEntropyLoss: lambda: nn.CrossEntropyLoss(label_smoothing=loss.label_smoothing),
        BCELoss: lambda: nn.BCELoss(),
        BCEWithLogitsLoss: lambda: nn.BCEWithLogitsLoss(),
    }
    if type(loss) not in counterparts:
        raise TypeError(
            f"compare_with_torch has no PyTorch counterpart for the loss {type(loss).__name__} (it has one for "
            f"{', '.join(cls.__name__ for cls in counterparts)}); compare without loss= (the gradient of sum(output))"
        )
    return counterparts[type(loss)]()


def _mirror_modes(model, copy):
    """Each torch module in its diynn module's mode (a factory's module as a whole)."""
    for module in unique_modules(model):
        copied = copy.torch_of.get(id(module))
        if copied is None:
            continue
        if id(module) in copy.leaves:
            copied.train(module.training)
        else:
            copied.training = module.training


@dataclass
class _Run:
    """One side's run: per module (by id) its outputs and input gradients, each in forward-call
    order; the order the calls finished; the loss's value and gradient."""

    outputs: dict = field(default_factory=dict)
    input_grads: dict = field(default_factory=dict)
    forward_order: list = field(default_factory=list)
    backward_order: list = field(default_factory=list)
    loss: object = None
    loss_grad: object = None


def _run_ours(model, x, y, loss) -> _Run:
    run = _Run()
    with enable_grad(), recording(model, backward=True) as (forwards, backwards):
        output = model(x)
        if loss is not None:
            run.loss = loss(output, y)
            grad = run.loss_grad = loss.backward()
        else:
            grad = backend_of(output).xp.ones_like(output)
        model.backward(grad)
    for call in forwards:
        run.outputs.setdefault(id(call.module), []).append(call.returned)
        run.forward_order.append((call.module, len(run.outputs[id(call.module)]) - 1))
    for call in backwards:  # a module's backwards consume its forwards latest first
        grads = run.input_grads.setdefault(id(call.module), [])
        grads.insert(0, call.returned)
        run.backward_order.append((call.module, len(run.outputs[id(call.module)]) - len(grads)))
    return run


def _run_theirs(torch, copy, x, y, loss) -> _Run:
    run, handles = _Run(), []

    def forward_hook(module, inputs, output):
        run.outputs.setdefault(id(module), []).append(output.detach().clone())

    def backward_hook(module, grad_inputs, grad_outputs):
        grad = grad_inputs[0] if grad_inputs else None
        run.input_grads.setdefault(id(module), []).insert(0, None if grad is None else grad.detach().clone())

    for copied in {id(c): c for c in copy.torch_of.values()}.values():
        handles += [copied.register_forward_hook(forward_hook), copied.register_full_backward_hook(backward_hook)]
    try:
        with warnings.catch_warnings():
            # token ids have no gradient (torch warns that the hooks of the modules they enter see none)
            warnings.filterwarnings("ignore", "Full backward hook is firing when gradients are computed with respect")
            x = x.requires_grad_() if x.is_floating_point() else x
            output = copy.root(x)
            if loss is not None:
                output.retain_grad()
                target = as_torch(y) if str(y.dtype).rpartition(".")[2].startswith("float") else _labels(torch, y)
                run.loss = loss(output, target)
                run.loss.backward()
                run.loss_grad = output.grad
            else:
                output.backward(torch.ones_like(output))
    finally:
        for handle in handles:
            handle.remove()
    return run


def _integral(x):
    return backend_of(x).xp.isdtype(x.dtype, "integral")


def _labels(torch, y):
    return torch.tensor(backend_of(y).to_numpy(y)).long()


def _difference(torch, ours, theirs, atol, rtol):
    """(largest |ours - theirs|, whether within atol + rtol |theirs|), or None when neither exists."""
    if ours is None and theirs is None:
        return None
    if ours is None or theirs is None:
        return math.inf, False
    ours, theirs = as_torch(ours), theirs.detach().to(torch.float64)
    if tuple(ours.shape) != tuple(theirs.shape):
        return math.inf, False
    if ours.numel() == 0:
        return 0.0, True
    gap = (ours - theirs).abs()
    largest = gap.max().item()
    return (math.inf if math.isnan(largest) else largest), bool((gap <= atol + rtol * theirs.abs()).all())


def _compare(torch, model, copy, loss, ours, theirs, atol, rtol) -> Comparison:
    """The rows in tree order, and the first disagreement in the order the computation ran."""
    checks, rows = {}, []  # (id(module), call) -> {quantity: (error, agrees)}
    seen = set()
    for node in tree(model):
        module, copied = node.module, copy.torch_of.get(id(node.module))
        if copied is None or id(module) in seen:  # inside a factory's module, or met before
            continue
        seen.add(id(module))
        for call, output in enumerate(ours.outputs.get(id(module), [])):
            found = {OUTPUT: _difference(torch, output, _nth(theirs.outputs, copied, call), atol, rtol)}
            if id(module) in ours.input_grads:
                found[INPUT_GRADIENT] = _difference(
                    torch, _nth(ours.input_grads, module, call), _nth(theirs.input_grads, copied, call), atol, rtol
                )
            if call == 0:
                found.update(_state_differences(torch, module, copied, id(module) in copy.leaves, atol, rtol))
            found = {name: value for name, value in found.items() if value is not None}
            checks[(id(module), call)] = found
            path = node.path + (f" #{call + 1}" if call else "")
            rows.append(_row(path, node.depth, type(module).__name__, found))
    if loss is not None:
        found = {
            OUTPUT: _difference(torch, ours.loss, theirs.loss, atol, rtol),
            INPUT_GRADIENT: _difference(torch, ours.loss_grad, theirs.loss_grad, atol, rtol),
        }
        checks[("loss", 0)] = found
        rows.append(_row("loss", 0, type(loss).__name__, found))
    errors = [error for found in checks.values() for error, _ in found.values()]
    first = _first_disagreement(model, loss, ours, checks)
    return Comparison(tuple(rows), max(errors, default=0.0), first, atol, rtol)


def _nth(calls, module, index):
    found = calls.get(id(module), [])
    return found[index] if index < len(found) else None


def _row(path, depth, layer, found):
    disagreeing = tuple(name for name, (_, agrees) in found.items() if not agrees)
    return ComparisonRow(path, depth, layer, {name: error for name, (error, _) in found.items()}, disagreeing)


def _state_differences(torch, module, copied, leaf, atol, rtol):
    """Each parameter's gradient (matched by name, else in order) and each buffer after the forward."""
    ours = list(module.named_parameters()) if leaf else list(module._parameters.items())
    theirs = list(copied.named_parameters(recurse=leaf))
    by_name = dict(theirs)
    matched = all(name in by_name for name, _ in ours) or len(ours) != len(theirs)
    found = {}
    for index, (name, parameter) in enumerate(ours):
        other = by_name.get(name) if matched else theirs[index][1]
        if other is None:  # no counterpart in the torch module
            found[f"gradient of {name}"] = (math.inf, False)
        else:
            found[f"gradient of {name}"] = _difference(torch, parameter.grad, other.grad, atol, rtol)
    buffers = dict(copied.named_buffers(recurse=leaf))
    for name in sorted(module._buffers):
        if name in buffers:
            found[name] = _difference(torch, getattr(module, name), buffers[name], atol, rtol)
    return found


def _first_disagreement(model, loss, ours, checks):
    """Outputs and buffers in the order the forward finished them, the loss, then gradients in the
    order the backward finished them; the first check that fails."""
    layer_of = {id(node.module): type(node.module).__name__ for node in tree(model)}
    path_of = {}
    for node in tree(model):
        path_of.setdefault(id(node.module), node.path)
    order = [((id(m), call), (OUTPUT,)) for m, call in ours.forward_order]
    order += [((key[0], 0), "state") for key in checks if key[1] == 0 and key[0] != "loss"]
    if loss is not None:
        order += [(("loss", 0), (OUTPUT, INPUT_GRADIENT))]
    order += [((id(m), call), (INPUT_GRADIENT, "gradient of")) for m, call in ours.backward_order]
    for key, wanted in order:
        found = checks.get(key, {})
        if wanted == "state":
            failing = [n for n, (_, ok) in found.items() if not ok and n != OUTPUT and n != INPUT_GRADIENT]
            failing = [n for n in failing if not n.startswith("gradient of")]
        else:
            failing = [n for n, (_, ok) in found.items() if not ok and any(n.startswith(w) for w in wanted)]
        if failing:
            if key[0] == "loss":
                path, layer = "loss", type(loss).__name__
            else:
                path = path_of[key[0]] + (f" #{key[1] + 1}" if key[1] else "")
                layer = layer_of[key[0]]
            return Disagreement(path, layer, tuple(failing), max(found[n][0] for n in failing))
    return None
