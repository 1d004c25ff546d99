"""Seeing inside a network: a per-layer summary (shapes, parameters, memory kept for the backward,
FLOPs) and a layer-by-layer comparison with PyTorch. PyTorch is imported only when a comparison
runs."""

from .model_summary import LayerSummary, Summary, summary
from .torch_comparison import Comparison, ComparisonRow, Disagreement, compare_with_torch
from .torch_copy import as_torch

__all__ = [
    "Comparison",
    "ComparisonRow",
    "Disagreement",
    "LayerSummary",
    "Summary",
    "as_torch",
    "compare_with_torch",
    "summary",
]
