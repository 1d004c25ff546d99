"""Input checks shared by layers and losses: each error names what was expected and given."""


def check_input(x, *, ndim: int, name: str, dtype=None, sizes: dict | None = None) -> None:
    """Raise ValueError unless `x` has `ndim` axes and `sizes` = {axis: length},
    TypeError unless its dtype is `dtype` (when given)."""
    if x.ndim != ndim:
        raise ValueError(f"{name} expects an input with {ndim} axes, got shape {tuple(x.shape)}")
    for axis, length in (sizes or {}).items():
        if x.shape[axis] != length:
            raise ValueError(f"{name} expects size {length} on axis {axis}, got shape {tuple(x.shape)}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(
            f"{name} expects dtype {dtype} (that of its parameters), got {x.dtype}; "
            "convert the input once, e.g. with backend.asarray(x, dtype=...)"
        )


def check_same_shape(prediction, target, name: str) -> None:
    """Raise ValueError unless the two arrays have the same shape (no silent broadcasting)."""
    if tuple(prediction.shape) != tuple(target.shape):
        raise ValueError(f"{name}: prediction shape {tuple(prediction.shape)} != target shape {tuple(target.shape)}")
