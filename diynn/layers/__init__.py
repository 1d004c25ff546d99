"""Layers: each a Module with its forward and hand-derived backward side by side."""

from .activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .containers import Sequential
from .linear import Linear

__all__ = ["LeakyReLU", "Linear", "ReLU", "Sequential", "Sigmoid", "Softmax", "Tanh"]
