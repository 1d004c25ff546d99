"""PyTorch references of models built from diynn's layers, for the parity tests: `torch_copy(model)`
is the torch.nn module that computes what `model` computes, with the same parameter names (load
`model.state_dict()` into it). Written independently of diynn.inspection's own copy, which the
inspection tests check against it. `TorchViT` is diynn.vit()'s network written as in PyTorch, with
torch's own TransformerEncoderLayer blocks (`vit_names` maps the names). Import it after
`pytest.importorskip("torch")`."""

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


class TorchSelfAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention called as diynn's inside a Sequential: self-attention of one input, the
    output alone (need_weights=False)."""

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


class TorchViT(nn.Module):
    """diynn.vit()'s network written as in PyTorch, independently of diynn's layers: a strided
    Conv2d, torch's own pre-norm nn.TransformerEncoderLayer blocks (GELU, batch first), a final
    LayerNorm, mean pooling or the class token, a Linear head. Its names are torch's: `vit_names`
    maps diynn's onto them."""

    def __init__(self, image_size, patch_size, embed_dim, depth, num_heads, hidden, classes, pooling, in_channels=1):
        super().__init__()
        self.pooling = pooling
        self.conv_proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)
        length = (image_size // patch_size) ** 2 + (pooling == "class")
        if pooling == "class":
            self.class_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embedding = nn.Parameter(torch.zeros(1, length, embed_dim))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                embed_dim, num_heads, hidden, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, classes)

    def forward(self, images):
        x = self.conv_proj(images).flatten(2).transpose(1, 2)  # (N, E, h, w) -> (N, h w, E)
        if self.pooling == "class":
            x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embedding
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        return self.head(x.mean(dim=1) if self.pooling == "mean" else x[:, 0])


def vit_names(depth, pooling="mean"):
    """{diynn.vit()'s parameter name: TorchViT's} for a vit of `depth` blocks."""
    names = {"0.weight": "conv_proj.weight", "0.bias": "conv_proj.bias"}
    first = 3
    if pooling == "class":
        names["3.weight"] = "class_token"
        first = 4
    names[f"{first}.weight"] = "pos_embedding"
    block_names = {
        "0.block.0": "norm1",
        "0.block.1.in_proj_weight": "self_attn.in_proj_weight",
        "0.block.1.in_proj_bias": "self_attn.in_proj_bias",
        "0.block.1.out_proj": "self_attn.out_proj",
        "1.block.0": "norm2",
        "1.block.1": "linear1",
        "1.block.3": "linear2",
    }
    for index in range(depth):
        for ours, theirs in block_names.items():
            suffixes = ("",) if "in_proj" in ours else (".weight", ".bias")
            for suffix in suffixes:
                names[f"{first + 1 + index}.{ours}{suffix}"] = f"layers.{index}.{theirs}{suffix}"
    last = first + 1 + depth
    for suffix in (".weight", ".bias"):
        names[f"{last}{suffix}"] = f"norm{suffix}"
        names[f"{last + 2}{suffix}"] = f"head{suffix}"
    return names


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
    if kind == "Flatten":
        return nn.Flatten(module.start_dim, module.end_dim)
    if kind == "LayerNorm":
        return nn.LayerNorm(
            module.normalized_shape, module.eps, module.elementwise_affine, bias=module.bias is not None
        )
    if kind == "GELU":
        return nn.GELU(module.approximate)
    if kind == "MultiheadAttention":
        bias = module.in_proj_bias is not None
        return TorchSelfAttention(module.embed_dim, module.num_heads, module.dropout, bias, batch_first=True)
    if kind == "Permute":
        return TorchPermute(module.dims)
    if kind == "PositionEmbedding":
        return TorchPositionEmbedding(module.length, module.embed_dim)
    if kind == "ClassToken":
        return TorchClassToken(module.embed_dim)
    if kind == "TokenPool":
        return TorchTokenPool(module.mode)
    simple = {"ReLU": nn.ReLU, "Tanh": nn.Tanh, "Sigmoid": nn.Sigmoid, "Identity": nn.Identity, "SiLU": nn.SiLU}
    return simple[kind]()
