"""Max and average pooling (diynn/layers/pooling.py, diynn/functional/pooling.py)."""

import pytest

from diynn import (
    AvgPool2d,
    MaxPool2d,
    gradcheck,
)

POOLS = {
    "max2": lambda: MaxPool2d(2),
    "max3_stride2_pad1": lambda: MaxPool2d(3, stride=2, padding=1),
    "avg2": lambda: AvgPool2d(2),
    "avg_rect": lambda: AvgPool2d((2, 3), stride=1, padding=(1, 1)),
}


@pytest.mark.parametrize("name", POOLS)
def test_pool_gradients(backend, name, numpy_rng):
    assert gradcheck(POOLS[name](), numpy_rng.normal(size=(2, 3, 6, 5)), max_checks=80)
