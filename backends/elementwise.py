"""An elementwise kernel as plain data: what a backend compiles, and what tests can check anywhere.

`Elementwise` holds the three strings of a `cupy.ElementwiseKernel`: typed input and output
parameters ("T x" is one element of an array or a broadcast scalar, "raw T x" a whole array
indexed by hand) and the C++ body run once per index `i`. The ops in `diynn` keep their kernel
sources next to their portable array code; `Backend.elementwise(source)` compiles one where the
backend can (CuPy) and answers None elsewhere, so the portable code runs instead.

Scalars may be Python numbers or 0-d device arrays: the second form is read from device memory
at run time, which is what a captured CUDA graph needs.
"""

from typing import NamedTuple


class Elementwise(NamedTuple):
    """The source of an elementwise kernel, as `cupy.ElementwiseKernel` takes it.

    Compile it with `backend.elementwise(source)`, which answers None where nothing can (the
    caller then runs its portable array code).

    Attributes:
        in_params: typed input parameters, e.g. "T y, T gy" ("raw T x": a whole array indexed by hand).
        out_params: typed output parameters, e.g. "T gx".
        operation: the C++ body, run once per index `i`.
        name: the kernel's name, e.g. "diynn_scaled_sum".
    """

    in_params: str
    out_params: str
    operation: str
    name: str
