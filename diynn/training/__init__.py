"""Training: the Trainer and its steps (plain, CUDA graph, data-parallel), callbacks and learning-rate
schedules, checkpoints, gradient clipping and penalties, the progress bar."""

from . import distributed
from .callbacks import EarlyStopping
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .cuda_graphs import CapturedStep
from .regularisation import L1L2, clip_grad_norm
from .schedules import CosineLR, ExponentialLR, ReduceLROnPlateau, Schedule, StepLR
from .trainer import StopTraining, Trainer, TrainingDiverged, accuracy, predict

__all__ = [
    "CapturedStep",
    "CheckpointError",
    "CosineLR",
    "EarlyStopping",
    "ExponentialLR",
    "L1L2",
    "ReduceLROnPlateau",
    "Schedule",
    "StepLR",
    "StopTraining",
    "Trainer",
    "TrainingDiverged",
    "accuracy",
    "clip_grad_norm",
    "distributed",
    "load_checkpoint",
    "predict",
    "save_checkpoint",
]
