"""Shape changes between convolutional and dense parts of a network."""

from backends import backend_of

from ..module import Module


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1 d2 ...)."""

    def forward(self, x):
        self.input_shape = x.shape
        return backend_of(x).xp.reshape(x, (x.shape[0], -1))

    def backward(self, grad_output, input_grad=True):
        return backend_of(grad_output).xp.reshape(grad_output, self.input_shape)


class Unflatten(Module):
    """(N, d1 d2 ...) -> (N, *shape), e.g. from a dense layer into a convolutional decoder."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return backend_of(x).xp.reshape(x, (x.shape[0], *self.shape))

    def backward(self, grad_output, input_grad=True):
        return backend_of(grad_output).xp.reshape(grad_output, (grad_output.shape[0], -1))

    def config(self):
        return {"shape": list(self.shape)}
