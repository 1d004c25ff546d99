"""Input and output: model files (.npz, .safetensors) with their architecture, ONNX export, and
atomic file writing."""

from . import onnx
from .files import atomic_write
from .model_files import ModelFileError, load_model, load_weights, save_model

__all__ = ["ModelFileError", "atomic_write", "load_model", "load_weights", "onnx", "save_model"]
