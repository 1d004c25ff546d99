"""Data-parallel training on MPI: two ranks started with the mpich wheel's mpiexec end with the
same parameters on every rank, equal to one process training on the global batches; batch norm's
running statistics agree across ranks; a rank that fails stops the job instead of hanging it."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import mpi_training
import numpy as np
import pytest

pytest.importorskip("mpi4py", reason='data-parallel training needs mpi4py (pip install -e ".[mpi]")')

TESTS = Path(__file__).resolve().parents[1]

MPIEXEC = shutil.which("mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def _two_ranks(tmp_path, *kinds, timeout=120, **environment):
    if MPIEXEC is None:
        pytest.skip('no mpiexec: pip install -e ".[mpi]" brings the mpich wheel\'s')
    environment = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", **environment}
    command = [MPIEXEC, "-n", "2", sys.executable, str(TESTS / "mpi_training.py"), str(tmp_path), *kinds]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)


def _rank(folder, kind, rank):
    saved = np.load(folder / f"{kind}-rank{rank}.npz")
    state = {name.replace("/", "."): saved[name] for name in saved.files if name != "history"}
    return state, json.loads(str(saved["history"]))


@pytest.fixture(scope="module")
def trained_on_two_ranks(tmp_path_factory):
    """The folder of one two-rank job that trained the MLP, the CNN with batch norm and the ResNet."""
    folder = tmp_path_factory.mktemp("two_ranks")
    result = _two_ranks(folder, "mlp", "cnn", "resnet")
    assert result.returncode == 0, result.stderr
    return folder


@pytest.mark.slow
def test_two_ranks_train_like_one_process_on_the_global_batch(trained_on_two_ranks):
    (first, history), (second, _) = _rank(trained_on_two_ranks, "mlp", 0), _rank(trained_on_two_ranks, "mlp", 1)
    model, expected = mpi_training.train("mlp")  # one process, same seed, global batches of 15
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(first[name], second[name], err_msg=f"ranks differ in {name}")
        np.testing.assert_allclose(first[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-5)
    np.testing.assert_allclose(history["accuracy"], expected["accuracy"])


@pytest.mark.slow
def test_batch_norm_statistics_are_averaged_across_ranks(trained_on_two_ranks):
    (first, _), (second, _) = _rank(trained_on_two_ranks, "cnn", 0), _rank(trained_on_two_ranks, "cnn", 1)
    assert "1.running_mean" in first and not np.allclose(first["1.running_mean"], 0)
    for name in first:
        np.testing.assert_allclose(first[name], second[name], rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.slow
def test_a_model_that_branches_trains_data_parallel(trained_on_two_ranks):
    """A ResNet (Residual blocks, a strided shortcut, batch norms): every rank ends with the same
    weights, the shortcuts' included, and it learns."""
    (first, history), (second, _) = _rank(trained_on_two_ranks, "resnet", 0), _rank(trained_on_two_ranks, "resnet", 1)
    assert any("shortcut" in name for name in first)
    for name in first:
        np.testing.assert_allclose(first[name], second[name], rtol=1e-6, atol=1e-7, err_msg=name)
    assert history["loss"][-1] < history["loss"][0]


@pytest.mark.slow
def test_a_failing_rank_stops_the_job_instead_of_hanging_it(tmp_path):
    result = _two_ranks(tmp_path, "die", timeout=60)  # a hang would raise TimeoutExpired
    assert result.returncode != 0
    assert "rank 1: aborting the MPI job after this error" in result.stderr
    assert not list(tmp_path.glob("*.npz"))


@pytest.mark.slow
def test_a_killed_rank_ends_the_job_instead_of_hanging_it(tmp_path):
    """No Python error to report: mpiexec itself tears the job down when a rank dies."""
    result = _two_ranks(tmp_path, "kill", timeout=60)  # a hang would raise TimeoutExpired
    assert result.returncode != 0 and not list(tmp_path.glob("*.npz"))
    assert "signal 9" in result.stdout + result.stderr


def test_a_single_process_is_unchanged_without_a_communicator():
    model, history = mpi_training.train("mlp")
    again, repeated = mpi_training.train("mlp")
    assert history["loss"] == repeated["loss"]


def test_shards_cover_a_global_batch_once():
    from diynn.training.distributed import Communicator

    communicator = Communicator.__new__(Communicator)
    parts = []
    for rank in range(3):
        communicator.rank, communicator.size = rank, 3
        parts.append(communicator.shard(np.arange(10)))
    assert [len(p) for p in parts] == [3, 3, 4] and np.array_equal(np.concatenate(parts), np.arange(10))


@pytest.mark.slow
def test_the_classification_script_trains_data_parallel(tmp_path):
    """fashion_mnist.py --data-parallel on two ranks, on generated files in the official layout."""
    from datasets_fixtures import make_files

    if MPIEXEC is None:
        pytest.skip('no mpiexec: pip install -e ".[mpi]" brings the mpich wheel\'s')
    make_files(tmp_path / "data", n_train=600, n_test=100, separable=True)
    script = TESTS.parent / "experiments" / "fashion_mnist.py"
    runner = tmp_path / "run_fashion_mnist.py"  # each rank: the generated files' checksums, then the script
    runner.write_text(
        textwrap.dedent(f"""
        import runpy, sys
        from pathlib import Path
        from datasets_fixtures import spec_for
        from diynn.datasets import loaders
        loaders.FASHION_MNIST = spec_for(Path({str(tmp_path / "data")!r}), n_train=600, n_test=100)
        sys.argv[0] = {str(script)!r}
        runpy.run_path({str(script)!r}, run_name="__main__")
    """)
    )
    arguments = ["--data-parallel", "--data-dir", str(tmp_path / "data"), "--limit", "500", "--epochs", "2"]
    arguments += ["--out", str(tmp_path / "out"), "--no-progress"]
    command = [MPIEXEC, "-n", "2", sys.executable, str(runner), *arguments]
    environment = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "DIYNN_CACHE_DIR": str(tmp_path / "cache")}
    environment["PYTHONPATH"] = os.pathsep.join([str(TESTS), environment.get("PYTHONPATH", "")])
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("test accuracy") == 1  # rank 0 alone reports and writes
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["ranks"] == 2 and metrics["test_accuracy"] > 0.5
    assert metrics["config"]["limit"] == 500 and len(metrics["history"]["loss"]) == 2


@pytest.mark.slow
def test_nccl_all_reduces_between_two_gpus(tmp_path):
    try:
        import cupy

        gpus = cupy.cuda.runtime.getDeviceCount()
    except Exception:
        gpus = 0
    if gpus < 2:
        pytest.skip("NCCL between ranks needs CuPy and two CUDA GPUs")
    result = _two_ranks(tmp_path, "nccl", DIYNN_BACKEND="cupy")
    assert result.returncode == 0, result.stderr
    (first, history), (second, _) = _rank(tmp_path, "nccl", 0), _rank(tmp_path, "nccl", 1)
    _, expected = mpi_training.train("mlp")
    for name in first:
        np.testing.assert_allclose(first[name], second[name], rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-4)


@pytest.mark.slow
def test_the_data_parallel_benchmark_measures_both_set_ups():
    if MPIEXEC is None:
        pytest.skip('no mpiexec: pip install -e ".[mpi]" brings the mpich wheel\'s')
    import data_parallel

    one, two = data_parallel.run("mlp", 1), data_parallel.run("mlp", 2)
    assert one["samples_per_s"] > 0 and one["allreduce_ms"] == 0
    assert two["samples_per_s"] > 0 and two["allreduce_ms"] > 0


def test_a_gpu_communicator_sends_its_collectives_through_the_backends_group():
    """The NCCL glue without a GPU: a one-rank job whose backend offers a recording group."""
    import diynn
    from diynn.training.distributed import NcclCommunicator

    class Group:
        calls = []

        def allreduce_sum(self, array):
            self.calls.append(("allreduce", array.shape))
            return array * 2  # as if a second rank held the same values

        def broadcast(self, array):
            self.calls.append(("broadcast", array.shape))
            return array

    class Backend:
        name = "fake-gpu"

        def collective_group(self, size, rank, share):
            assert (size, rank, share("id")) == (1, 0, "id")
            return Group()

    communicator = NcclCommunicator(Backend())
    model = diynn.mlp([3, 2], rng=0)
    communicator.broadcast_model(model)
    for parameter in model.parameters():
        parameter.grad = np.ones_like(parameter.data)
    communicator.allreduce_gradients(model.parameters(), share=0.5)
    assert Group.calls == [("broadcast", (8,)), ("allreduce", (8,))]
    assert all(np.array_equal(p.grad, np.ones_like(p.data)) for p in model.parameters())  # 2 x 0.5 x 1

    class Without(Backend):
        def collective_group(self, size, rank, share):
            return None

    with pytest.raises(diynn.BackendError, match="no collective group"):
        NcclCommunicator(Without())


def test_batches_smaller_than_the_ranks_are_a_clear_error():
    """Each rank needs a share of every global batch: fewer samples than ranks is refused up front."""
    import diynn
    from diynn.training.distributed import Communicator

    communicator = Communicator.__new__(Communicator)
    communicator.rank, communicator.size = 0, 4
    model = diynn.mlp([12, 3], rng=0)
    optimizer = diynn.SGD(model.parameters(), lr=0.1)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), optimizer, communicator=communicator)
    x, y = mpi_training.data("mlp")
    with pytest.raises(ValueError, match="on 4 ranks needs batches of at least 4 samples, got batch_size=2"):
        trainer.fit(x, y, batch_size=2, progress=False)
