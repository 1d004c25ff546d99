"""Layers: each a Module with its forward and hand-derived backward side by side."""

from .activations import GELU, LeakyReLU, ReLU, Sigmoid, SiLU, Softmax, Tanh
from .attention import MultiheadAttention
from .containers import Concat, Identity, Residual, Sequential
from .convolution import Conv1d, Conv2d, ConvTranspose2d
from .dropout import Dropout
from .embedding import Embedding
from .linear import Linear
from .normalisation import BatchNorm1d, BatchNorm2d, LayerNorm
from .pooling import AvgPool2d, MaxPool1d, MaxPool2d
from .resampling import AdaptiveAvgPool2d, Upsample
from .reshape import Flatten, Permute, Unflatten
from .tokens import ClassToken, PositionEmbedding, TokenPool

__all__ = [
    "AdaptiveAvgPool2d",
    "Concat",
    "Identity",
    "Residual",
    "Upsample",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "ClassToken",
    "Conv1d",
    "Conv2d",
    "ConvTranspose2d",
    "Dropout",
    "Embedding",
    "Flatten",
    "GELU",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "MaxPool1d",
    "MaxPool2d",
    "MultiheadAttention",
    "Permute",
    "PositionEmbedding",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "SiLU",
    "Softmax",
    "Tanh",
    "TokenPool",
    "Unflatten",
]
