"""Seeing inside a network: a per-layer summary (shapes, parameters, memory kept for the backward,
FLOPs), a layer-by-layer comparison with PyTorch, and a training callback that watches the layers
(`Monitor`). PyTorch is imported only when a comparison runs, matplotlib only for a figure."""

from .model_summary import LayerSummary, Summary, summary
from .monitor import Monitor, Verdict
from .torch_comparison import Comparison, ComparisonRow, Disagreement, compare_with_torch
from .torch_copy import as_torch

__all__ = [
    "Comparison",
    "ComparisonRow",
    "Disagreement",
    "LayerSummary",
    "Monitor",
    "Summary",
    "Verdict",
    "as_torch",
    "compare_with_torch",
    "summary",
]
