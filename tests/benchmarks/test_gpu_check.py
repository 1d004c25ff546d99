"""benchmarks/gpu_check.py as a dry run on the CPU: every step it can run without a GPU runs at toy
sizes, so the script a GPU session runs in one call cannot rot in between."""

import json
import sys
from pathlib import Path

import gpu_check
import pytest


@pytest.mark.slow
def test_dry_run_passes_every_step_it_can(tmp_path, capsys):
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path), "--budget", "300"]) == 0
    summary = (tmp_path / "summary.md").read_text()
    rows = [line for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| step")]
    assert len(rows) == 9
    for row in rows:
        assert "| passed |" in row or "| skipped (" in row, row
    assert "| CUDA graph vs eager | skipped (needs a GPU) |" in summary
    assert "| probe: cuBLAS recorded in a CUDA graph through ctypes | skipped (needs a GPU) |" in summary
    assert "| benchmark report | passed |" in summary
    assert "| cuDNN graphs against im2col | passed |" in summary  # the stand-in's tests, on the CPU
    assert (tmp_path / "logs.txt").stat().st_size > 0
    assert {p.suffix for p in (tmp_path / "report").iterdir()} == {".json", ".md", ".png"}
    # the report parsed the GPU's whole command line, and the toy sizes after it took effect
    settings = json.loads(next((tmp_path / "report").glob("*.json")).read_text())["settings"]
    assert [settings[name] for name in ("rounds", "batches", "cnn_batches", "kernel_rounds")] == [1, [8], [4], 1]
    assert settings["no_kernels"] and settings["conv_shapes"] == ["conv1"] and settings["peak_size"] == 128


def test_a_failing_step_fails_the_check(tmp_path, monkeypatch):
    broken = gpu_check.Step("a step that fails", [sys.executable, "-c", "raise SystemExit(2)"], 30)
    monkeypatch.setattr(gpu_check, "steps", lambda args, gpu: [broken])
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 1
    assert "| a step that fails | FAILED (exit 2) |" in (tmp_path / "summary.md").read_text()


def test_a_step_the_machine_cannot_do_is_reported_not_failed(tmp_path, monkeypatch):
    code = f"print('UNAVAILABLE: no way here'); raise SystemExit({gpu_check.UNAVAILABLE})"
    limited = gpu_check.Step("a step beyond this machine", [sys.executable, "-c", code], 30)
    monkeypatch.setattr(gpu_check, "steps", lambda args, gpu: [limited])
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    assert "| a step beyond this machine | unavailable (the log says why) |" in (tmp_path / "summary.md").read_text()


def test_the_staged_cudnn_frontend_is_the_one_the_gpu_extras_install():
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text().splitlines()
    extras = [line for line in pyproject if line.startswith(("gpu =", "gpu-cuda13 ="))]
    assert len(extras) == 2 and all(f'"{gpu_check.CUDNN_FRONTEND}"' in line for line in extras)
