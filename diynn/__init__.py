"""diynn: a neural-network library written from scratch, with hand-derived backward passes,
running on NumPy (CPU) or CuPy (GPU) through its array-API shim, diynn.backends."""

from . import functional, onnx
from .augment import (
    Compose,
    GaussianNoise,
    RandomBrightnessContrast,
    RandomErasing,
    RandomHorizontalFlip,
    RandomResizedCrop,
    RandomShift,
    TwoViews,
)
from .autoencoder import Autoencoder, add_noise
from .backends import BackendError, get_backend, kernels, set_backend, set_kernels, use
from .callbacks import EarlyStopping
from .cuda_graphs import CapturedStep
from .grad_mode import enable_grad, no_grad
from .gradcheck import GradcheckError, gradcheck, gradcheck_loss
from .io import ModelFileError, load_model, load_weights, save_model
from .layers import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv1d,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    MaxPool1d,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
    Unflatten,
)
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss, NTXentLoss, PerceptualLoss
from .models import cnn, cnn_encoder, conv_autoencoder, dense_autoencoder, mlp
from .module import Module, Parameter
from .optim import SGD, Adam, AdamW, Optimizer
from .regularisation import L1L2, clip_grad_norm
from .schedules import CosineLR, ExponentialLR, ReduceLROnPlateau, Schedule, StepLR
from .train import StopTraining, Trainer, TrainingDiverged, accuracy, predict

__version__ = "0.1.0"

__all__ = [
    "kernels",
    "set_kernels",
    "onnx",
    "enable_grad",
    "functional",
    "no_grad",
    "Adam",
    "AdamW",
    "Autoencoder",
    "CapturedStep",
    "AvgPool2d",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BackendError",
    "BatchNorm1d",
    "BatchNorm2d",
    "Compose",
    "Conv1d",
    "Conv2d",
    "ConvTranspose2d",
    "CosineLR",
    "CrossEntropyLoss",
    "Dropout",
    "EarlyStopping",
    "ExponentialLR",
    "Flatten",
    "GaussianNoise",
    "GradcheckError",
    "L1L2",
    "LeakyReLU",
    "Linear",
    "Loss",
    "MSELoss",
    "MaxPool1d",
    "MaxPool2d",
    "NTXentLoss",
    "ModelFileError",
    "Module",
    "Optimizer",
    "Parameter",
    "PerceptualLoss",
    "RandomBrightnessContrast",
    "RandomErasing",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "RandomShift",
    "ReLU",
    "ReduceLROnPlateau",
    "SGD",
    "Schedule",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "StepLR",
    "StopTraining",
    "Tanh",
    "Trainer",
    "TrainingDiverged",
    "TwoViews",
    "Unflatten",
    "accuracy",
    "add_noise",
    "clip_grad_norm",
    "cnn",
    "cnn_encoder",
    "conv_autoencoder",
    "dense_autoencoder",
    "get_backend",
    "gradcheck",
    "gradcheck_loss",
    "load_model",
    "load_weights",
    "mlp",
    "predict",
    "save_model",
    "set_backend",
    "use",
]
