"""Build the notebooks from their paired sources and run them top to bottom in a fresh kernel.

The sources are the `NN_*.py` files beside this one (jupytext's percent format: the files to edit
and review); each becomes `NN_*.ipynb` with its outputs, which is what a reader opens.

    python experiments/notebooks/run.py                       # full run: rewrites the .ipynb files
    python experiments/notebooks/run.py --quick --out /tmp/nb # quick mode (the test suite's)
    python experiments/notebooks/run.py 03_autoencoders       # one notebook

Quick mode sets DIYNN_NOTEBOOK_QUICK=1: small data and one or two epochs. Execution timestamps are
not recorded and cell ids are numbered, so a rerun only changes what the outputs change.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from diynn_experiments.common import write_atomic

HERE = Path(__file__).resolve().parent
# the pools a kernel may start: NumPy's BLAS, OpenMP (scikit-learn, PyTorch), numba (diynn's compiled kernels)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def sources(names=()) -> list[Path]:
    found = sorted(path for path in HERE.glob("[0-9][0-9]_*.py"))
    return [path for path in found if not names or path.stem in names]


def build(source: Path):
    """The notebook of a jupytext percent-format source, with numbered cell ids."""
    import jupytext

    notebook = jupytext.read(source)
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index}"
    notebook.metadata.pop("jupytext", None)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def execute(notebook, quick: bool, timeout: int = 1800, threads: int | None = None):
    """Run every cell in a fresh kernel started in this folder; raises on the first error.

    `threads` caps the kernel's thread pools (BLAS, OpenMP, numba); None leaves them one per core.
    """
    from nbclient import NotebookClient

    env = dict(os.environ, DIYNN_NOTEBOOK_QUICK="1" if quick else "0")
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # figures inline, not Agg
    if threads:
        env.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", record_timing=False, resources={"metadata": {"path": HERE}}
    )
    client.execute(env=env)  # the kernel's environment; this process's own is left as it was
    notebook.metadata.get("language_info", {}).pop("version", None)  # the patch level is noise in a diff
    return notebook


def main(argv=None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebooks to run (file stems); default: all")
    parser.add_argument("--quick", action="store_true", help="small data, few epochs (DIYNN_NOTEBOOK_QUICK=1)")
    parser.add_argument("--out", type=Path, default=HERE, help="where the executed .ipynb files go")
    parser.add_argument("--threads", type=int, help="threads per kernel (default: one per core)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for source in sources(args.names):
        start = time.perf_counter()
        notebook = execute(build(source), args.quick, threads=args.threads)
        write_atomic(args.out / f"{source.stem}.ipynb", nbformat.writes(notebook) + "\n")
        print(f"{source.stem}: ran in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
