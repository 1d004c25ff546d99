"""The wheel installs diynn under its own name: site-packages gains `diynn` and `diynn_experiments`,
never a generic top-level package such as `backends` (PyPI has one of that name)."""

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "diynn", "backends", "experiments/helpers")

TRAIN = """
import importlib.util, numpy as np, diynn
assert importlib.util.find_spec("backends") is None, "a top-level backends is importable"
rng = np.random.default_rng(0)
x, y = rng.random((64, 4), dtype=np.float32), rng.integers(0, 3, 64)
model = diynn.mlp([4, 16, 3], rng=0)
trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.Adam(model.parameters(), lr=1e-2))
history = trainer.fit(x, y, epochs=3, batch_size=16, progress=False)
assert history["loss"][-1] < history["loss"][0], history["loss"]
print(diynn.__file__, diynn.backends.__file__, diynn.get_backend().name)
"""


def run(*command, **options):
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, **options)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_adds_only_diynns_names_and_trains_from_there(tmp_path):
    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ there
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        copy(
            ROOT / name,
            source / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}),
        )
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check")
    run(*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp_path / "wheel", source)
    (wheel,) = (tmp_path / "wheel").glob("diynn-*.whl")

    run(sys.executable, "-m", "venv", "--without-pip", tmp_path / "venv")
    python = tmp_path / "venv" / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    # the dependencies (numpy, numba, ...) from this environment; its editable diynn stays out (a
    # .pth file in a folder listed by a .pth file is not read)
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    before = set(site.iterdir())
    run(*pip, "--python", python, "install", "--no-deps", "--no-index", wheel)
    added = {path.name for path in set(site.iterdir()) - before if not path.name.endswith(".dist-info")}
    assert added == {"diynn", "diynn_experiments"}
    assert (site / "diynn" / "backends" / "cpu_kernels.py").is_file()

    printed = run(python, "-c", TRAIN, cwd=tmp_path).split()
    assert printed[:2] == [str(site / "diynn" / "__init__.py"), str(site / "diynn" / "backends" / "__init__.py")]
    assert printed[2] == "numpy"
