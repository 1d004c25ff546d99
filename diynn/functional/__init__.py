"""diynn's ops as functions, as `torch.nn.functional` is to `torch.nn`: each op a pair,
`op(x, params..., options...) -> (y, cache)` and `op_backward(cache, grad_y, ...) -> gradients`,
with the derivation beside the code. The layers in `diynn.layers` are thin modules over them.

    y, cache = F.conv2d(x, weight, bias, stride=1, padding=1)
    grad_x, grad_weight, grad_bias = F.conv2d_backward(cache, grad_y)
"""

from .activations import (
    gelu,
    gelu_backward,
    leaky_relu,
    leaky_relu_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    silu,
    silu_backward,
    softmax,
    softmax_backward,
    tanh,
    tanh_backward,
)
from .attention import scaled_dot_product_attention, scaled_dot_product_attention_backward
from .branches import add, add_backward, concat, concat_backward
from .convolution import conv2d, conv2d_backward, conv_transpose2d, conv_transpose2d_backward
from .dropout import dropout, dropout_backward
from .embedding import embedding, embedding_backward
from .linear import linear, linear_backward
from .losses import (
    binary_cross_entropy,
    binary_cross_entropy_backward,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_backward,
    cross_entropy,
    cross_entropy_backward,
    mse_loss,
    mse_loss_backward,
    nt_xent,
    nt_xent_backward,
)
from .normalisation import batch_norm, batch_norm_backward, layer_norm, layer_norm_backward
from .pooling import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward
from .resampling import adaptive_avg_pool2d, adaptive_avg_pool2d_backward, upsample, upsample_backward
from .tokens import (
    class_token,
    class_token_backward,
    position_embedding,
    position_embedding_backward,
    token_pool,
    token_pool_backward,
)

__all__ = [
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "add",
    "add_backward",
    "concat",
    "concat_backward",
    "upsample",
    "upsample_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "batch_norm",
    "batch_norm_backward",
    "binary_cross_entropy",
    "binary_cross_entropy_backward",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_backward",
    "class_token",
    "class_token_backward",
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "dropout",
    "dropout_backward",
    "embedding",
    "embedding_backward",
    "gelu",
    "gelu_backward",
    "leaky_relu",
    "layer_norm",
    "layer_norm_backward",
    "leaky_relu_backward",
    "linear",
    "linear_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "mse_loss",
    "mse_loss_backward",
    "nt_xent",
    "nt_xent_backward",
    "position_embedding",
    "position_embedding_backward",
    "relu",
    "relu_backward",
    "scaled_dot_product_attention",
    "scaled_dot_product_attention_backward",
    "sigmoid",
    "sigmoid_backward",
    "silu",
    "silu_backward",
    "softmax",
    "softmax_backward",
    "tanh",
    "tanh_backward",
    "token_pool",
    "token_pool_backward",
]
