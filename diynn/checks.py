"""Input checks shared by layers and losses: each error names what was expected and given."""

from .backends import backend_of


def check_input(x, *, ndim: int, name: str, like=None, sizes: dict | None = None) -> None:
    """Raise ValueError unless `x` has `ndim` axes and `sizes` = {axis: length}; TypeError unless
    it is an array of the same backend and dtype as `like` (a parameter of the layer, when given)."""
    try:
        given_ndim, dtype = x.ndim, x.dtype
    except AttributeError:
        raise TypeError(
            f"{name} expects an array, got {type(x).__name__}; convert it with backend.asarray(...)"
        ) from None
    if given_ndim != ndim:
        raise ValueError(f"{name} expects an input with {ndim} axes, got shape {tuple(x.shape)}")
    if sizes:
        for axis, length in sizes.items():
            if x.shape[axis] != length:
                raise ValueError(f"{name} expects size {length} on axis {axis}, got shape {tuple(x.shape)}")
    if like is not None:
        check_same_backend(x, like, name)
        if dtype != like.dtype:
            raise TypeError(
                f"{name} expects dtype {like.dtype} (that of its parameters), got {x.dtype}; "
                "convert the input once, e.g. with backend.asarray(x, dtype=...)"
            )


def check_floating(x, name: str) -> None:
    """Raise TypeError unless `x` is an array of a real floating dtype (an op that computes in its
    input's dtype would truncate integers, or give float64 for them)."""
    if not hasattr(x, "ndim") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} expects an array, got {type(x).__name__}; convert it with backend.asarray(...)")
    if not backend_of(x).xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"{name} expects a real floating-point input, got dtype {x.dtype}")


def check_weighted(name: str, x, weight, bias, ndim: int, in_axis: int = 1) -> None:
    """Clear errors for an input `x`, a `weight` and a `bias` (or None) that do not fit together (the
    compiled kernels would read past them): x and the weight with `ndim` axes, x's axis 1 as long as
    the weight's axis `in_axis` (1; 0 for a transposed convolution), the bias (the length of the
    weight's other leading axis,), all of the weight's backend and dtype."""
    check_input(weight, ndim=ndim, name=f"{name}'s weight")
    check_input(x, ndim=ndim, name=name, sizes={1: weight.shape[in_axis]}, like=weight)
    if bias is not None:
        check_input(bias, ndim=1, name=f"{name}'s bias", sizes={0: weight.shape[1 - in_axis]}, like=weight)


def check_same_backend(x, parameter, name: str) -> None:
    """Raise TypeError unless input `x` lives on the backend of the layer's `parameter`."""
    if type(x) is not type(parameter):
        given, expected = backend_of(x).name, backend_of(parameter).name
        if given != expected:
            raise TypeError(
                f"{name} got an input on backend {given!r} but its parameters are on {expected!r}; "
                f"move the model with model.to({given!r}) or the input with backends.get({expected!r}).asarray(...)"
            )


def check_same_shape(prediction, target, name: str) -> None:
    """Raise ValueError unless the two arrays have the same shape (no silent broadcasting) and hold
    at least one example (a mean over an empty batch is undefined)."""
    check_not_empty(prediction, name)
    if tuple(prediction.shape) != tuple(target.shape):
        raise ValueError(f"{name}: prediction shape {tuple(prediction.shape)} != target shape {tuple(target.shape)}")


def check_not_empty(prediction, name: str) -> None:
    """Raise ValueError if `prediction` has no elements (a loss averaged over nothing would be NaN)."""
    if prediction.size == 0:
        raise ValueError(f"{name} got an empty batch (prediction shape {tuple(prediction.shape)}); nothing to average")


def check_gradient(grad, shape, dtype, name: str, of: str = "the output's") -> None:
    """Raise ValueError unless `grad` has the `shape` of what it is the gradient of (no silent
    broadcasting; the compiled kernels index by that shape), TypeError unless it is an array of
    that `dtype`."""
    try:
        given_shape, given_dtype = grad.shape, grad.dtype
    except AttributeError:
        raise TypeError(f"{name} expects {of} gradient as an array, got {type(grad).__name__}") from None
    if given_shape != shape and tuple(given_shape) != tuple(shape):
        raise ValueError(f"{name} expects a gradient of {of} shape {tuple(shape)}, got {tuple(given_shape)}")
    if given_dtype != dtype:
        raise TypeError(f"{name} expects a gradient of {of} dtype {dtype}, got {grad.dtype}")
