"""Containers: Sequential (modules one after another), and the branching ones, Residual (outputs
added) and Concat (outputs concatenated), with Identity. Where branches meet in the forward, their
gradients add up in the backward: each container's backward writes that sum out."""

from __future__ import annotations

from .. import functional as F
from ..module import Module


class Sequential(Module):
    """y = f_n(... f_2(f_1(x))); backward runs the layers in reverse order.

    Indexing gives a layer (a slice, a new Sequential of those layers); `len` and iteration run over
    the layers.

    Args:
        *layers: the modules f_1, ..., f_n, applied in this order.

    Raises:
        TypeError: a layer that is not a Module.
    """

    def __init__(self, *layers: Module):
        super().__init__()
        for index, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential item {index} is {type(layer).__name__}, not a Module")
            setattr(self, str(index), layer)
        object.__setattr__(self, "layers", list(layers))

    @property
    def takes_indices(self) -> bool:
        """Whether the first layer takes integer indices (an Embedding's token ids)."""
        return bool(self.layers) and self.layers[0].takes_indices

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, grad_output, input_grad=True):
        if not self.layers:
            return grad_output
        for layer in reversed(self.layers[1:]):
            grad_output = layer.run_backward(grad_output)
        return self.layers[0].run_backward(grad_output, input_grad)

    def config(self):
        return {"layers": list(self.layers)}

    @classmethod
    def from_config(cls, config):
        layers = config["layers"]
        if not isinstance(layers, list):
            raise TypeError(f"Sequential's layers must be a list of modules, got {type(layers).__name__}")
        return cls(*layers)

    def extra_repr(self):
        return ""

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*self.layers[index])
        return self.layers[index]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)


class Identity(Module):
    """y = x: the shortcut of a residual block, or a branch that passes its input on."""

    def forward(self, x):
        return x

    def backward(self, grad_output, input_grad=True):
        return grad_output if input_grad else None


def _add_up(grads):
    """The sum of the input gradients that came back from the branches of a fork (None when no
    input gradient was asked for)."""
    grads = [g for g in grads if g is not None]
    if not grads:
        return None
    total = grads[0]
    for grad in grads[1:]:
        total = total + grad
    return total


class Residual(Module):
    """y = block(x) + shortcut(x): a residual connection.

    Backward: both branches get dL/dy, and the input gradients they return add up,
    dL/dx = dL/dx|block + dL/dx|shortcut. A module may sit in both branches (its caches stack); a
    saved model holds it twice, with equal weights. A forward whose branches' outputs differ in
    shape raises ValueError.

    Args:
        block: the residual branch.
        shortcut: the other branch; None (default): the identity. Where the block changes the
            shape, a 1x1 convolution and a batch norm that make the block's shape.

    Raises:
        TypeError: a branch that is not a Module.
    """

    def __init__(self, block: Module, shortcut: Module | None = None):
        super().__init__()
        for name, module in (("block", block), ("shortcut", shortcut)):
            if module is not None and not isinstance(module, Module):
                raise TypeError(f"Residual's {name} must be a Module, got {type(module).__name__}")
        self.block = block
        self.shortcut = shortcut if shortcut is not None else Identity()

    def forward(self, x):
        block, shortcut = self.block(x), self.shortcut(x)
        if tuple(block.shape) != tuple(shortcut.shape):
            raise ValueError(
                f"Residual: the block's output {tuple(block.shape)} and the shortcut's {tuple(shortcut.shape)} "
                "differ in shape; give a shortcut that makes the block's shape (e.g. a 1x1 Conv2d with its stride)"
            )
        y, cache = F.add(block, shortcut)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        grad_block, grad_shortcut = F.add_backward(self.saved_for_backward(), grad_output)
        # the reverse of the forward's order: a module in both branches pops its caches last-in first
        from_shortcut = self.shortcut.run_backward(grad_shortcut, input_grad)
        return _add_up([self.block.run_backward(grad_block, input_grad), from_shortcut])

    def config(self):
        shortcut = None if isinstance(self.shortcut, Identity) else self.shortcut
        return {"block": self.block, "shortcut": shortcut}

    def extra_repr(self):
        return ""


class Concat(Module):
    """y = the branches' outputs concatenated along `axis`, each branch applied to the same input.

    Backward: each branch gets its slice of dL/dy, and the input gradients they return add up.

    Args:
        *branches: one or more modules, whose outputs agree on every axis but `axis`.
        axis: the axis to concatenate along (default 1: the channels).

    Raises:
        ValueError: no branches.
        TypeError: a branch that is not a Module, or an axis that is not an integer.
    """

    def __init__(self, *branches: Module, axis: int = 1):
        super().__init__()
        if not branches:
            raise ValueError("Concat needs at least one branch")
        for index, branch in enumerate(branches):
            if not isinstance(branch, Module):
                raise TypeError(f"Concat branch {index} is {type(branch).__name__}, not a Module")
            setattr(self, str(index), branch)
        object.__setattr__(self, "branches", list(branches))
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"Concat's axis must be an integer, got {axis!r}")
        self.axis = axis

    def forward(self, x):
        y, cache = F.concat([branch(x) for branch in self.branches], axis=self.axis)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        grads = F.concat_backward(self.saved_for_backward(), grad_output)
        # the reverse of the forward's order: a module in several branches pops its caches last-in first
        returned = [branch.run_backward(grad, input_grad) for branch, grad in reversed(list(zip(self.branches, grads)))]
        return _add_up(returned)

    def config(self):
        return {"branches": list(self.branches), "axis": self.axis}

    @classmethod
    def from_config(cls, config):
        branches = config["branches"]
        if not isinstance(branches, list):
            raise TypeError(f"Concat's branches must be a list of modules, got {type(branches).__name__}")
        return cls(*branches, axis=config.get("axis", 1))

    def extra_repr(self):
        return f"axis={self.axis}"
