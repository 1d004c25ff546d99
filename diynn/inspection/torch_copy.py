"""The PyTorch copy of a model built from the library's layers: a torch.nn module per diynn module,
with the same parameter names and the weights copied, for `compare_with_torch`.

PyTorch is imported when a copy is made, never when diynn is imported.
"""

from __future__ import annotations

from ..autoencoder import Autoencoder
from ..backends import backend_of
from ..layers import (
    GELU,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    ClassToken,
    Concat,
    Conv1d,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Embedding,
    Flatten,
    Identity,
    LayerNorm,
    LeakyReLU,
    Linear,
    MaxPool1d,
    MaxPool2d,
    MultiheadAttention,
    Permute,
    PositionEmbedding,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
    TokenPool,
    Unflatten,
    Upsample,
)
from ..module import Module

INSTALL = "pip install torch (or the project's extra: pip install -e '.[torch]')"


def import_torch():
    """The torch package, or an ImportError that says how to install it."""
    try:
        import torch
    except ImportError as error:
        raise ImportError(f"comparing with PyTorch needs PyTorch, which is not installed: {INSTALL}") from error
    return torch


def as_torch(array):
    """A float64 torch tensor (on the CPU) with the values of a backend array: for module factories.

    Args:
        array: a NumPy, CuPy or array-api-strict array.

    Returns:
        tensor: a torch.float64 tensor of its shape, a copy.
    """
    torch = import_torch()
    return torch.tensor(backend_of(array).to_numpy(array), dtype=torch.float64)


class Copy:
    """A PyTorch copy of a diynn model: `root`, and for each diynn module that has its own torch
    module, that module (`torch_of[id(module)]`). A module mapped by a factory of the caller's is a
    leaf: its children are inside its torch module and have none of their own."""

    def __init__(self, modules):
        for cls, factory in (modules or {}).items():
            if not (isinstance(cls, type) and issubclass(cls, Module)) or not callable(factory):
                raise TypeError(f"modules= maps diynn Module classes to factories, got {cls!r}: {factory!r}")
        self.factories = {**_BUILT_IN, **{cls: _leaf(factory) for cls, factory in (modules or {}).items()}}
        self.torch_of, self.leaves = {}, set()
        self.users = set(modules or {})
        self.root = None

    def build(self, module: Module, path: str = ""):
        if id(module) in self.torch_of:  # shared by two branches: shared in the copy too
            return self.torch_of[id(module)]
        factory = self.factories.get(type(module))
        if factory is None:
            name, place = type(module).__name__, repr(path) if path else "the root"
            raise TypeError(
                f"compare_with_torch has no PyTorch counterpart for {name} (at {place}); give one "
                f"with modules={{{name}: factory}}, factory({name} module) -> a torch.nn.Module computing the "
                "same function, with the weights copied (diynn.inspection.as_torch converts an array)"
            )
        if type(module) in self.users or type(module) in _WHOLE or not module._modules:
            self.leaves.add(id(module))
        copied = factory(module, lambda child, name: self.build(child, f"{path}.{name}" if path else name))
        if not isinstance(copied, import_torch().nn.Module):
            raise TypeError(
                f"the factory for {type(module).__name__} returned {type(copied).__name__}, not a torch.nn.Module"
            )
        self.torch_of[id(module)] = copied
        return copied


def torch_copy(model: Module, modules=None):
    """The PyTorch copy of `model`, in float64, weights and running statistics copied.

    Args:
        model: a Module made of library layers (and of classes in `modules`).
        modules: {diynn class: factory}, factory(module) -> a torch.nn.Module computing what the
            module computes, with its weights copied; the caller's own layers.

    Returns:
        copy: a `Copy`; `copy.root` the torch.nn.Module of the whole model.

    Raises:
        TypeError: a module of a class with no factory (the message names it and `modules=`).
    """
    torch = import_torch()
    copy = Copy(modules)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # factories that make their own modules make float64 ones
    try:
        copy.root = copy.build(model).double()
    finally:
        torch.set_default_dtype(previous)
    return copy


def _leaf(factory):
    return lambda module, child: factory(module)


def _weights(copied, module):
    """Copy `module`'s parameters and buffers into the torch module of the same names."""
    torch = import_torch()
    with torch.no_grad():
        for name, parameter in module._parameters.items():
            if parameter is not None:
                target = getattr(copied, name)
                target.copy_(as_torch(parameter.data).reshape(target.shape))
                target.requires_grad_(parameter.requires_grad)
        for name in module._buffers:
            getattr(copied, name).copy_(as_torch(getattr(module, name)))
    return copied


def _torch_modules():
    """The torch.nn classes of the library's containers (made on first use: torch is optional)."""
    global _CONTAINERS
    if _CONTAINERS is None:
        nn = import_torch().nn

        class TorchResidual(nn.Module):
            def __init__(self, block, shortcut):
                super().__init__()
                self.block, self.shortcut = block, shortcut

            def forward(self, x):
                return self.block(x) + self.shortcut(x)

        class TorchConcat(nn.Module):
            def __init__(self, branches, axis):
                super().__init__()
                for index, branch in enumerate(branches):  # diynn's names: "0", "1", ...
                    self.add_module(str(index), branch)
                self.axis = axis

            def forward(self, x):
                return import_torch().cat([branch(x) for branch in self.children()], dim=self.axis)

        class TorchAutoencoder(nn.Module):
            def __init__(self, encoder, decoder):
                super().__init__()
                self.encoder, self.decoder = encoder, decoder

            def forward(self, x):  # the noise of a denoising autoencoder is compared switched off
                return self.decoder(self.encoder(x))

        _CONTAINERS = {"Residual": TorchResidual, "Concat": TorchConcat, "Autoencoder": TorchAutoencoder}
    return _CONTAINERS


_CONTAINERS = None


def _torch_layers():
    """torch.nn classes for the layers torch.nn lacks or calls otherwise (made on first use)."""
    global _LAYERS
    if _LAYERS is None:
        torch, nn = import_torch(), import_torch().nn

        class TorchSelfAttention(nn.MultiheadAttention):
            """Called as diynn's in a Sequential: self-attention of one input, the output alone."""

            def forward(self, x):
                return super().forward(x, x, x, need_weights=False)[0]

        class TorchPermute(nn.Module):
            def __init__(self, dims):
                super().__init__()
                self.dims = dims

            def forward(self, x):
                return x.permute(*self.dims)

        class TorchPositionEmbedding(nn.Module):
            def __init__(self, length, embed_dim):
                super().__init__()
                self.weight = nn.Parameter(torch.zeros(1, length, embed_dim))

            def forward(self, x):
                return x + self.weight

        class TorchClassToken(nn.Module):
            def __init__(self, embed_dim):
                super().__init__()
                self.weight = nn.Parameter(torch.zeros(1, 1, embed_dim))

            def forward(self, x):
                return torch.cat([self.weight.expand(x.shape[0], -1, -1), x], dim=1)

        class TorchTokenPool(nn.Module):
            def __init__(self, mode):
                super().__init__()
                self.mode = mode

            def forward(self, x):
                return x.mean(dim=1) if self.mode == "mean" else x[:, 0]

        _LAYERS = {
            "SelfAttention": TorchSelfAttention,
            "Permute": TorchPermute,
            "PositionEmbedding": TorchPositionEmbedding,
            "ClassToken": TorchClassToken,
            "TokenPool": TorchTokenPool,
        }
    return _LAYERS


_LAYERS = None


def _nn():
    return import_torch().nn


def _conv2d(m, child):
    nn = _nn()
    geometry = dict(stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups)
    return _weights(nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, **geometry, bias=m.bias is not None), m)


def _conv1d(m, child):
    geometry = dict(stride=m.stride[1], padding=m.padding[1], dilation=m.dilation[1], groups=m.groups)
    copied = _nn().Conv1d(m.in_channels, m.out_channels, m.kernel_size[1], **geometry, bias=m.bias is not None)
    return _weights(copied, m)


def _conv_transpose2d(m, child):
    geometry = dict(stride=m.stride, padding=m.padding, output_padding=m.output_padding, groups=m.groups)
    copied = _nn().ConvTranspose2d(m.in_channels, m.out_channels, m.kernel_size, **geometry, bias=m.bias is not None)
    return _weights(copied, m)


def _batch_norm(kind):
    return lambda m, child: _weights(getattr(_nn(), kind)(m.num_features, eps=m.eps, momentum=m.momentum), m)


def _layer_norm(m, child):
    bias = m.bias is not None
    return _weights(_nn().LayerNorm(m.normalized_shape, m.eps, m.elementwise_affine, bias=bias), m)


def _self_attention(m, child):
    # torch's forward uses out_proj's weights without calling it: the attention is compared whole
    bias = m.in_proj_bias is not None
    copied = _torch_layers()["SelfAttention"](m.embed_dim, m.num_heads, m.dropout, bias, batch_first=m.batch_first)
    _weights(copied.out_proj, m.out_proj)
    return _weights(copied, m)


def _upsample(m, child):
    scale = tuple(float(s) for s in m.scale_factor) if isinstance(m.scale_factor, list) else float(m.scale_factor)
    corners = m.align_corners if m.mode == "bilinear" else None
    return _nn().Upsample(scale_factor=scale, mode=m.mode, align_corners=corners)


_BUILT_IN = {
    Sequential: lambda m, child: _nn().Sequential(*[child(layer, str(i)) for i, layer in enumerate(m.layers)]),
    Residual: lambda m, child: _torch_modules()["Residual"](child(m.block, "block"), child(m.shortcut, "shortcut")),
    Concat: lambda m, child: _torch_modules()["Concat"]([child(b, str(i)) for i, b in enumerate(m.branches)], m.axis),
    Autoencoder: lambda m, child: _torch_modules()["Autoencoder"](
        child(m.encoder, "encoder"), child(m.decoder, "decoder")
    ),
    Linear: lambda m, child: _weights(_nn().Linear(m.in_features, m.out_features, bias=m.bias is not None), m),
    Conv2d: _conv2d,
    Conv1d: _conv1d,
    ConvTranspose2d: _conv_transpose2d,
    BatchNorm1d: _batch_norm("BatchNorm1d"),
    BatchNorm2d: _batch_norm("BatchNorm2d"),
    MaxPool2d: lambda m, child: _nn().MaxPool2d(m.kernel_size, m.stride, m.padding),
    MaxPool1d: lambda m, child: _nn().MaxPool1d(m.kernel_size[1], m.stride[1], m.padding[1]),
    AvgPool2d: lambda m, child: _nn().AvgPool2d(m.kernel_size, m.stride, m.padding),  # padding counted, as ours
    AdaptiveAvgPool2d: lambda m, child: _nn().AdaptiveAvgPool2d(tuple(m.output_size)),
    Upsample: _upsample,
    Dropout: lambda m, child: _nn().Dropout(m.p),  # compared in eval mode: the identity
    Identity: lambda m, child: _nn().Identity(),
    Flatten: lambda m, child: _nn().Flatten(m.start_dim, m.end_dim),
    Unflatten: lambda m, child: _nn().Unflatten(1, m.shape),
    ReLU: lambda m, child: _nn().ReLU(),
    LeakyReLU: lambda m, child: _nn().LeakyReLU(m.negative_slope),
    Tanh: lambda m, child: _nn().Tanh(),
    Sigmoid: lambda m, child: _nn().Sigmoid(),
    Softmax: lambda m, child: _nn().Softmax(dim=m.axis),
    GELU: lambda m, child: _nn().GELU(m.approximate),
    SiLU: lambda m, child: _nn().SiLU(),
    LayerNorm: _layer_norm,
    Embedding: lambda m, child: _weights(
        _nn().Embedding(m.num_embeddings, m.embedding_dim, padding_idx=m.padding_idx), m
    ),
    MultiheadAttention: _self_attention,  # self-attention only: one input, as in a Sequential
    Permute: lambda m, child: _torch_layers()["Permute"](m.dims),
    PositionEmbedding: lambda m, child: _weights(_torch_layers()["PositionEmbedding"](m.length, m.embed_dim), m),
    ClassToken: lambda m, child: _weights(_torch_layers()["ClassToken"](m.embed_dim), m),
    TokenPool: lambda m, child: _torch_layers()["TokenPool"](m.mode),
}
# library classes whose torch module runs their children inside it, unobserved: compared as a whole
_WHOLE = {MultiheadAttention}
