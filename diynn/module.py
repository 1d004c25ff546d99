"""`Parameter` and `Module`: the base of every layer, with explicit, hand-written backward passes.

Unlike PyTorch there is no autograd graph: a layer's `forward` calls its op in
`diynn.functional`, which returns the output and a cache of what the derivative needs; the module
keeps that cache (`save_for_backward`) while gradients are wanted (see `grad_mode`), and
`backward(grad_output)` consumes the latest one, returns the gradient with respect to the input
and adds the parameters' gradients to their `.grad`. A module called twice before its backwards
holds two caches; the backwards consume them latest first, as autograd does for a shared layer.

Hooks (PyTorch's `register_forward_hook` and `register_backward_hook`) run where a module is called
as `module(x)` and `module.run_backward(grad)`: the way every container calls its children, and
Trainer the model. Calling `forward` or `backward` directly runs no hooks, as in PyTorch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

from . import backends
from .backends import backend_of
from .checks import check_gradient
from .grad_mode import PendingCaches


class Parameter:
    """A trainable array `data` and its accumulated gradient `grad` (None until a backward).

    `requires_grad = False` freezes it (as in PyTorch): layers skip its gradient, `accumulate`
    ignores one, and optimisers leave it alone; gradients still flow through to the layer's input.

    Args:
        data: the array.
        requires_grad: False freezes it.
    """

    __slots__ = ("data", "grad", "requires_grad")

    def __init__(self, data, requires_grad=True):
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)

    def accumulate(self, grad) -> None:
        """Add `grad` to `self.grad`, taking it as is when empty (frozen: ignored).

        Args:
            grad: of `data`'s shape and dtype.

        Raises:
            ValueError: another shape.
            TypeError: another dtype, or not an array.
        """
        if not self.requires_grad:
            return
        check_gradient(grad, self.data.shape, self.data.dtype, "Parameter.accumulate", "its parameter's")
        if self.grad is None:
            self.grad = grad
        else:
            self.grad += grad

    @property
    def shape(self):
        """`data`'s shape."""
        return self.data.shape

    def __repr__(self) -> str:
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


class RemovableHandle:
    """What `register_forward_hook` and `register_backward_hook` return: `remove()` takes the hook
    off its module (a second `remove()` does nothing)."""

    __slots__ = ("_hooks", "_key")
    _keys = itertools.count()

    def __init__(self, hooks: dict):
        self._hooks, self._key = hooks, next(RemovableHandle._keys)

    def remove(self) -> None:
        self._hooks.pop(self._key, None)


class Module(PendingCaches):
    """A differentiable function with parameters, buffers and child modules.

    Attributes that hold a `Parameter` or a `Module` are registered by assignment, as in
    PyTorch; non-trainable state saved with the model (running statistics) is registered
    with `register_buffer`. Unlike PyTorch there is no autograd: `backward(grad_output)` is
    called explicitly, after a forward, and returns d loss / d input.
    """

    # whether the input is integer indices (token ids): fit, predict and summary then keep integer
    # inputs integer instead of converting them to the parameters' dtype (an Embedding's is)
    takes_indices = False
    registry: dict[str, type] = {}  # the library's own modules by name: what load_model builds
    # Hooks by key, in the order registered; None until the first is registered, so a call without
    # hooks costs one attribute test.
    _forward_hooks: dict | None = None
    _backward_hooks: dict | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith("diynn.") and not cls.__name__.startswith("_"):
            Module.registry.setdefault(cls.__name__, cls)

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_buffers", set())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value) -> None:
        """Keep array `value` as `self.<name>`, saved in `state_dict` but not trained.

        Args:
            name: the attribute's name.
            value: the array (running statistics, for example).
        """
        self._buffers.add(name)
        object.__setattr__(self, name, value)

    # -- computation -------------------------------------------------------------------
    def forward(self, x):
        """The module's output for input `x` (what a subclass writes).

        A forward keeps its op's cache for `backward` while gradients are wanted: in training mode,
        or under `diynn.enable_grad()`.
        """
        raise NotImplementedError

    def backward(self, grad_output, input_grad=True):
        """d loss / d input, given d loss / d output; adds the parameters' gradients to their `.grad`.

        Each backward consumes the latest pending forward's cache.

        Args:
            grad_output: d loss / d output, of the output's shape and dtype.
            input_grad: False when the caller does not need d loss / d input (the model's first
                layer): a layer may skip computing it and return None.

        Returns:
            grad_input: d loss / d input, of the input's shape and dtype (or None).

        Raises:
            RuntimeError: no forward is pending (none ran, or it kept no cache: eval mode, or
                `diynn.no_grad()`).
        """
        raise NotImplementedError

    def __call__(self, x, *args, **kwargs):
        """`forward(x, *args, **kwargs)`, then the forward hooks: how containers call their children.

        The hooks see the positional inputs `(x, *args)`, not the keyword arguments (as PyTorch's).
        """
        y = self.forward(x, *args, **kwargs)
        if self._forward_hooks:
            for hook in tuple(self._forward_hooks.values()):  # a hook may remove itself
                result = hook(self, (x, *args), y)
                if result is not None:
                    y = result
        return y

    def run_backward(self, grad_output, input_grad=True):
        """`backward(grad_output, input_grad)`, then the backward hooks: how containers call their
        children's backward (and `Trainer` the model's).

        Args:
            grad_output: d loss / d output, of the output's shape and dtype.
            input_grad: False when the caller does not need d loss / d input (see `backward`).

        Returns:
            grad_input: what `backward` returned, or what a hook replaced it with: d loss / d input
                (or None), or a tuple of one gradient per input for a module of several inputs
                (MultiheadAttention's query, key and value).
        """
        grad_input = self.backward(grad_output, input_grad)
        if self._backward_hooks:
            several = isinstance(grad_input, tuple)  # one gradient per input: the hooks get the tuple as is
            for hook in tuple(self._backward_hooks.values()):
                result = hook(self, grad_input if several else (grad_input,), (grad_output,))
                if result is not None:
                    grad_input = _input_gradients(result, self, len(grad_input) if several else None)
        return grad_input

    def register_forward_hook(self, hook: Callable) -> RemovableHandle:
        """Call `hook(module, input, output)` after each forward of this module run as `module(x)`.

        As in PyTorch, `input` is a tuple of the positional inputs (x alone for most modules; query,
        key and value for a MultiheadAttention given all three) and a return value other than None
        replaces the output. Hooks run in the order registered; they are not saved with the
        model and not part of its `state_dict`.

        Args:
            hook: a callable of (module, input, output).

        Returns:
            handle: its `remove()` unregisters the hook.
        """
        return _registered(self, "_forward_hooks", hook)

    def register_backward_hook(self, hook: Callable) -> RemovableHandle:
        """Call `hook(module, grad_input, grad_output)` after each backward run as `run_backward`.

        As in PyTorch, `grad_input` and `grad_output` are tuples: grad_input of d loss / d input
        (None where the caller asked for none), one per input where `backward` returns several (a
        MultiheadAttention's query, key and value), else one; grad_output of d loss / d output. A
        return value other than None replaces grad_input (a tuple of as many arrays, or, for one
        input, the array). The hook runs
        after the module has added its parameters' gradients to their `.grad`. Hooks run in the
        order registered; they are not saved with the model.

        Args:
            hook: a callable of (module, grad_input, grad_output).

        Returns:
            handle: its `remove()` unregisters the hook.
        """
        return _registered(self, "_backward_hooks", hook)

    def wants_parameter_grads(self) -> bool:
        """Whether any of this module's own parameters is trained (not frozen)."""
        for parameter in self._parameters.values():  # a loop: any() of a generator costs twice as much per call
            if parameter.requires_grad:
                return True
        return False

    def accumulate_grads(self, **grads) -> None:
        """Add each gradient given by name to that parameter's `.grad`: `accumulate_grads(weight=gw, bias=gb)`.

        Args:
            **grads: {parameter name: its gradient}; None (not computed) is skipped.
        """
        for name, grad in grads.items():
            if grad is not None:
                self._parameters[name].accumulate(grad)

    def clear_pending(self) -> Module:
        """Forget the caches of forwards still waiting for a backward, in this module and below."""
        for module in self.modules():
            PendingCaches.clear_pending(module)
        return self

    # -- parameters and state ----------------------------------------------------------
    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) for each parameter once, e.g. ("0.weight", Parameter).

        A module shared by two branches has its parameters under its first name only, so an
        optimiser updates them once per step.

        Args:
            prefix: put before every name.

        Yields:
            (name, parameter): a dotted name and its Parameter.
        """
        seen = set()
        for name, parameter in self._every_parameter(prefix):
            if id(parameter) not in seen:
                seen.add(id(parameter))
                yield name, parameter

    def _every_parameter(self, prefix: str):
        for name, parameter in self._parameters.items():
            yield prefix + name, parameter
        for name, module in self._modules.items():
            yield from module._every_parameter(f"{prefix}{name}.")

    def parameters(self) -> list[Parameter]:
        """Every parameter once, in the order of `named_parameters` (what an optimiser takes)."""
        return [parameter for _, parameter in self.named_parameters()]

    def modules(self) -> Iterator[Module]:
        """This module and all its descendants, depth first."""
        yield self
        for module in self._modules.values():
            yield from module.modules()

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for this module and its descendants, depth first, each once: a
        module shared by two branches under its first name only (as PyTorch's).

        Args:
            prefix: this module's name, and the start of its descendants' ("encoder" gives "encoder",
                "encoder.0", ...; "" gives "", "0", ...).

        Yields:
            (name, module): a dotted name ("" for this module without a prefix) and its Module.
        """
        seen = set()

        def visit(module, name):
            if id(module) in seen:
                return
            seen.add(id(module))
            yield name, module
            for child_name, child in module._modules.items():
                yield from visit(child, f"{name}.{child_name}" if name else child_name)

        yield from visit(self, prefix)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (False) or unfreeze (True) every parameter, in place; returns the module. A frozen
        module still passes gradients to its input: a fixed feature extractor, a perceptual loss."""
        for parameter in self.parameters():
            parameter.requires_grad = bool(requires_grad)
            parameter.grad = None
        return self

    def freeze(self) -> Module:
        """`requires_grad_(False)` and eval mode: fixed weights and fixed statistics."""
        return self.requires_grad_(False).eval()

    def zero_grad(self) -> None:
        """Forget accumulated gradients (they become None, as in PyTorch's default)."""
        for parameter in self.parameters():
            parameter.grad = None

    def train(self, mode: bool = True) -> Module:
        """Training mode (True) or eval mode (False) for this module and every one below; returns it.

        Eval mode: batch norm uses its running statistics, dropout passes its input on, and a
        forward keeps no cache (unless under `diynn.enable_grad()`).
        """
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        """`train(False)`: eval mode; returns the module."""
        return self.train(False)

    def _named_state(self, prefix: str = ""):
        for name, parameter in self._parameters.items():
            yield prefix + name, parameter.data
        for name in sorted(self._buffers):
            yield prefix + name, getattr(self, name)
        for name, module in self._modules.items():
            yield from module._named_state(f"{prefix}{name}.")

    def state_dict(self) -> dict:
        """A snapshot (copies) of every parameter and buffer, by dotted name."""
        return {name: backend_of(value).xp.asarray(value, copy=True) for name, value in self._named_state()}

    def load_state_dict(self, state: dict) -> None:
        """Copy arrays from `state` into the parameters and buffers, converted to their dtypes.

        Args:
            state: {dotted name: array} (backend or NumPy arrays), as `state_dict` gives it.

        Raises:
            KeyError: missing or unexpected entries (named).
            ValueError: an entry of another shape, or not real floating point.
        """
        current = dict(self._named_state())
        missing = sorted(set(current) - set(state))
        unexpected = sorted(set(state) - set(current))
        if missing or unexpected:
            expected = ", ".join(f"{name!r} of shape {tuple(current[name].shape)}" for name in missing) or "none"
            raise KeyError(f"state_dict mismatch: missing {expected}; unexpected {unexpected}")
        for name, value in state.items():
            if not _real_floating(value):
                raise ValueError(
                    f"state_dict entry {name!r} has dtype {value.dtype}; weights must be real floating point"
                )
            if tuple(value.shape) != tuple(current[name].shape):
                raise ValueError(
                    f"state_dict entry {name!r} has shape {tuple(value.shape)}, "
                    f"the model expects {tuple(current[name].shape)}"
                )
        for name, value in state.items():
            owner, attribute = self._owner_of(name)
            backend = backend_of(current[name])
            array = backend.xp.asarray(backend.asarray(value, dtype=current[name].dtype), copy=True)
            if attribute in owner._parameters:
                owner._parameters[attribute].data = array
            else:
                object.__setattr__(owner, attribute, array)

    def _owner_of(self, dotted: str):
        *path, attribute = dotted.split(".")
        owner = self
        for part in path:
            owner = owner._modules[part]
        return owner, attribute

    def astype(self, dtype) -> Module:
        """Convert every parameter and floating buffer to `dtype` (e.g. float64 for gradcheck), in place.

        Gradients are dropped. Returns the module.
        """
        for module in self.modules():
            for parameter in module._parameters.values():
                parameter.data = backend_of(parameter.data).xp.astype(parameter.data, dtype)
                parameter.grad = None
            for name in module._buffers:
                value = getattr(module, name)
                xp = backend_of(value).xp
                if xp.isdtype(value.dtype, "real floating"):
                    object.__setattr__(module, name, xp.astype(value, dtype))
        return self

    def to(self, backend) -> Module:
        """Move every parameter and buffer to `backend` (a name such as "cupy", or a Backend), in
        place, and return the module. Gradients are dropped; build the optimiser after moving
        (its state lives where the parameters were)."""
        target = backends.get(backend)
        for module in self.modules():
            for parameter in module._parameters.values():
                parameter.data = _moved(parameter.data, target)
                parameter.grad = None
            for name in module._buffers:
                object.__setattr__(module, name, _moved(getattr(module, name), target))
        return self

    @property
    def backend(self):
        """The backend this module's parameters live on (None for a module without any)."""
        parameters = self.parameters()
        return backend_of(parameters[0].data) if parameters else None

    # -- architecture, for saving ------------------------------------------------------
    def config(self) -> dict:
        """Constructor arguments that rebuild this module (JSON values or modules), by name.

        What `save_model` stores and `from_config` builds from; a layer of your own with constructor
        arguments overrides it.
        """
        return {}

    @classmethod
    def stored_size(cls, config: dict) -> int:
        """How many numbers a module of this config keeps in its own parameters and buffers
        (not its children's): checked against a model file before anything is allocated."""
        return 0

    @classmethod
    def from_config(cls, config: dict) -> Module:
        """A new module built from `config()`'s output (fresh parameters)."""
        return cls(**config)

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.config().items())

    def __repr__(self) -> str:
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"  ({name}): {module!r}".replace("\n", "\n  ") for name, module in self._modules.items()]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


def _registered(module, attribute: str, hook) -> RemovableHandle:
    """Add `hook` to the module's hooks named `attribute` (made on the first); its handle."""
    if not callable(hook):
        raise TypeError(f"a hook must be callable, got {type(hook).__name__}")
    hooks = module.__dict__.get(attribute)
    if hooks is None:
        hooks = {}
        object.__setattr__(module, attribute, hooks)
    handle = RemovableHandle(hooks)
    hooks[handle._key] = hook
    return handle


def _input_gradients(result, module, inputs):
    """The input gradient a backward hook returned: a tuple of one (as PyTorch's), or the array; for a
    module whose backward returns `inputs` gradients (None: one), a tuple of as many."""
    if inputs is not None:
        if not isinstance(result, (tuple, list)) or len(result) != inputs:
            given = f"{len(result)} input gradients" if isinstance(result, (tuple, list)) else type(result).__name__
            raise ValueError(
                f"a backward hook of {type(module).__name__} returned {given}; "
                f"its backward returns {inputs}: return a tuple of {inputs} arrays"
            )
        return tuple(result)
    if isinstance(result, (tuple, list)):
        if len(result) != 1:
            raise ValueError(
                f"a backward hook of {type(module).__name__} returned {len(result)} input gradients; "
                "a module has one input: return a tuple of one array, or the array"
            )
        return result[0]
    return result


def _moved(array, target):
    """`array` copied onto backend `target` with its dtype (itself if it is there already)."""
    source = backend_of(array)
    if source is target:
        return array
    host = source.to_numpy(array)
    return target.asarray(host, dtype=getattr(target.xp, host.dtype.name))


def _real_floating(array) -> bool:
    """Whether `array` (of any backend, or NumPy) holds real floating-point numbers."""
    kind = getattr(array.dtype, "kind", None)  # NumPy and CuPy dtypes
    if kind is not None:
        return kind == "f"
    return backend_of(array).xp.isdtype(array.dtype, "real floating")
