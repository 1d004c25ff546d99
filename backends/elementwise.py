"""The CUDA sources of the CuPy backend's fused kernels, as plain data.

Each `Elementwise` holds the three strings of a `cupy.ElementwiseKernel`: typed input and
output parameters ("T x" is one element of an array or a broadcast scalar, "raw T x" a whole
array indexed by hand) and the C++ body run once per index `i`. Keeping them here, free of
CuPy, lets the test suite compile and check every body on machines without a GPU.

Scalars such as a learning rate may be Python numbers or 0-d device arrays: the second form
is read from device memory at run time, which is what a captured CUDA graph needs.
"""

from typing import NamedTuple


class Elementwise(NamedTuple):
    in_params: str
    out_params: str
    operation: str
    name: str


RELU_BACKWARD = Elementwise("T y, T gy", "T gx", "gx = y > 0 ? gy : T(0)", "diynn_relu_backward")

TANH_BACKWARD = Elementwise("T y, T gy", "T gx", "gx = gy * (1 - y * y)", "diynn_tanh_backward")

SIGMOID_BACKWARD = Elementwise("T y, T gy", "T gx", "gx = gy * y * (1 - y)", "diynn_sigmoid_backward")

SGD = Elementwise(
    "T g, T lr, T weight_decay",
    "T p",
    "p -= lr * (g + weight_decay * p)",
    "diynn_sgd",
)

SGD_MOMENTUM = Elementwise(
    "T g, T lr, T momentum, T weight_decay, int32 nesterov",
    "T p, T buffer",
    """
    const T d = g + weight_decay * p;
    buffer = momentum * buffer + d;
    p -= lr * (nesterov ? d + momentum * buffer : buffer);
    """,
    "diynn_sgd_momentum",
)

ADAM = Elementwise(
    "T g, T step_size, T beta1, T beta2, T eps",
    "T p, T m, T v",
    """
    m += (1 - beta1) * (g - m);
    v += (1 - beta2) * (g * g - v);
    p -= step_size * m / (sqrt(v) + eps);
    """,
    "diynn_adam",
)

# One thread per row of logits (N, C) with integer labels (N,): the row's loss
# log(sum exp z) - z[label] and its gradient (softmax(z) - onehot(label)) * scale, with one pass
# for the max, one for the sum and one for the gradient. A label outside [0, C) gives NaN.
SOFTMAX_CROSS_ENTROPY = Elementwise(
    "raw T logits, raw L labels, int64 classes, T scale",
    "T loss, raw T grad",
    """
    const long long row = i * classes;
    const long long label = labels[i];
    T top = logits[row];
    for (long long j = 1; j < classes; ++j) top = max(top, (T)logits[row + j]);
    T total = 0;
    for (long long j = 0; j < classes; ++j) total += exp(logits[row + j] - top);
    const bool valid = label >= 0 && label < classes;
    const T nan = T(0) / T(0);
    loss = valid ? log(total) + top - logits[row + label] : nan;
    for (long long j = 0; j < classes; ++j) {
        const T p = exp(logits[row + j] - top) / total;
        grad[row + j] = valid ? (p - (j == label ? T(1) : T(0))) * scale : nan;
    }
    """,
    "diynn_softmax_cross_entropy",
)
