"""The encoder-block benchmark's two steps on their real shapes, one step each (the benchmark itself
never runs here)."""

import encoder_block
import pytest


def test_the_diynn_step_runs():
    encoder_block.diynn_step()()


def test_the_torch_step_runs():
    pytest.importorskip("torch")
    encoder_block.torch_step()()
