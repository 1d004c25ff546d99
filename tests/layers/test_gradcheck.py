"""The gradient check itself (diynn/gradcheck.py)."""

import pytest

import diynn
from diynn import Tanh, gradcheck


def test_gradcheck_catches_a_wrong_backward(backend, numpy_rng):
    class WrongTanh(Tanh):
        def backward(self, grad_output):
            return grad_output * (1 - self.saved_for_backward())

    with pytest.raises(diynn.GradcheckError, match="input"):
        gradcheck(WrongTanh(), numpy_rng.normal(size=(3, 3)))
