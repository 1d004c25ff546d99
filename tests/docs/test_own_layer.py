"""The page 'Write your own layer' (docs/concepts/own_layer.md) runs: its python code blocks,
executed in order in one namespace as the page tells a reader to, so that the page cannot rot.
Only the PyTorch comparison is skipped, and only where torch is not installed. The page computes on
NumPy arrays, as a reader would: it runs on the NumPy backend whatever DIYNN_BACKEND says."""

import importlib.util
import re
from pathlib import Path

import diynn

PAGE = Path(__file__).resolve().parents[2] / "docs" / "concepts" / "own_layer.md"
FENCE = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def code_blocks() -> list[str]:
    """The page's ```python blocks, in order."""
    return FENCE.findall(PAGE.read_text(encoding="utf-8"))


def needs_torch(block: str) -> bool:
    return re.search(r"^import torch$", block, re.MULTILINE) is not None


def test_the_page_has_its_steps():
    """The extraction finds the blocks (a changed fence would otherwise leave nothing to run)."""
    blocks = code_blocks()
    assert len(blocks) >= 10, len(blocks)
    joined = "\n".join(blocks)
    for step in ("def swish_backward", "class Swish(diynn.Module)", "diynn.gradcheck(", "classes=[Swish]"):
        assert step in joined, step
    assert sum(needs_torch(block) for block in blocks) == 1


def test_every_code_block_runs_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the page saves a model file in the working folder
    have_torch = importlib.util.find_spec("torch") is not None
    namespace = {"__name__": "own_layer_page"}  # as in a script: the backend names a kernel by its module
    with diynn.use("numpy"):
        run_in_order(code_blocks(), namespace, tmp_path, have_torch)


def run_in_order(blocks, namespace, folder, have_torch):
    for index, block in enumerate(blocks):
        if needs_torch(block) and not have_torch:
            continue
        # each block from a file of its own: numba caches the page's kernel next to its source file,
        # and a failure's traceback shows the block's lines
        source = folder / f"block_{index:02d}.py"
        source.write_text(block, encoding="utf-8")
        try:
            exec(compile(block, str(source), "exec"), namespace)
        except Exception as error:
            first_line = block.strip().splitlines()[0]
            raise AssertionError(f"code block {index} of {PAGE.name} ({first_line!r}) failed: {error!r}") from error
