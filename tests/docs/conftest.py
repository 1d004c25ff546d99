"""The documentation site, built once per test session (`mkdocs build --strict`: about 5 s, the
notebooks converted but not run) and shared by the tests that read it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The built site's folder. A build that fails, strict mode's warnings included, fails every
    test that uses it, with MkDocs' messages."""
    pytest.importorskip("mkdocs", reason='the docs need MkDocs (pip install -e ".[test]")')
    folder = tmp_path_factory.mktemp("docs") / "site"
    environment = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)]
    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed:\n{result.stderr[-3000:]}", pytrace=False)
    return folder
