"""Shared fixtures: `backend` runs a test once per available backend (NumPy, the strict array-API
stand-in, and CuPy when a GPU is present). Tests without the fixture run on the active backend,
DIYNN_BACKEND's (NumPy by default): `DIYNN_BACKEND=cupy python -m pytest` runs them on the GPU.
`site` is the documentation site, built once per session for the tests that read it."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diynn import backends


def _available():
    names = ["numpy", "array_api_strict"]
    try:
        backends.get("cupy")
        names.append("cupy")
    except backends.BackendError:
        pass
    return names


AVAILABLE = _available()


@pytest.fixture(params=AVAILABLE)
def backend(request):
    with backends.use(request.param) as active:
        yield active


@pytest.fixture(scope="module")
def one_thread():
    """numba's pool and torch's (where imported) at one thread for a module of small arrays, where a
    parallel launch costs more than the work (milliseconds a call while other processes hold the
    cores). The compiled kernels split their loops into the same chunks as on more threads, run one
    after another."""
    backends.kernels()  # diynn sizes numba's pool when it first reads the setting
    pools = [pool for pool in (sys.modules.get("numba"), sys.modules.get("torch")) if pool is not None]
    threads = [pool.get_num_threads() for pool in pools]
    for pool in pools:
        pool.set_num_threads(1)
    yield
    for pool, count in zip(pools, threads):
        pool.set_num_threads(count)


@pytest.fixture
def numpy_rng():
    return np.random.default_rng(1234)


def cupy_graph_refusal():
    """Why the CuPy backend cannot record a matrix product in a CUDA graph (its matmul goes through
    its own cuBLAS handle while recording; CuPy itself refuses cuBLAS calls then), or None."""
    backend = backends.get("cupy")
    a = backend.xp.ones((4, 4), dtype=backend.xp.float32)
    try:
        backend.graph().capture(lambda: backend.matmul(a, a))
    except backends.BackendError as error:
        return str(error)
    return None


def fashion_mnist_present() -> bool:
    """Whether the real Fashion-MNIST is installed where diynn looks (never downloaded by a test)."""
    from diynn.datasets import FASHION_MNIST, search_folders

    return any((folder / FASHION_MNIST.files[0].name).is_file() for folder in search_folders(FASHION_MNIST, None))


@contextlib.contextmanager
def stopped_after_checkpoint(monkeypatch, epoch: int):
    """Within the block, a fit stops (KeyboardInterrupt, as a kill would) right after writing its
    checkpoint of `epoch`; the block must end so."""
    from diynn.training import checkpoint

    save = checkpoint.TrainingState.save

    def save_then_stop(self, path, done, history, stopped):
        save(self, path, done, history, stopped)
        if done == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.TrainingState, "save", save_then_stop)
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        monkeypatch.setattr(checkpoint.TrainingState, "save", save)


def assert_same_weights(path, other):
    """The models saved at the two paths hold bitwise the same parameters and buffers."""
    import diynn

    first, second = diynn.load_model(path).state_dict(), diynn.load_model(other).state_dict()
    assert list(first) == list(second)
    for name in first:
        np.testing.assert_array_equal(second[name], first[name], err_msg=name)


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The built documentation site's folder (`mkdocs build --strict`: about 5 s, the notebooks
    converted but not run). A build that fails, strict mode's warnings included, fails every test
    that uses it, with MkDocs' messages."""
    pytest.importorskip("mkdocs", reason='the docs need MkDocs (pip install -e ".[test]")')
    folder = tmp_path_factory.mktemp("docs") / "site"
    environment = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)]
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed:\n{result.stderr[-3000:]}", pytrace=False)
    return folder
