"""PyTorch references of models built from diynn's layers, for the parity tests: `torch_copy(model)`
is the torch.nn module that computes what `model` computes, with the same parameter names (load
`model.state_dict()` into it). Written independently of diynn.inspection's own copy, which the
inspection tests check against it. Import it after `pytest.importorskip("torch")`."""

import torch
from torch import nn


class TorchResidual(nn.Module):
    def __init__(self, block, shortcut):
        super().__init__()
        self.block, self.shortcut = block, shortcut

    def forward(self, x):
        return self.block(x) + self.shortcut(x)


class TorchConcat(nn.Module):
    def __init__(self, branches, axis):
        super().__init__()
        self.branches, self.axis = nn.ModuleList(branches), axis
        for index, branch in enumerate(branches):  # PyTorch's names are diynn's: "0", "1", ...
            self.add_module(str(index), branch)
        del self._modules["branches"]

    def forward(self, x):
        return torch.cat([getattr(self, str(i))(x) for i in range(len(self._modules))], dim=self.axis)


class TorchAutoencoder(nn.Module):
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, x):
        return self.decoder(self.encoder(x))


def torch_copy(module):
    """The torch.nn module that computes what `module` (built from library layers) computes, with
    the same parameter names (weights not yet loaded)."""
    kind = type(module).__name__
    if kind == "Sequential":
        return nn.Sequential(*[torch_copy(layer) for layer in module.layers])
    if kind == "Residual":
        return TorchResidual(torch_copy(module.block), torch_copy(module.shortcut))
    if kind == "Concat":
        return TorchConcat([torch_copy(branch) for branch in module.branches], module.axis)
    if kind == "Autoencoder":
        return TorchAutoencoder(torch_copy(module.encoder), torch_copy(module.decoder))
    if kind in ("Conv2d", "ConvTranspose2d"):
        geometry = (module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding)
        if kind == "Conv2d":
            geometry += (module.dilation, module.groups)
        else:
            geometry += (module.output_padding,)
        return getattr(nn, kind)(*geometry, bias=module.bias is not None)
    if kind == "Linear":
        return nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    if kind in ("BatchNorm1d", "BatchNorm2d"):
        return getattr(nn, kind)(module.num_features, eps=module.eps, momentum=module.momentum)
    if kind == "AdaptiveAvgPool2d":
        return nn.AdaptiveAvgPool2d(module.output_size)
    if kind == "MaxPool2d":
        return nn.MaxPool2d(module.kernel_size, module.stride, module.padding)
    if kind == "Dropout":
        return nn.Dropout(module.p)
    if kind == "Unflatten":
        return nn.Unflatten(1, module.shape)
    if kind == "LeakyReLU":
        return nn.LeakyReLU(module.negative_slope)
    simple = {"ReLU": nn.ReLU, "Tanh": nn.Tanh, "Sigmoid": nn.Sigmoid, "Identity": nn.Identity, "Flatten": nn.Flatten}
    return simple[kind]()
