"""The tutorial notebooks (experiments/notebooks): each runs top to bottom in a fresh kernel in
quick mode, and each committed .ipynb holds exactly the cells of its paired .py source, with the
outputs of a full run (figures included)."""

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import fashion_mnist_present

pytest.importorskip("nbclient", reason='the notebook tests need nbclient and ipykernel (pip install -e ".[test]")')
pytest.importorskip("jupytext", reason='the notebook tests need jupytext (pip install -e ".[test]")')
import nbformat  # noqa: E402
import run as notebooks  # noqa: E402 (experiments/notebooks/run.py, after the skips)

pytestmark = pytest.mark.slow  # each notebook runs in a fresh kernel

NOTEBOOKS = Path(__file__).resolve().parents[2] / "experiments" / "notebooks"

SOURCES = notebooks.sources()


def runnable(source) -> bool:
    """Whether this machine has the data the notebook reads (all but the first read Fashion-MNIST)."""
    return "two_layer" in source.stem or fashion_mnist_present()


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def assert_ran_fully(notebook):
    """Every code cell ran, none failed, every check printed agrees, and a notebook that shows
    figures has them."""
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.get("execution_count") for cell in code), "every code cell has run"
    assert not any(o.get("output_type") == "error" for cell in code for o in cell.outputs)
    assert "agree: False" not in "".join(str(o.get("text", "")) for cell in code for o in cell.outputs)
    if any("plt.show()" in cell.source or "display(Image" in cell.source for cell in code):
        assert any("image/png" in o.get("data", {}) for cell in code for o in cell.outputs), "figures are kept"


@pytest.fixture(scope="module")
def quick_runs(request, tmp_path_factory):
    """The quick runs of the notebooks this session selected, all started on first use, as many at
    once as there are cores (at most 4), each in its own fresh kernel. A quick run spends most of
    its time in single-threaded work (imports, reading the data, small batches), so a 2-core
    machine runs two in about the time of one. Each kernel is held to one thread: two kernels with
    a thread pool per core each wait on each other's threads (notebooks 6 and 7 side by side on a
    busy 2-core machine: 25-35 s, against 14-16 s with one thread each). The compiled kernels'
    threads are tested in tests/functional.
    Gives {stem: (future of run.main's exit status, the executed notebook's path)}."""
    selected = [
        item.callspec.params["source"]
        for item in request.session.items
        if getattr(item, "function", None) is test_notebook_runs_in_quick_mode
    ]
    out = tmp_path_factory.mktemp("notebooks")
    with ThreadPoolExecutor(max(1, min(cores(), 4)), thread_name_prefix="notebook") as pool:
        yield {
            source.stem: (
                pool.submit(notebooks.main, ["--quick", "--threads", "1", "--out", str(out), source.stem]),
                out / f"{source.stem}.ipynb",
            )
            for source in reversed(selected)  # the later notebooks do the most: started first, none ends late alone
            if runnable(source)
        }
        pool.shutdown(cancel_futures=True)  # an interrupted session waits only for the runs under way


def test_there_is_a_notebook_per_seed_notebook_and_for_the_later_work():
    assert len(SOURCES) == 8
    assert all((NOTEBOOKS / f"{source.stem}.ipynb").is_file() for source in SOURCES)


@pytest.mark.parametrize("source", SOURCES, ids=[source.stem for source in SOURCES])
def test_notebook_runs_in_quick_mode(source, quick_runs):
    if not runnable(source):
        pytest.skip("Fashion-MNIST is not installed here: apt-get install dataset-fashion-mnist")
    status, executed = quick_runs[source.stem]
    assert status.result() == 0  # re-raises the run's error, naming the cell that failed
    assert_ran_fully(nbformat.read(executed, as_version=4))


@pytest.mark.parametrize("source", SOURCES, ids=[source.stem for source in SOURCES])
def test_committed_notebook_is_its_source_with_full_run_outputs(source):
    committed = nbformat.read(NOTEBOOKS / f"{source.stem}.ipynb", as_version=4)
    expected = notebooks.build(source)
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in expected.cells], (
        f"{source.stem}.ipynb differs from {source.name}: rerun python experiments/notebooks/run.py {source.stem}"
    )
    assert_ran_fully(committed)
