"""diynn: a neural-network library written from scratch, with hand-derived backward passes,
running on NumPy (CPU) or CuPy (GPU) through the `backends` array-API shim."""

from backends import BackendError, get_backend, set_backend, use

from .gradcheck import GradcheckError, gradcheck, gradcheck_loss
from .io import ModelFileError, load_model, load_weights, save_model
from .layers import LeakyReLU, Linear, ReLU, Sequential, Sigmoid, Softmax, Tanh
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss
from .models import mlp
from .module import Module, Parameter
from .optim import SGD, Adam, AdamW, Optimizer
from .schedules import CosineLR, ExponentialLR, ReduceLROnPlateau, Schedule, StepLR
from .train import StopTraining, Trainer, TrainingDiverged, accuracy, predict

__version__ = "0.1.0"

__all__ = [
    "Adam",
    "AdamW",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BackendError",
    "CosineLR",
    "CrossEntropyLoss",
    "ExponentialLR",
    "GradcheckError",
    "LeakyReLU",
    "Linear",
    "Loss",
    "MSELoss",
    "ModelFileError",
    "Module",
    "Optimizer",
    "Parameter",
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
    "accuracy",
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
