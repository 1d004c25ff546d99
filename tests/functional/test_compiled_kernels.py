"""The compiled CPU kernels (backends.cpu_kernels, numba) against the portable array code they must
equal: every op that has a kernel, forward and every gradient, on geometries that reach each
branch (strides larger than the kernel, padding, one input channel, batch 1, odd batches that
split unevenly over the threads), in float64 and float32; and the kernels setting itself."""

import os
import subprocess
import sys

import numpy as np
import pytest

import diynn
from diynn import backends
from diynn import functional as F
from diynn.functional.convolution import CONV2D
from diynn.functional.selection import forced


@pytest.fixture(autouse=True)
def restore_kernels():
    before = backends.kernels()
    yield
    backends.set_kernels(before)


def both_paths(run):
    """run() under the portable code and under the compiled kernels: (portable, compiled) results."""
    results = []
    for name in ("portable", "compiled"):
        backends.set_kernels(name)
        results.append(run())
    return results


def assert_same(portable, compiled, dtype):
    tolerance = 1e-12 if dtype == np.float64 else 2e-5
    for expected, actual in zip(portable, compiled):
        if expected is None:
            assert actual is None
            continue
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        scale = max(1.0, float(np.abs(expected).max(initial=0)))
        np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance * scale)


DTYPES = [np.float64, np.float32]
# (N, C_in, H, W, C_out, kernel, stride, padding)
CONV_GEOMETRIES = [
    (5, 3, 9, 8, 4, 3, 1, 1),
    (3, 2, 10, 11, 3, 4, 2, 1),
    (4, 1, 7, 7, 2, 3, 2, 0),  # one input channel
    (2, 3, 9, 9, 5, 2, 3, 1),  # stride larger than the kernel
    (1, 2, 5, 6, 3, 3, 1, 1),  # batch 1: one chunk
    (7, 4, 6, 6, 2, 1, 1, 0),  # 1x1 kernel, 7 images over the threads
    (3, 3, 1, 1, 1, 1, 1, 0),  # one output channel, 1x1 images
    (3, 1, 20, 17, 3, 3, 1, 1),  # 340 output positions: products image by image
    (3, 2, 18, 18, 4, 2, 1, 0),  # 289 positions, two channels
]
# 3x3 stride-1 convolutions with enough channels for Winograd's F(2x2, 3x3): odd output sizes (the
# last tiles cut), no padding, padding 2, and images large enough that a thread's chunk takes
# several blocks of images
WINOGRAD_GEOMETRIES = [
    (5, 8, 9, 8, 4, 3, 1, 1),
    (3, 9, 7, 6, 5, 3, 1, 0),
    (2, 8, 5, 5, 3, 3, 1, 2),
    (5, 8, 26, 27, 4, 3, 1, 1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES + WINOGRAD_GEOMETRIES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d(geometry, dtype, bias, numpy_rng):
    n, c, h, w, o, k, s, p = geometry
    x = numpy_rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = numpy_rng.standard_normal((o, c, k, k)).astype(dtype)
    b = numpy_rng.standard_normal(o).astype(dtype) if bias else None
    grad = numpy_rng.standard_normal((n, o, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)).astype(dtype)

    def run():
        y, cache = F.conv2d(x, weight, b, s, p)
        return (y, *F.conv2d_backward(cache, grad))

    assert_same(*both_paths(run), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES)
@pytest.mark.parametrize("output_padding", [0, 1])
def test_conv_transpose2d(geometry, dtype, output_padding, numpy_rng):
    n, c, h, w, o, k, s, p = geometry
    output_padding = min(output_padding, s - 1)
    x = numpy_rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = numpy_rng.standard_normal((c, o, k, k)).astype(dtype)
    b = numpy_rng.standard_normal(o).astype(dtype)
    out_shape = F.conv_transpose2d(x, weight, b, s, p, output_padding)[0].shape
    grad = numpy_rng.standard_normal(out_shape).astype(dtype)

    def run():
        y, cache = F.conv_transpose2d(x, weight, b, s, p, output_padding)
        return (y, *F.conv_transpose2d_backward(cache, grad))

    assert_same(*both_paths(run), dtype)


@pytest.mark.parametrize("geometry", WINOGRAD_GEOMETRIES)
def test_winograd_serves_3x3_stride_1_convolutions_with_enough_channels(geometry, numpy_rng):
    n, c, h, w, o, k, s, p = geometry
    backends.set_kernels("compiled")
    _, cache = F.conv2d(numpy_rng.standard_normal((n, c, h, w)), numpy_rng.standard_normal((o, c, k, k)), None, s, p)
    assert CONV2D.implementation_of(cache) == "winograd"
    _, cache = F.conv2d(numpy_rng.standard_normal((n, 1, h, w)), numpy_rng.standard_normal((o, 1, k, k)), None, s, p)
    assert CONV2D.implementation_of(cache) == "compiled"  # one input channel: im2col's products are cheaper


# (input channels, image size, path): im2col with one product per chunk, image by image, Winograd
@pytest.mark.parametrize("channels, size, path", [(2, 6, "compiled"), (2, 17, "compiled"), (8, 6, "winograd")])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("input_grad, param_grads", [(False, True), (True, False)])
def test_conv_gradients_not_asked_for_stay_none(channels, size, path, bias, input_grad, param_grads, numpy_rng):
    x = numpy_rng.standard_normal((3, channels, size, size))
    weight = numpy_rng.standard_normal((4, channels, 3, 3))
    y, cache = F.conv2d(x, weight, numpy_rng.standard_normal(4) if bias else None, 1, 1)
    grads = F.conv2d_backward(cache, np.ones_like(y), input_grad=input_grad, param_grads=param_grads)
    assert CONV2D.implementation_of(cache) == path
    assert [g is None for g in grads] == [not input_grad, not param_grads, not (param_grads and bias)]
    full = F.conv2d_backward(cache, np.ones_like(y))
    for asked, complete in zip(grads, full):
        if asked is not None:
            np.testing.assert_array_equal(asked, complete)


# (kernel, stride, padding) of max-pools: the CNN's 2x2 (its own unrolled kernel) and the general one
POOLS = [(2, 2, 0), (3, 1, 1), (2, 3, 1), (3, 2, 0), ((2, 3), (1, 2), (1, 1))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("window", POOLS)
@pytest.mark.parametrize("size", [(8, 8), (9, 7)])
def test_max_pool2d_with_ties(window, size, dtype, numpy_rng):
    x = numpy_rng.integers(-2, 3, (3, 2, *size)).astype(dtype)  # many ties: the first maximum takes it

    def run():
        y, cache = F.max_pool2d(x, *window)
        grad = np.arange(y.size, dtype=dtype).reshape(y.shape)
        return y, F.max_pool2d_backward(cache, grad)

    assert_same(*both_paths(run), dtype)


def test_max_pool2d_nan_propagates_like_the_portable_maximum():
    x = np.zeros((1, 1, 4, 4), dtype=np.float32)
    x[0, 0, 1, 1] = np.nan
    portable, compiled = both_paths(lambda: F.max_pool2d(x, 2)[0])
    np.testing.assert_array_equal(np.isnan(compiled), np.isnan(portable))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 3, 5, 4), (9, 4), (2, 5, 3)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("input_grad", [True, False])
def test_batch_norm(shape, dtype, training, input_grad, numpy_rng):
    x = (numpy_rng.standard_normal(shape) * 3 + 2).astype(dtype)
    gamma, beta = (numpy_rng.standard_normal(shape[1]).astype(dtype) for _ in range(2))
    grad = numpy_rng.standard_normal(shape).astype(dtype)

    def run():
        mean, var = np.zeros(shape[1], dtype), np.ones(shape[1], dtype)
        y, cache = F.batch_norm(x, gamma, beta, mean, var, training)
        return (y, mean, var, *F.batch_norm_backward(cache, grad, input_grad=input_grad))

    assert_same(*both_paths(run), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_on_a_transposed_array(dtype, numpy_rng):
    x = numpy_rng.standard_normal((32, 24, 24)).astype(dtype).transpose(2, 0, 1)  # not C-contiguous, 2^14+ values
    grad = numpy_rng.standard_normal((24, 32, 24)).astype(dtype).transpose(1, 2, 0).transpose(2, 0, 1)

    def run():
        y, cache = F.relu(x)
        return y, F.relu_backward(cache, grad)

    assert_same(*both_paths(run), dtype)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_in_float32_is_within_2e_6_of_the_c_librarys_erf_and_exp(approximate, numpy_rng):
    """float32 runs loops of its own (erf and exp as float32 polynomials); the float64 loops call the
    C library's erf and exp: on the same float32 values, tails, zeros, NaN and infinities included
    (NaN where the float64 loops give NaN: -inf's forward 0 * -inf, both infinities' gradients)."""
    magnitudes = np.geomspace(1e-30, 3e38, 300)
    x = np.concatenate([np.linspace(-12, 12, 48001), 4 * numpy_rng.standard_normal(16384), magnitudes, -magnitudes])
    x = np.concatenate([x, [0.0, -0.0, np.inf, -np.inf, np.nan]]).astype(np.float32)
    grad = numpy_rng.standard_normal(x.shape).astype(np.float32)
    backends.set_kernels("compiled")
    with forced("gelu", "compiled"):
        y, cache = F.gelu(x, approximate)
        y64, cache64 = F.gelu(x.astype(np.float64), approximate)
        grad_x, grad_x64 = F.gelu_backward(cache, grad), F.gelu_backward(cache64, grad.astype(np.float64))
    assert y.dtype == grad_x.dtype == np.float32
    np.testing.assert_allclose(y, y64, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(grad_x, grad_x64, rtol=2e-6, atol=2e-6)
    assert np.isnan(y[-1]) and np.isnan(grad_x[-1]) and y[-5] == 0 and y[-3] == np.inf


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 2, 7])
@pytest.mark.parametrize("transposed_input", [False, True])
def test_linear(batch, dtype, transposed_input, numpy_rng):
    x = numpy_rng.standard_normal((5, batch) if transposed_input else (batch, 5)).astype(dtype)
    x = x.T if transposed_input else x
    weight, bias = numpy_rng.standard_normal((3, 5)).astype(dtype), numpy_rng.standard_normal(3).astype(dtype)
    grad = numpy_rng.standard_normal((batch, 3)).astype(dtype)

    def run():
        y, cache = F.linear(x, weight, bias)
        return (y, *F.linear_backward(cache, grad))

    assert_same(*both_paths(run), dtype)


def test_adam_steps(numpy_rng):
    start = numpy_rng.standard_normal((130, 128)).astype(np.float32)  # enough values for the compiled update
    grads = [numpy_rng.standard_normal((130, 128)).astype(np.float32) for _ in range(4)]

    def run():
        parameter = diynn.Parameter(start.copy())
        optimizer = diynn.Adam([parameter], lr=0.1)
        for grad in grads:
            parameter.grad = grad
            optimizer.step()
        return (parameter.data,)

    assert_same(*both_paths(run), np.float32)


def test_cnn_training_steps_agree(numpy_rng):
    """Two Adam steps of the default CNN: the paths differ only in the order of their sums."""
    x = numpy_rng.random((6, 1, 28, 28), dtype=np.float32)
    y = numpy_rng.integers(0, 10, 6)

    def run():
        model = diynn.cnn(rng=0)
        trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.Adam(model.parameters()))
        losses = [float(trainer.step(*trainer.prepare(x, y))[0]) for _ in range(2)]
        return [np.array(losses)] + [p.data for p in model.parameters()]

    portable, compiled = both_paths(run)
    for expected, actual in zip(portable, compiled):
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


def test_small_elementwise_work_stays_portable():
    from diynn.backends.cpu_kernels import SMALLEST_PARALLEL_WORK
    from diynn.functional.activations import _relu_flat

    numpy = backends.get("numpy")
    assert numpy.compiled(_relu_flat, size=SMALLEST_PARALLEL_WORK - 1) is None
    assert numpy.compiled(_relu_flat, size=SMALLEST_PARALLEL_WORK) is not None


def test_unknown_kernels_name_is_a_clear_error():
    with pytest.raises(backends.BackendError, match="valid names are: compiled, portable"):
        backends.set_kernels("fast")


def test_compiled_kernels_hold_numpy_blas_at_one_thread_and_give_the_threads_back():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    script = (
        "import threadpoolctl; from diynn import backends\n"
        "def blas(): return max(i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas')\n"
        "before = blas(); backends.set_kernels('compiled'); during = blas(), backends.kernel_threads()\n"
        "backends.set_kernels('portable'); print(before, *during, blas())\n"
    )
    environment = {**os.environ, "OMP_NUM_THREADS": "2", "DIYNN_KERNELS": "portable"}
    out = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, check=True)
    before, during, threads, after = map(int, out.stdout.split())
    assert threadpoolctl is not None and (during, after) == (1, before)
    assert threads == min(before, os.cpu_count())  # numba's pool takes the BLAS's place


def test_kernels_setting_comes_from_the_environment():
    script = "import diynn; from diynn import backends; print(backends.kernels())"
    runs = {  # both at once, on the two cores: each is mostly Python starting and importing diynn
        name: subprocess.Popen(
            [sys.executable, "-c", script],
            env={**os.environ, "DIYNN_KERNELS": name},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("portable", "compiled")
    }
    for name, run in runs.items():
        out, err = run.communicate()
        assert run.returncode == 0, err
        assert out.strip() == name


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_steps(momentum, nesterov, numpy_rng):
    start = numpy_rng.standard_normal((130, 128)).astype(np.float32)
    grads = [numpy_rng.standard_normal((130, 128)).astype(np.float32) for _ in range(3)]

    def run():
        parameter = diynn.Parameter(start.copy())
        optimizer = diynn.SGD([parameter], lr=0.1, momentum=momentum, nesterov=nesterov)
        for grad in grads:
            parameter.grad = grad
            optimizer.step()
        return (parameter.data,)

    assert_same(*both_paths(run), np.float32)


def test_kernels_run_in_a_forked_child_and_from_several_threads():
    script = (
        "import os, threading, numpy as np\n"
        "from diynn import functional as F\n"
        "x = np.random.default_rng(0).random((16, 4, 8, 8), dtype=np.float32)\n"
        "expected = F.max_pool2d(x, 2)[0]\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    from diynn import backends\n"
        "    same = np.array_equal(F.max_pool2d(x, 2)[0], expected)\n"
        "    os._exit(0 if same and backends.kernels() == 'portable' else 3)\n"
        "assert os.waitpid(pid, 0)[1] == 0, 'the forked child failed'\n"
        "results = []\n"
        "def work(): results.extend(np.array_equal(F.max_pool2d(x, 2)[0], expected) for _ in range(50))\n"
        "threads = [threading.Thread(target=work) for _ in range(3)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(len(results), all(results))\n"
    )
    environment = {**os.environ, "NUMBA_THREADING_LAYER": "omp"}  # the pool a forked child cannot use
    out = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["150", "True"]


def test_blas_gemm_takes_dtypes_and_scalar_types_and_refuses_integers():
    backends.set_kernels("compiled")
    assert backends.blas_gemm(np.float32) is backends.blas_gemm(np.dtype("float32"))
    with pytest.raises(backends.BackendError, match="float32 or float64 arrays, got int64"):
        backends.blas_gemm(np.int64)


def test_a_kernel_is_compiled_anew_when_a_kernel_it_calls_changes_in_another_file(tmp_path):
    """numba's disk cache checks only the compiled function's own file: a caller whose callee lives
    in another file would otherwise load its old compiled code, callee and all."""
    (tmp_path / "callee.py").write_text(
        "from diynn.backends import kernel\n@kernel\ndef scale(x):\n    return 2.0 * x\n"
    )
    (tmp_path / "caller.py").write_text(
        "from diynn.backends import kernel\nfrom callee import scale\n"
        "@kernel\ndef twice(x):\n    return scale(x) + 1.0\n"
    )
    script = (
        "import caller; from diynn import backends\nbackends.set_kernels('compiled')\n"
        "print(backends.cpu_kernels.compile_kernel(caller.twice)(1.0))\n"
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]), "DIYNN_KERNELS": "compiled"}

    def run():
        out = subprocess.run(
            [sys.executable, "-c", script], env=environment, capture_output=True, text=True, cwd=tmp_path
        )
        assert out.returncode == 0, out.stderr
        return float(out.stdout)

    assert run() == 3.0 and run() == 3.0  # compiled, then loaded from the cache
    (tmp_path / "callee.py").write_text(
        "from diynn.backends import kernel\n@kernel\ndef scale(x):\n    return 5.0 * x\n"
    )
    assert run() == 6.0


@pytest.mark.parametrize("size", [6, 17])  # one product per chunk; image by image (289 positions)
def test_conv2d_backward_takes_a_strided_output_gradient(size, numpy_rng):
    x, weight = numpy_rng.standard_normal((3, 2, size, size)), numpy_rng.standard_normal((4, 2, 2, 2))
    wide = numpy_rng.standard_normal((3, 4, size - 1, 2 * (size - 1)))
    grad = wide[..., ::2]  # every other column: (N, O, OH, OW) with a column stride of 2

    def run():
        _, cache = F.conv2d(x, weight, None, 1, 0)
        return F.conv2d_backward(cache, grad)

    assert_same(*both_paths(run), np.float64)


def test_a_kernel_written_without_a_file_compiles():
    """A kernel typed into a REPL or run by exec has no source file for numba's disk cache and no
    module name: it compiles all the same (not cached)."""
    backends.set_kernels("compiled")
    scope = {"kernel": backends.kernel, "parallel_range": backends.parallel_range, "__name__": None}
    exec("@kernel\ndef doubled(x, y):\n    for i in parallel_range(x.shape[0]):\n        y[i] = 2 * x[i]\n", scope)
    x = np.arange(5.0)
    y = np.empty_like(x)
    backends.get("numpy").compiled(scope["doubled"])(x, y)
    np.testing.assert_array_equal(y, 2 * x)


def test_compiled_optimiser_updates_compute_in_the_parameters_dtype():
    """float32 in, float32 arithmetic, bit for bit: a scalar given to numba as a Python float made it
    compute each element in float64 and round once, which differs in the last bit for some elements."""
    backends.set_kernels("compiled")
    rng = np.random.default_rng(0)
    start, grad = (rng.standard_normal(2**15).astype(np.float32) for _ in range(2))
    lr, momentum = np.float32(0.1), np.float32(0.9)
    for family, make, expected in [
        ("sgd", lambda p: diynn.SGD(p, lr=0.1), start - lr * grad),
        (
            "sgd_momentum",
            lambda p: diynn.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
            start - lr * (grad + momentum * grad),  # the first step's momentum buffer is the gradient
        ),
    ]:
        parameter = diynn.Parameter(start.copy())
        parameter.grad = grad
        with forced(family, "compiled"):
            make([parameter]).step()
        np.testing.assert_array_equal(parameter.data, expected, err_msg=family)
