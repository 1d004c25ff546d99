"""The branches benchmark's steps on their real shapes, one step each, and its PyTorch ResNet against
`diynn.resnet()` (the benchmark itself never runs here)."""

import branches
import numpy as np
import pytest

import diynn


@pytest.mark.parametrize("case", branches.CASES)
def test_the_diynn_step_runs(case):
    branches.diynn_step(case)()


@pytest.mark.parametrize("case", branches.CASES)
def test_the_torch_step_runs(case):
    pytest.importorskip("torch")
    branches.torch_step(case)()


def test_the_torch_resnet_is_the_same_network():
    """Same parameters in the same order, and the same logits with diynn's weights copied in."""
    torch = pytest.importorskip("torch")
    ours = diynn.resnet(widths=branches.WIDTHS, blocks=branches.BLOCKS, rng=0).astype(np.float64)
    theirs = branches.torch_resnet(torch).double()
    assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in theirs.parameters()]
    with torch.no_grad():
        for mine, their in zip(ours.parameters(), theirs.parameters(), strict=True):
            their.copy_(torch.from_numpy(mine.data))
    x = np.random.default_rng(0).random((3, 1, 28, 28))
    ours.eval(), theirs.eval()
    np.testing.assert_allclose(ours(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-10, atol=1e-10)
