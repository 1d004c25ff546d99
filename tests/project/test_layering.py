"""The compute path of diynn is written against the array API only: it never names NumPy or CuPy."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "diynn"
# Host-side file formats (npz model files and checkpoints, ONNX, IDX data sets) are NumPy by nature.
HOST_SIDE = {"io", "checkpoint.py", "datasets"}


def compute_files():
    return [p for p in sorted(PACKAGE.rglob("*.py")) if not HOST_SIDE & {p.name, p.parent.name}]


@pytest.mark.parametrize("path", compute_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_numpy_or_cupy_imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in {"numpy", "cupy"}, f"{path.name} imports {name}"
