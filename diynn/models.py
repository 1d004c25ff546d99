"""Ready-made models used by the experiments, built from the public layers."""

from . import arguments
from .autoencoder import Autoencoder
from .init import as_generator
from .layers import (
    GELU,
    AdaptiveAvgPool2d,
    BatchNorm2d,
    ClassToken,
    Concat,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Flatten,
    Identity,
    LayerNorm,
    LeakyReLU,
    Linear,
    MaxPool2d,
    MultiheadAttention,
    Permute,
    PositionEmbedding,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
    Tanh,
    TokenPool,
    Unflatten,
)

ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "tanh": Tanh, "sigmoid": Sigmoid}


def mlp(sizes, activation="relu", dropout=0.0, rng=None) -> Sequential:
    """A multilayer perceptron: Linear layers with `activation` (and dropout) between them.

    The output layer has no activation (logits). Kaiming init for ReLUs, Xavier for tanh/sigmoid.

    Args:
        sizes: (input, hidden..., output) features, at least two.
        activation: "relu", "leaky_relu", "tanh" or "sigmoid".
        dropout: the Dropout probability after each hidden activation; 0 (default): no Dropout.
        rng: seed or Generator for the weights and the dropout masks.

    Returns:
        model: a Sequential, x (N, sizes[0]) -> (N, sizes[-1]).

    Raises:
        ValueError: fewer than two sizes, or an unknown activation.
    """
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs at least input and output sizes, got {sizes}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    rng = as_generator(rng)
    init = "kaiming" if activation in ("relu", "leaky_relu") else "xavier"
    layers = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(fan_in, fan_out, init=init, rng=rng))
        if index < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
            if dropout:
                layers.append(Dropout(dropout, rng=rng))
    return Sequential(*layers)


def cnn_encoder(channels=(32, 64), batch_norm=True, rng=None) -> Sequential:
    """The convolutional part of `cnn`: conv blocks (3x3 conv, 2x2 max-pool, [batch norm], ReLU) and a Flatten.

    Pooling comes before the ReLU: max-pool and ReLU commute, and the ReLU then runs on a quarter
    of the values.

    Args:
        channels: the output channels of each block (one block each).
        batch_norm: a BatchNorm2d after each pooling (and convolutions without bias).
        rng: seed or Generator for the weights.

    Returns:
        model: a Sequential, x (N, 1, S, S) -> features (N, channels[-1] (S // 2^blocks)^2), for any
            S >= 2^blocks.
    """
    rng = as_generator(rng)
    layers, in_channels = [], 1
    for out_channels in channels:
        layers += [Conv2d(in_channels, out_channels, 3, padding=1, bias=not batch_norm, rng=rng), MaxPool2d(2)]
        if batch_norm:  # after the pooling, on a quarter of the values
            layers.append(BatchNorm2d(out_channels))
        layers.append(ReLU())
        in_channels = out_channels
    return Sequential(*layers, Flatten())


def cnn(channels=(32, 64), hidden=128, dropout=0.5, batch_norm=True, classes=10, image_size=28, rng=None):
    """A classifier: `cnn_encoder`'s conv blocks and a dense head with dropout.

    The head is Linear(features, hidden), ReLU, Dropout(dropout), Linear(hidden, classes).

    Args:
        channels: the output channels of each conv block.
        hidden: the head's hidden features.
        dropout: the head's Dropout probability.
        batch_norm: a BatchNorm2d in each conv block.
        classes: the number of outputs.
        image_size: S of the (S, S) input images, at least 2^blocks.
        rng: seed or Generator for the weights and the dropout masks.

    Returns:
        model: a Sequential, x (N, 1, image_size, image_size) -> logits (N, classes).
    """
    rng = as_generator(rng)
    encoder = cnn_encoder(channels, batch_norm, rng)
    image_size = arguments.integer("image_size", image_size, minimum=2 ** len(channels))
    features = channels[-1] * (image_size // 2 ** len(channels)) ** 2
    head = [Linear(features, hidden, rng=rng), ReLU(), Dropout(dropout, rng=rng), Linear(hidden, classes, rng=rng)]
    return Sequential(*encoder.layers, *head)


def dense_autoencoder(latent: int, hidden=(256, 128), input_size=784, noise_std=0.0, rng=None) -> Autoencoder:
    """A dense autoencoder: an MLP encoder down to a linear code, and the mirrored decoder.

    The encoder maps input -> hidden... -> latent; the decoder goes back up and ends in a sigmoid,
    outputs in [0, 1].

    Args:
        latent: the code's size.
        hidden: the hidden layers' sizes, from the input side.
        input_size: the features of one input (784 for a flattened 28x28 image).
        noise_std: > 0 makes it a denoising autoencoder (see Autoencoder).
        rng: seed or Generator for the weights and the noise.

    Returns:
        model: an Autoencoder, x (N, input_size) -> (N, input_size); codes (N, latent).
    """
    rng = as_generator(rng)
    sizes = [input_size, *hidden, latent]
    encoder = mlp(sizes, rng=rng)
    decoder = Sequential(*mlp(sizes[::-1], rng=rng), Sigmoid())
    return Autoencoder(encoder, decoder, noise_std=noise_std, rng=rng)


def conv_autoencoder(latent: int, channels=(16, 32), image_size=28, noise_std=0.0, rng=None) -> Autoencoder:
    """A convolutional autoencoder with a linear code.

    Two 4x4 stride-2 convolutions down to (channels[-1], size/4, size/4), a linear code of
    `latent`, and two 4x4 stride-2 transposed convolutions back up, sigmoid output. (A 4x4 kernel at
    stride 2 covers every output pixel equally often, which avoids the checkerboard pattern of 3x3
    transposed convolutions.)

    Args:
        latent: the code's size.
        channels: the two convolutions' output channels (c1, c2).
        image_size: S of the (1, S, S) images, a multiple of 4.
        noise_std: > 0 makes it a denoising autoencoder (see Autoencoder).
        rng: seed or Generator for the weights and the noise.

    Returns:
        model: an Autoencoder, x (N, 1, S, S) -> (N, 1, S, S); codes (N, latent).
    """
    rng = as_generator(rng)
    c1, c2 = channels
    small = image_size // 4
    encoder = Sequential(
        Conv2d(1, c1, 4, stride=2, padding=1, rng=rng),
        ReLU(),
        Conv2d(c1, c2, 4, stride=2, padding=1, rng=rng),
        ReLU(),
        Flatten(),
        Linear(c2 * small * small, latent, rng=rng),
    )
    decoder = Sequential(
        Linear(latent, c2 * small * small, rng=rng),
        ReLU(),
        Unflatten((c2, small, small)),
        ConvTranspose2d(c2, c1, 4, stride=2, padding=1, rng=rng),
        ReLU(),
        ConvTranspose2d(c1, 1, 4, stride=2, padding=1, init="xavier", rng=rng),
        Sigmoid(),
    )
    return Autoencoder(encoder, decoder, noise_std=noise_std, rng=rng)


def resnet(widths=(32, 64, 128), blocks=2, classes=10, in_channels=1, rng=None) -> Sequential:
    """A small ResNet (He et al. 2016) for 28x28 images.

    A 3x3 stem, one stage of `blocks` basic residual blocks per width (the first block of each later
    stage halves the size with stride 2), global average pooling and a linear head. A basic block is
    post-activation: ReLU(BN(conv(ReLU(BN(conv x)))) + shortcut(x)), the shortcut the identity, or a
    1x1 strided convolution and a batch norm where the shape changes.

    Args:
        widths: the channels of each stage.
        blocks: the basic blocks per stage.
        classes: the number of outputs.
        in_channels: the input images' channels.
        rng: seed or Generator for the weights.

    Returns:
        model: a Sequential, x (N, in_channels, S, S) -> logits (N, classes).
    """
    rng = as_generator(rng)
    layers = [Conv2d(in_channels, widths[0], 3, padding=1, bias=False, rng=rng), BatchNorm2d(widths[0]), ReLU()]
    previous = widths[0]
    for stage, width in enumerate(widths):
        for index in range(arguments.integer("blocks", blocks)):
            stride = 2 if stage > 0 and index == 0 else 1
            layers += [_basic_block(previous, width, stride, rng), ReLU()]
            previous = width
    return Sequential(*layers, AdaptiveAvgPool2d(1), Flatten(), Linear(previous, classes, rng=rng))


def _basic_block(in_channels, out_channels, stride, rng) -> Residual:
    block = Sequential(
        Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False, rng=rng),
        BatchNorm2d(out_channels),
        ReLU(),
        Conv2d(out_channels, out_channels, 3, padding=1, bias=False, rng=rng),
        BatchNorm2d(out_channels),
    )
    shortcut = None
    if stride != 1 or in_channels != out_channels:
        shortcut = Sequential(
            Conv2d(in_channels, out_channels, 1, stride=stride, bias=False, rng=rng), BatchNorm2d(out_channels)
        )
    return Residual(block, shortcut)


def unet(channels=(16, 32, 64), in_channels=1, out_channels=1, rng=None) -> Sequential:
    """A U-Net (Ronneberger et al. 2015) with len(channels) levels.

    At each level two 3x3 conv + batch norm + ReLU, then a 2x2 max-pool down to the next level,
    whose output comes back up by a 2x2 stride-2 transposed convolution and is concatenated with
    this level's features (the skip connection, a Concat of an Identity and the deeper path) before
    two more convolutions. A 1x1 convolution and a sigmoid give the output in [0, 1].

    Args:
        channels: the channels of each level, from the top; at least one.
        in_channels: the input images' channels.
        out_channels: the output's channels.
        rng: seed or Generator for the weights.

    Returns:
        model: a Sequential, x (N, in_channels, S, S) -> (N, out_channels, S, S), S divisible by
            2^(levels - 1).

    Raises:
        ValueError: no channels.
    """
    rng = as_generator(rng)
    if not channels:
        raise ValueError("a U-Net needs at least one level of channels")
    return Sequential(
        _unet_level(list(channels), in_channels, rng), Conv2d(channels[0], out_channels, 1, rng=rng), Sigmoid()
    )


def _unet_level(channels, in_channels, rng):
    """(N, in_channels, S, S) -> (N, channels[0], S, S): this level and every deeper one."""
    width = channels[0]
    down = _double_conv(in_channels, width, rng)
    if len(channels) == 1:
        return down
    deeper = Sequential(
        MaxPool2d(2), _unet_level(channels[1:], width, rng), ConvTranspose2d(channels[1], width, 2, stride=2, rng=rng)
    )
    return Sequential(down, Concat(Identity(), deeper), _double_conv(2 * width, width, rng))


def _double_conv(in_channels, out_channels, rng) -> Sequential:
    return Sequential(
        Conv2d(in_channels, out_channels, 3, padding=1, bias=False, rng=rng),
        BatchNorm2d(out_channels),
        ReLU(),
        Conv2d(out_channels, out_channels, 3, padding=1, bias=False, rng=rng),
        BatchNorm2d(out_channels),
        ReLU(),
    )


POOLINGS = {"mean": "mean", "class": "first"}  # vit's pooling: the TokenPool mode it takes


def encoder_block(embed_dim, num_heads, mlp_ratio=4, dropout=0.0, rng=None) -> Sequential:
    """A pre-norm transformer encoder block: x + MHA(LN(x)), then x + MLP(LN(x)).

    Two Residual blocks with identity shortcuts. The first is LayerNorm, self-attention
    (MultiheadAttention called with one input) and Dropout; the second LayerNorm, Linear(E, hidden),
    GELU, Dropout, Linear(hidden, E), Dropout, with hidden = mlp_ratio E. It computes what PyTorch's
    nn.TransformerEncoderLayer(E, num_heads, hidden, dropout, activation="gelu", batch_first=True,
    norm_first=True) computes; the parameters are named by position (`0.block.1.in_proj_weight`).
    The MLP's Linears are Xavier-uniform, as the attention's projections.

    Args:
        embed_dim: E, the features of a token.
        num_heads: the attention heads; they divide embed_dim.
        mlp_ratio: the MLP's hidden features per embed_dim feature, > 0.
        dropout: the probability of the Dropouts and of the attention's dropout; 0 (default): none
            (no Dropout layers).
        rng: seed or Generator for the weights and the dropout masks.

    Returns:
        model: a Sequential of two Residuals, x (N, L, E) -> (N, L, E).

    Raises:
        ValueError: num_heads that does not divide embed_dim, an mlp_ratio that leaves no hidden
            feature, a dropout outside [0, 1).
    """
    rng = as_generator(rng)
    embed_dim = arguments.integer("embed_dim", embed_dim)
    hidden = int(arguments.real("mlp_ratio", mlp_ratio, low=0, low_open=True) * embed_dim)
    if hidden < 1:
        raise ValueError(f"mlp_ratio {mlp_ratio} leaves no hidden feature for embed_dim {embed_dim}")

    def drop():  # a Dropout of its own at each place (none without dropout)
        return [Dropout(dropout, rng=rng)] if dropout else []

    attention = MultiheadAttention(embed_dim, num_heads, dropout=dropout, rng=rng)
    mlp = [Linear(embed_dim, hidden, init="xavier", rng=rng), GELU(), *drop()]
    mlp += [Linear(hidden, embed_dim, init="xavier", rng=rng), *drop()]
    return Sequential(
        Residual(Sequential(LayerNorm(embed_dim), attention, *drop())),
        Residual(Sequential(LayerNorm(embed_dim), *mlp)),
    )


def vit(
    image_size=28,
    patch_size=7,
    in_channels=1,
    classes=10,
    embed_dim=64,
    depth=4,
    num_heads=4,
    mlp_ratio=2,
    dropout=0.0,
    pooling="mean",
    rng=None,
) -> Sequential:
    """A vision transformer (Dosovitskiy et al. 2021) for small square images.

    The image is cut into (image_size / patch_size)^2 patches, each embedded linearly by a Conv2d of
    kernel and stride patch_size; the feature map becomes a sequence of tokens (Flatten(2), then
    Permute((0, 2, 1)): (N, E, h, w) -> (N, h w, E)), a learned class token goes in front where
    pooling is "class", learned position embeddings are added, `depth` pre-norm `encoder_block`s
    follow, then a LayerNorm, the pooling of the tokens (their mean, or the class token's output)
    and a Linear head.

    Args:
        image_size: S of the (S, S) input images.
        patch_size: P, the side of a patch; it divides image_size.
        in_channels: the input images' channels.
        classes: the number of outputs.
        embed_dim: E, the features of a token.
        depth: the number of encoder blocks.
        num_heads: the attention heads of each block; they divide embed_dim.
        mlp_ratio: the blocks' MLP hidden features per embed_dim feature.
        dropout: the blocks' dropout probability (0: none).
        pooling: "mean" (default): the mean of the tokens; "class": a class token's output.
        rng: seed or Generator for the weights and the dropout masks.

    Returns:
        model: a Sequential, x (N, in_channels, S, S) -> logits (N, classes).

    Raises:
        ValueError: a patch_size that does not divide image_size, an unknown pooling, or a block's
            ValueError.
    """
    rng = as_generator(rng)
    image_size = arguments.integer("image_size", image_size)
    patch_size = arguments.integer("patch_size", patch_size)
    if image_size % patch_size:
        raise ValueError(f"vit's patch_size must divide image_size, got {patch_size} and {image_size}")
    mode = POOLINGS[arguments.choice("pooling", pooling, POOLINGS)]
    length = (image_size // patch_size) ** 2
    layers = [Conv2d(in_channels, embed_dim, patch_size, stride=patch_size, rng=rng), Flatten(2), Permute((0, 2, 1))]
    if mode == "first":
        layers.append(ClassToken(embed_dim))
        length += 1
    layers.append(PositionEmbedding(length, embed_dim, rng=rng))
    blocks = [
        encoder_block(embed_dim, num_heads, mlp_ratio, dropout, rng) for _ in range(arguments.integer("depth", depth))
    ]
    head = [LayerNorm(embed_dim), TokenPool(mode), Linear(embed_dim, classes, init="xavier", rng=rng)]
    return Sequential(*layers, *blocks, *head)
