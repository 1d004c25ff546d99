"""The benchmark report code on a tiny configuration (the benchmarks themselves never run here)."""

import json

import pytest
import report
import steps


@pytest.mark.slow
def test_tiny_report_writes_json_markdown_and_plot(tmp_path):
    result = report.main(
        [
            "--rounds",
            "1",
            "--seconds",
            "0.01",
            "--gap",
            "0",
            "--batches",
            "8",
            "--cnn-batches",
            "4",
            "--cnn-seconds",
            "0.01",
            "--conv-shapes",
            "conv1",
            "dec2",
            "--layer-shapes",
            "pool1",
            "bn2",
            "--conv-batch",
            "2",
            "--memory-steps",
            "3",
            "--memory-warmup",
            "2",
            "--peak-size",
            "128",
            "--kernel-rounds",
            "1",
            "--kernel-min-rounds",
            "1",
            "--no-gpu",
            "--out",
            str(tmp_path),
        ]
    )
    run = result["runs"][0]
    assert run["steps"][8]["ratio"]["ceiling"] > 0 and run["steps"][8]["roofline_fraction"] > 0
    assert run["machine"]["blas"] and run["peak_sgemm_gflops"] > 0
    # the pytest-benchmark kernel suite, one short run: every group gets both roles
    kernels = result["kernels"]
    assert any(group.startswith("cross-entropy") for group in kernels)
    assert all(times["ours"] > 0 and times["reference"] > 0 and times["ratio"] > 0 for times in kernels.values())
    names = {p.suffix for p in tmp_path.iterdir()}
    assert names == {".json", ".md", ".png"}
    saved = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert saved["runs"][0]["conv"]["conv1"]["im2col_buffer_mb"] > 0
    assert saved["runs"][0]["cnn"]["4"]["median_s"]["diynn-cnn"] > 0
    if report.torch_available():
        assert saved["runs"][0]["cnn"]["4"]["ratio"]["torch-cnn"] > 0
    assert "| dec2 (transposed 16->1, 4x4 stride 2, 14x14) |" in next(tmp_path.glob("*.md")).read_text()
    assert "| 8 |" in next(tmp_path.glob("*.md")).read_text()
    assert saved["runs"][0]["layers"]["bn2"]["median_s"]["layer-diynn:bn2"] > 0
    assert "| pool1 (max-pool 2x2, 32 channels, 28x28) |" in next(tmp_path.glob("*.md")).read_text()
    assert "On the GPU" not in next(tmp_path.glob("*.md")).read_text()
    one_thread = [r for r in saved["runs"] if r["environment"] == "1 thread"]
    assert len(one_thread) == 1 and {b["num_threads"] for b in one_thread[0]["machine"]["blas"]} == {1}
    markdown = next(tmp_path.glob("*.md")).read_text()
    assert "### Scaling: time at 1 thread / time at" in markdown and "| CNN | 4 |" in markdown
    assert "| conv1 | 2 |" in markdown and "| bn2 | 2 |" in markdown  # the layers scale too
    assert "GFLOP/s (128x128, measured before each batch)" in markdown
    assert "3 further steps than after the first 2;" in markdown and saved["runs"][0]["memory"]["warmup"] == 2
    assert "### Kernels" in markdown and all(f"| {group} |" in markdown for group in kernels)

    # the GPU table, from the same run with the lines a GPU machine adds
    run["machine"]["gpu"] = "Some GPU"
    times = {"diynn-cupy": 2e-4, "diynn-cupy-graph": 5e-5, "torch-cuda": 1e-4}
    run["steps"][8]["gpu"] = {"median_s": times, "ratio": {"diynn-cupy-graph": 4.0, "torch-cuda": 2.0}}
    cnn_times = {"diynn-cnn-cupy": 3e-3, "torch-cnn-cuda": 1.5e-3}  # no graph line: CuPy refused to record it
    run["cnn"][4]["gpu"] = {"median_s": cnn_times, "ratio": {"torch-cnn-cuda": 2.0}}
    run["cnn_graph_unavailable"] = "CuPy refuses cuBLAS calls while a stream is capturing"
    text = report.markdown(result)
    assert "MLP step on the GPU (Some GPU)" in text and "| 8 | 0.200 | 0.050 | 0.100 | 4.00 | 2.00 |" in text
    assert "CNN step (`diynn.cnn()`, Adam) on the GPU (Some GPU)" in text
    assert "| 4 | 3.000 | - | 1.500 | - | 2.00 |" in text
    assert "No CUDA-graph line: CuPy refuses cuBLAS calls while a stream is capturing" in text


@pytest.mark.parametrize(
    "name, call",
    [
        ("diynn-cnn", ("diynn_cnn_step", ("numpy", False))),
        ("diynn-cnn-cupy", ("diynn_cnn_step", ("cupy", False))),
        ("diynn-cnn-cupy-graph", ("diynn_cnn_step", ("cupy", True))),
        ("torch-cnn", ("torch_cnn_step", ("cpu",))),
        ("torch-cnn-cuda", ("torch_cnn_step", ("cuda",))),
    ],
)
def test_cnn_step_names_pick_the_backend_and_the_graph(name, call, monkeypatch):
    import workers

    calls = []
    for function in ("diynn_cnn_step", "torch_cnn_step"):
        monkeypatch.setattr(workers.step_library, function, lambda batch, *rest, f=function: calls.append((f, rest)))
    workers.make_step(name, 4)
    assert calls == [call]


def test_step_flops_counts_eight_gemms():
    # forward (3 GEMMs) + weight gradients (3) + input gradients of layers 2 and 3 (2)
    assert steps.step_flops(256) == 2 * 256 * (2 * (784 * 256 + 256 * 128 + 128 * 10) + 256 * 128 + 128 * 10)


def test_ceiling_and_diynn_steps_agree():
    """The hand-written ceiling computes the same update as diynn (same init, same batch)."""
    import numpy as np

    import diynn

    with diynn.use("numpy"):  # the ceiling is NumPy code, initialised from NumPy's random numbers
        model = diynn.mlp(list(steps.SIZES), rng=0)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.SGD(model.parameters(), lr=steps.LEARNING_RATE))
    x, y = trainer.prepare(*steps.batch_data(16))
    trainer.step(x, y)
    ceiling, _ = steps.ceiling_step(16)
    assert np.array_equal(ceiling.weights[0], model.backend.to_numpy(model[0].weight.data)) is False
    ceiling()
    for ours, theirs in zip(model.parameters()[::2], ceiling.weights):
        np.testing.assert_allclose(model.backend.to_numpy(ours.data), theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_openblas_coretype_set_adds_a_run_without_it(tmp_path, monkeypatch):
    """Where OPENBLAS_CORETYPE is set, the report also measures with OpenBLAS choosing its own kernel."""
    import os

    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    tiny = ["--rounds", "1", "--seconds", "0.01", "--gap", "0", "--batches", "8", "--cnn-batches", "--conv-shapes"]
    tiny += ["--layer-shapes", "--memory-steps", "3", "--memory-warmup", "2", "--peak-size", "128"]
    options = ["--no-kernels", "--no-torch", "--no-one-thread", "--out", str(tmp_path)]
    result = report.main(tiny + options)
    runs = result["runs"]
    assert [run["environment"] for run in runs] == ["default environment", "OPENBLAS_CORETYPE unset"]
    assert [run["machine"]["OPENBLAS_CORETYPE"] for run in runs] == ["Haswell", None]  # as the workers saw it
    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"
    assert "### OPENBLAS_CORETYPE unset" in next(tmp_path.glob("*.md")).read_text()


def test_kernel_suite_runs_give_per_group_medians(monkeypatch):
    """Each of `kernel_rounds` runs of the suite times every pair once; the report keeps, per group,
    the median of ours, of the reference and of their ratio over the runs (the suite's real run is
    in the tiny report above)."""
    import argparse

    runs = iter(
        [
            {"relu": {"ours": 1.0, "reference": 2.0, "ratio": 0.5}},
            {"relu": {"ours": 3.0, "reference": 2.0, "ratio": 1.5}},
            {"relu": {"ours": 2.0, "reference": 8.0, "ratio": 0.25}},
        ]
    )
    monkeypatch.setattr(report, "_kernel_run", lambda args: next(runs))
    kernels = report.kernel_benchmarks(argparse.Namespace(seconds=0.005, kernel_rounds=3))
    assert kernels == {"relu": {"ours": 2.0, "reference": 2.0, "ratio": 0.5}}


def test_the_torch_cnn_is_the_same_network():
    """The CNN step is compared with PyTorch on the same architecture: same parameter shapes."""
    import pytest

    pytest.importorskip("torch")
    import diynn

    step, _ = steps.torch_cnn_step(2)
    theirs = [tuple(p.shape) for p in step.model.parameters()]
    ours = [tuple(p.shape) for p in diynn.cnn(rng=0).parameters()]
    assert sorted(ours) == sorted(theirs)
