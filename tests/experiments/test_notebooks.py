"""The tutorial notebooks (experiments/notebooks): each runs top to bottom in a fresh kernel in
quick mode, and each committed .ipynb holds exactly the cells of its paired .py source, with the
outputs of a full run (figures included)."""

from pathlib import Path

import pytest
from conftest import fashion_mnist_present

pytest.importorskip("nbclient", reason='the notebook tests need nbclient and ipykernel (pip install -e ".[test]")')
pytest.importorskip("jupytext", reason='the notebook tests need jupytext (pip install -e ".[test]")')
import run as notebooks  # noqa: E402 (experiments/notebooks/run.py, after the skips)

pytestmark = pytest.mark.slow  # each notebook runs in a fresh kernel

NOTEBOOKS = Path(__file__).resolve().parents[2] / "experiments" / "notebooks"

SOURCES = notebooks.sources()


def test_there_is_a_notebook_per_seed_notebook_and_for_the_later_work():
    assert len(SOURCES) == 8
    assert all((NOTEBOOKS / f"{source.stem}.ipynb").is_file() for source in SOURCES)


@pytest.mark.parametrize("source", SOURCES, ids=[source.stem for source in SOURCES])
def test_notebook_runs_in_quick_mode(source, tmp_path):
    if "two_layer" not in source.stem and not fashion_mnist_present():
        pytest.skip("Fashion-MNIST is not installed here: apt-get install dataset-fashion-mnist")
    assert notebooks.main(["--quick", "--out", str(tmp_path), source.stem]) == 0
    executed = (tmp_path / f"{source.stem}.ipynb").read_text()
    assert '"output_type": "error"' not in executed


@pytest.mark.parametrize("source", SOURCES, ids=[source.stem for source in SOURCES])
def test_committed_notebook_is_its_source_with_full_run_outputs(source):
    import nbformat

    committed = nbformat.read(NOTEBOOKS / f"{source.stem}.ipynb", as_version=4)
    expected = notebooks.build(source)
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in expected.cells], (
        f"{source.stem}.ipynb differs from {source.name}: rerun python experiments/notebooks/run.py {source.stem}"
    )
    code = [cell for cell in committed.cells if cell.cell_type == "code"]
    assert all(cell.get("execution_count") for cell in code), "every code cell has run"
    assert not any(o.get("output_type") == "error" for cell in code for o in cell.outputs)
    text = "".join(str(o.get("text", "")) for cell in code for o in cell.outputs)
    assert "agree: False" not in text
    if any("plt.show()" in cell.source or "display(Image" in cell.source for cell in code):
        assert any("image/png" in o.get("data", {}) for cell in code for o in cell.outputs), "figures are kept"
