"""The documentation site (mkdocs.yml, docs/): `mkdocs build --strict` fails on a broken link, a
missing page or notebook, or an API reference that no longer resolves."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds the whole site

ROOT = Path(__file__).resolve().parents[2]


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason='the docs need MkDocs (pip install -e ".[test]")')
    environment = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for page in ("index.html", "concepts/modules/index.html", "api/diynn/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    notebook = (tmp_path / "site" / "notebooks" / "06_convolutional_networks" / "index.html").read_text()
    assert "col2im" in notebook and "data:image/png;base64" in notebook  # the maths and a figure
    api = (tmp_path / "site" / "api" / "diynn" / "index.html").read_text()
    assert 'id="diynn.Linear"' in api and 'id="diynn.NTXentLoss"' in api  # the reference lists the exports
