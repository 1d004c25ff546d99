"""readme_results.py copies exactly what the README's commands wrote, and refuses to run on an
incomplete results folder (the tables never mix runs or fall back to another configuration)."""

import json
from pathlib import Path

import pytest
import readme_results


def _fake_results(folder: Path):
    metrics = {
        "test_accuracy": 0.5,
        "history": {"loss": [1.0, 0.5]},
        "epoch_time_s": 1.0,
        "wall_time_s": 3.0,
        "peak_rss_mb": 100,
        "backend": "numpy",
        "cpu": "Some CPU",
        "blas": "openblas Haswell",
    }
    for name in readme_results.REQUIRED:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.startswith("hpo/"):
            hpo = {"trials": {"complete": 1}, "best_val_accuracy": 0.6, "default_val_accuracy": 0.5}
            hpo |= {"test_accuracy_retrained": 0.55, "wall_time_s": 9.0, "best_params": {"lr": 0.1}}
            path.write_text(json.dumps(hpo))
        elif name.endswith(".json"):
            path.write_text(json.dumps({**metrics, "test_accuracy": 0.9 if "cnn" in name else 0.8}))
        else:
            path.write_text(f"| table of {name} |\n")


def test_missing_results_name_the_command_that_makes_them(tmp_path):
    _fake_results(tmp_path / "results")
    (tmp_path / "results" / "fashion-mnist-cnn" / "metrics.json").unlink()
    readme = tmp_path / "README.md"
    readme.write_text("<!-- results:start -->\nold\n<!-- results:end -->\n")
    with pytest.raises(SystemExit, match=r"fashion-mnist-cnn/metrics.json  \(from: python experiments/fashion_mnist"):
        readme_results.main(["--results", str(tmp_path / "results"), "--readme", str(readme)])
    assert "old" in readme.read_text()


def test_tables_come_from_the_default_folders_and_name_the_host(tmp_path):
    _fake_results(tmp_path / "results")
    readme = tmp_path / "README.md"
    markers = "<!-- results:start -->\nold\n<!-- results:end -->\n<!-- performance:start -->\n<!-- performance:end -->"
    readme.write_text(f"intro\n{markers}\n")
    readme_results.main(["--results", str(tmp_path / "results"), "--readme", str(readme)])
    text = readme.read_text()
    assert "Made on (where a section names no host of its own): Some CPU, BLAS openblas Haswell" in text
    assert "| `python experiments/fashion_mnist.py` | 0.8000 |" in text
    assert "| `python experiments/fashion_mnist.py --model cnn` | 0.9000 |" in text
    assert "| table of fashion-mnist-activations/activations.md |" in text and "old" not in text


def test_only_the_classification_section_is_refreshed_from_its_own_runs(tmp_path):
    _fake_results(tmp_path / "results")
    (tmp_path / "results" / "autoencoder" / "reconstruction.md").unlink()  # other sections' runs are not needed
    readme = tmp_path / "README.md"
    title = "### Classification (`experiments/fashion_mnist.py`)"
    body = f"Made on: old\n\n{title}\n\nold table\n\n### Autoencoders\n\nkept"
    readme.write_text(f"<!-- results:start -->\n{body}\n<!-- results:end -->\n")
    readme_results.main(["--results", str(tmp_path / "results"), "--readme", str(readme), "--only", "classification"])
    text = readme.read_text()
    assert "old table" not in text and "| `python experiments/fashion_mnist.py --model cnn` | 0.9000 |" in text
    assert "This section made on: Some CPU, BLAS openblas Haswell" in text
    assert "Made on: old" in text and text.index(title) < text.index("### Autoencoders\n\nkept")


def test_refreshing_a_missing_section_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no subsection"):
        readme_results.replace_subsection("### Other\n", "### Classification", "new")


def test_the_protocol_section_is_added_after_the_self_supervised_one_then_refreshed(tmp_path):
    (tmp_path / "results" / "self_supervised_protocol").mkdir(parents=True)
    table = tmp_path / "results" / "self_supervised_protocol" / "protocol.md"
    table.write_text("| protocol table 1 |\n")
    (table.parent / "metrics.json").write_text(
        json.dumps({"cpu": "Some CPU", "blas": "openblas Haswell", "backend": "numpy"})
    )
    readme = tmp_path / "README.md"
    ssl = "### Self-supervised pretraining (`experiments/self_supervised.py`)"
    readme.write_text(
        f"<!-- results:start -->\n{ssl}\n\nssl table\n\n### Hyperparameter search\n\nkept\n<!-- results:end -->\n"
    )
    arguments = ["--results", str(tmp_path / "results"), "--readme", str(readme), "--only", "self_supervised_protocol"]
    readme_results.main(arguments)
    table.write_text("| protocol table 2 |\n")
    readme_results.main(arguments)
    text = readme.read_text()
    assert "protocol table 1" not in text and text.count("### Self-supervised encoders judged") == 1
    assert text.count("This section made on: Some CPU, BLAS openblas Haswell, backend numpy.") == 1
    assert (
        text.index("ssl table") < text.index("| protocol table 2 |") < text.index("### Hyperparameter search\n\nkept")
    )
