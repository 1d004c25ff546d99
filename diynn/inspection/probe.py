"""Running a model under observation: its tree of layers, each call recorded, and the model left
exactly as it was afterwards.

Nothing here uses hooks of the library: a layer's `forward` (and `backward`) is wrapped on the
instance for the time of the observation, which works for every container, the library's or a
user's, since they all call their children's `forward` and `backward`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NamedTuple

from ..backends import Generator, backend_of
from ..module import Module


class Node(NamedTuple):
    """One place in a model's tree of modules.

    path: the dotted names from the root ("" for the root, "3.block.1" deeper), the prefix of the
    module's parameters in `state_dict`; depth: 0 for the root; module: the module there.
    """

    path: str
    depth: int
    module: Module


def tree(model: Module) -> Iterator[Node]:
    """Every module of `model` with its path, depth first, parents before their children.

    A module that sits in two places (shared by two branches) comes at both.
    """

    def visit(module, path, depth):
        yield Node(path, depth, module)
        for name, child in module._modules.items():
            yield from visit(child, f"{path}.{name}" if path else name, depth + 1)

    yield from visit(model, "", 0)


def unique_modules(model: Module) -> list[Module]:
    """The modules of `model`, each once, in the order of `tree`."""
    seen, modules = set(), []
    for node in tree(model):
        if id(node.module) not in seen:
            seen.add(id(node.module))
            modules.append(node.module)
    return modules


class Call(NamedTuple):
    """One call of a module's forward or backward: what went in and what came out.

    For a forward, `given` is the input and `returned` the output; for a backward, `given` is
    d loss / d output and `returned` d loss / d input (None where the caller did not ask for it).
    """

    module: Module
    given: object
    returned: object


@contextlib.contextmanager
def recording(model: Module, backward: bool = False):
    """Within the block, every call of a module's `forward` (and `backward`, when asked) is appended
    to the list this yields, in the order the calls *return*: children before their container.

    Args:
        model: the root module; its whole tree is observed.
        backward: record backward calls too.

    Yields:
        (forwards, backwards): two lists of `Call`, filled while the block runs.
    """
    forwards, backwards = [], []
    wrapped = []
    for module in unique_modules(model):
        for name, calls in (("forward", forwards), ("backward", backwards if backward else None)):
            if calls is None:
                continue
            previous = module.__dict__.get(name)
            module.__dict__[name] = _recorded(module, getattr(module, name), calls)
            wrapped.append((module, name, previous))
    try:
        yield forwards, backwards
    finally:
        for module, name, previous in wrapped:
            if previous is None:
                module.__dict__.pop(name, None)
            else:
                module.__dict__[name] = previous


def _recorded(module, method, calls):
    def recorded(given, *args, **kwargs):
        returned = method(given, *args, **kwargs)
        calls.append(Call(module, given, returned))
        return returned

    return recorded


@contextlib.contextmanager
def preserved(model: Module, *others):
    """Within the block a model (and losses, `others`) may be run, converted and trained on; at its
    end each is as it was.

    Restored: every attribute of every module (training modes, buffers, the pending caches of
    forwards waiting for a backward: a run inside starts with none), and each parameter's data,
    gradient and `requires_grad`. Inside, buffers are copies (a forward that updates them in place,
    as batch normalisation's running statistics, changes the copies only) and random generators
    (Dropout's masks, an Autoencoder's noise) are fresh ones seeded with 0 on the same backend, so
    that the model's own streams do not move.
    """
    objects = [*unique_modules(model), *others]
    saved = [dict(item.__dict__) for item in objects]
    parameters = [(p, p.data, p.grad, p.requires_grad) for m in unique_modules(model) for p in m._parameters.values()]
    try:
        for item in objects:
            item.__dict__["_pending"], item.__dict__["_dropped"] = [], 0
            for name, value in list(item.__dict__.items()):
                if _is_generator(value):
                    item.__dict__[name] = value.backend.rng(0)
        for module in unique_modules(model):
            for name in module._buffers:
                value = getattr(module, name)
                object.__setattr__(module, name, backend_of(value).xp.asarray(value, copy=True))
        yield
    finally:
        for item, attributes in zip(objects, saved):
            item.__dict__.clear()
            item.__dict__.update(attributes)
        for parameter, data, grad, requires_grad in parameters:
            parameter.data, parameter.grad, parameter.requires_grad = data, grad, requires_grad


def _is_generator(value) -> bool:
    """Whether `value` is one of the backends' random generators."""
    return isinstance(value, Generator)


def pending_caches(module) -> list:
    """The caches `module` keeps for backwards still to come (its own, not its children's)."""
    return list(module.__dict__.get("_pending", ()))
