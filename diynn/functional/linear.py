"""The fully connected layer as a functional pair."""

from backends import backend_of


def linear(x, weight, bias=None):
    """y = x W^T + b. x: (N, in), weight: (out, in), bias: (out,) or None -> y: (N, out).
    Cache: (x, weight, has_bias)."""
    y = x @ weight.T
    if bias is not None:
        y += bias
    return y, (x, weight, bias is not None)


def linear_backward(cache, grad_y, input_grad=True, param_grads=True):
    """(dL/dx, dL/dW, dL/db) from dL/dy (N, out); a gradient not asked for (or db without a bias) is None."""
    # dL/dW = g^T x, dL/db = sum_n g, dL/dx = g W
    x, weight, has_bias = cache
    grad_weight = grad_y.T @ x if param_grads else None
    grad_bias = backend_of(grad_y).xp.sum(grad_y, axis=0) if param_grads and has_bias else None
    grad_x = grad_y @ weight if input_grad else None
    return grad_x, grad_weight, grad_bias
