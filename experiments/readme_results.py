"""Copy the experiments' latest tables and one figure each into README.md (between the
`<!-- results:start -->` and `<!-- results:end -->` markers) and docs/figures/, a one-table summary
of the benchmark reports into README.md (the performance markers) and the reports themselves into
docs/performance.md, so that the README and the site show exactly what the scripts produced.

    python experiments/readme_results.py [--results results]
"""

import argparse
import json
import shutil
from pathlib import Path

from diynn_experiments.common import write_atomic

ROOT = Path(__file__).resolve().parents[1]
MARKERS = {
    "results": ("<!-- results:start -->", "<!-- results:end -->"),
    "performance": ("<!-- performance:start -->", "<!-- performance:end -->"),
}


# What the README's commands write, and the command that writes each (readme_results refuses to
# run while one is missing, so the tables never mix runs or show another configuration's numbers).
REQUIRED = {
    "fashion-mnist-mlp/metrics.json": "python experiments/fashion_mnist.py",
    "fashion-mnist-cnn/metrics.json": "python experiments/fashion_mnist.py --model cnn",
    "fashion-mnist-activations/activations.md": "python experiments/fashion_mnist.py --compare-activations",
    "autoencoder/reconstruction.md": "python experiments/autoencoder.py",
    "latent_tsne/latent.md": "python experiments/latent_tsne.py",
    "preprocessing/preprocessing.md": "python experiments/preprocessing.py",
    "denoising/denoising.md": "python experiments/denoising.py",
    "hpo/metrics.json": "python experiments/hpo.py --trials 20 --limit 10000",
    "perceptual/perceptual.md": "python experiments/perceptual.py",
    "self_supervised/self_supervised.md": "python experiments/self_supervised.py",
    "self_supervised_protocol/protocol.md": "python experiments/self_supervised_protocol.py",
}
# the sections after classification, in the README's order: (title, table, figures) in the results folder
SECTIONS = [
    (
        "Autoencoders vs PCA (`experiments/autoencoder.py`)",
        "autoencoder/reconstruction.md",
        ["autoencoder/error_by_latent.png", "autoencoder/reconstructions.png"],
    ),
    ("Latent space (`experiments/latent_tsne.py`)", "latent_tsne/latent.md", ["latent_tsne/tsne.png"]),
    ("Classification after reconstruction (`experiments/preprocessing.py`)", "preprocessing/preprocessing.md", []),
    ("Denoising (`experiments/denoising.py`)", "denoising/denoising.md", ["denoising/denoising.png"]),
    ("Perceptual loss (`experiments/perceptual.py`)", "perceptual/perceptual.md", ["perceptual/reconstructions.png"]),
    (
        "Self-supervised pretraining (`experiments/self_supervised.py`)",
        "self_supervised/self_supervised.md",
        ["self_supervised/label_efficiency.png", "self_supervised/tsne.png"],
    ),
    (
        "Self-supervised encoders judged by the field's protocol (`experiments/self_supervised_protocol.py`)",
        "self_supervised_protocol/protocol.md",
        ["self_supervised_protocol/label_efficiency.png"],
    ),
]
SECTION_NAMES = {table.split("/")[0]: index for index, (_, table, _) in enumerate(SECTIONS)}


PUBLISHED_CNN_BASELINE = 0.934  # zalandoresearch/fashion-mnist's benchmark: 2 conv + pooling + batch norm


def check_complete(results: Path, names=None) -> None:
    """SystemExit naming the commands to run while one of `names` (default: every one) is missing."""
    names = REQUIRED if names is None else names
    missing = [f"  {name}  (from: {REQUIRED[name]})" for name in names if not (results / name).is_file()]
    if missing:
        raise SystemExit(f"missing results in {results}; run these first:\n" + "\n".join(missing))


def host_line(results: Path, made_on="Made on (where a section names no host of its own)") -> str:
    """Where the tables were made, from the main job's metrics (every script records it)."""
    metrics = json.loads((results / "fashion-mnist-mlp" / "metrics.json").read_text())
    return (
        f"{made_on}: {metrics.get('cpu', '?')}, BLAS {metrics.get('blas', '?')}, backend {metrics['backend']}. "
        "Runs are deterministic on one host at one thread count; another CPU, BLAS kernel or thread count gives "
        "slightly different numbers for the same seed (floating-point sums in another order)."
    )


def classification_section(results: Path, figures: Path) -> list[str]:
    lines = [
        "### Classification (`experiments/fashion_mnist.py`)",
        "",
        "| command | test accuracy | epochs | s / epoch | wall time (s) | peak RSS (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for folder, command in (
        ("fashion-mnist-mlp", "python experiments/fashion_mnist.py"),
        ("fashion-mnist-cnn", "python experiments/fashion_mnist.py --model cnn"),
    ):
        path = results / folder / "metrics.json"
        if path.is_file():
            m = json.loads(path.read_text())
            lines.append(
                f"| `{command}` | {m['test_accuracy']:.4f} | {len(m['history']['loss'])} | "
                f"{m['epoch_time_s']:.1f} | {m['wall_time_s']:.0f} | {m.get('peak_rss_mb', float('nan')):.0f} |"
            )
    seeds = [
        results / "fashion-mnist-cnn" / "metrics.json",
        *sorted(results.glob("fashion-mnist-cnn-seed*/metrics.json")),
    ]
    if len(seeds) > 1:  # the CNN's spread over seeds, where those runs exist
        runs = [json.loads(path.read_text()) for path in seeds]
        accuracies = [m["test_accuracy"] for m in runs]
        mean = sum(accuracies) / len(accuracies)
        spread = (sum((a - mean) ** 2 for a in accuracies) / (len(accuracies) - 1)) ** 0.5
        walls = [m["wall_time_s"] for m in runs]
        lines += [
            "",
            f"CNN over seeds {', '.join(str(m['config']['seed']) for m in runs)} (`--seed N`; the seed also picks the "
            f"validation split): test accuracy {mean:.4f} +- {spread:.4f} (sample std), "
            f"min {min(accuracies):.4f}, max {max(accuracies):.4f}; wall time {min(walls):.0f}-{max(walls):.0f} s. "
            f"Against the published two-conv + batch-norm baseline of {PUBLISHED_CNN_BASELINE} (the Fashion-MNIST "
            f"benchmark's table) and the target of 0.935 in 10 minutes: "
            f"{'met' if mean >= 0.935 and max(walls) <= 600 else 'NOT met'}.",
        ]
    figure = _copy(results / "fashion-mnist-cnn" / "confusion_matrix.png", figures, "cnn_confusion_matrix.png")
    lines += ["", f"![CNN confusion matrix]({figure})" if figure else ""]
    activations = results / "fashion-mnist-activations" / "activations.md"
    if activations.is_file():
        lines += ["", "MLP by activation (`--compare-activations`):", "", activations.read_text().strip()]
    return lines + [""]


def benchmark_reports(folder: Path) -> list[tuple[Path, dict]]:
    """Every benchmark report (one per host kind: CPU and BLAS kernel, or GPU) and its data, newest first."""
    reports = [(markdown, json.loads(markdown.with_suffix(".json").read_text())) for markdown in folder.glob("*.md")]
    return sorted(reports, key=lambda report: report[1].get("created", ""), reverse=True)


def performance_section(folder: Path) -> str:
    """Every benchmark report in full, for docs/performance.md (paths as text: they lie outside the site)."""
    parts = []
    for markdown, _ in benchmark_reports(folder):
        parts += [f"## {markdown.stem} (`benchmarks/results/{markdown.name}`)", "", markdown.read_text().strip(), ""]
    return "\n".join(parts)


def performance_summary(folder: Path) -> str:
    """One row per report: the headline ratios against PyTorch at batch 128, from its first run."""
    rows = [
        "| report | CPU (threads) | measured | MLP step / PyTorch | CNN step / PyTorch | conv2 fwd+bwd / PyTorch |",
        "|---|---|---|---|---|---|",
    ]
    for markdown, data in benchmark_reports(folder):
        run = data["runs"][0]
        mlp = run.get("steps", {}).get("128", {}).get("ratio", {}).get("torch-cpu")
        cnn = run.get("cnn", {}).get("128", {}).get("ratio", {}).get("torch-cnn")
        conv2 = run.get("conv", {}).get("conv2", {}).get("ratio", {}).get("conv-torch:conv2")
        cells = " | ".join("-" if value is None else f"{value:.2f}x" for value in (mlp, cnn, conv2))
        link = f"[{markdown.stem}](benchmarks/results/{markdown.name})"
        machine = run.get("machine", {})
        threads = max((pool.get("num_threads", 0) for pool in machine.get("blas", [])), default="?")
        cpu = f"{machine.get('cpu', '?')} ({threads})"
        rows.append(f"| {link} | {cpu} | {data.get('created', '?')[:10]} at {data.get('commit', '?')} | {cells} |")
    return "\n".join(rows)


def section(title, table: Path, figures: Path, figure_paths=()) -> list[str]:
    """A heading, the table a script wrote and its figures (copied into docs/figures)."""
    if not table.is_file():
        return []
    lines = [f"### {title}", "", table.read_text().strip(), ""]
    for figure in figure_paths:
        copied = _copy(figure, figures, f"{figure.parent.name}_{figure.name}")
        if copied:
            lines += [f"![{title}: {figure.stem.replace('_', ' ')}]({copied})", ""]
    return lines


def _copy(source: Path, figures: Path, name: str):
    if not source.is_file():
        return None
    figures.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, figures / name)
    return f"docs/figures/{name}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="the scripts' results folder")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md", help="the README to update")
    parser.add_argument(
        "--only",
        choices=["classification", "performance", *SECTION_NAMES],
        help="refresh one part: the classification section (from its runs alone, its host named in it), "
        "the benchmark summaries, or one experiment's section (named by its results folder; added after "
        "the section before it if missing)",
    )
    args = parser.parse_args(argv)
    figures = args.readme.parent / "docs" / "figures"
    r = args.results
    reports = ROOT / "benchmarks" / "results"
    if args.only == "performance":
        return write_performance(args.readme, reports)
    if args.only == "classification":
        check_complete(r, [name for name in REQUIRED if name.startswith("fashion-mnist")])
        title, *body = classification_section(r, figures)
        refreshed = "\n".join([title, "", host_line(r, "This section made on"), *body])
        write_atomic(args.readme, replace_subsection(args.readme.read_text(), title, refreshed))
        return print(f"README classification section updated from {r}")
    if args.only in SECTION_NAMES:
        return refresh_section(args.readme, r, figures, SECTION_NAMES[args.only])
    check_complete(r)
    lines = [host_line(r), "", *classification_section(r, figures)]
    for title, table, figure_names in SECTIONS:
        lines += section(title, r / table, figures, [r / name for name in figure_names])
    hpo = r / "hpo" / "metrics.json"
    if hpo.is_file():
        best = json.loads(hpo.read_text())
        lines += [
            "### Hyperparameter search (`experiments/hpo.py --trials 20 --limit 10000`)",
            "",
            f"Best of {sum(best['trials'].values())} trials ({best['trials']}): validation accuracy "
            f"{best['best_val_accuracy']:.4f} against {best['default_val_accuracy']:.4f} for the default "
            f"configuration (trial 0); retrained on train + validation, test accuracy "
            f"{best['test_accuracy_retrained']:.4f}; {best['wall_time_s']:.0f} s in all. "
            f"Best configuration: `{best['best_params']}`.",
            "",
            f"![optimisation history]({_copy(r / 'hpo' / 'history.png', figures, 'hpo_history.png')})",
        ]
    write_atomic(args.readme, replace_between(args.readme.read_text(), "results", "\n".join(lines)))
    write_performance(args.readme, reports)
    print(f"README results updated from {r}")


def write_performance(readme: Path, reports: Path) -> None:
    """The benchmark reports' summary into the README, the reports into docs/performance.md."""
    write_atomic(readme, replace_between(readme.read_text(), "performance", performance_summary(reports)))
    performance_page = readme.parent / "docs" / "performance.md"
    if performance_page.is_file():
        write_atomic(
            performance_page, replace_between(performance_page.read_text(), "performance", performance_section(reports))
        )


def replace_subsection(text: str, title: str, section: str) -> str:
    """`text` with its subsection headed `title` (up to the next "### " or the results' end marker)
    replaced by `section`; ValueError if there is none."""
    start = text.find(title + "\n")
    if start < 0:
        raise ValueError(f"no subsection {title!r} to replace")
    end = _subsection_end(text, start)
    return text[:start] + section.rstrip("\n") + "\n\n" + text[end:].lstrip("\n")


def _subsection_end(text: str, start: int) -> int:
    """Where the subsection starting at `start` ends: the next "### " heading or the results' end marker."""
    ends = [i for i in (text.find("\n### ", start + 1), text.find(MARKERS["results"][1], start)) if i >= 0]
    return min(ends) if ends else len(text)


def refresh_section(readme: Path, results: Path, figures: Path, index: int) -> None:
    """Replace the README's section SECTIONS[index] with its script's latest table and figures
    (added after the section before it where it is missing)."""
    title, table, figure_names = SECTIONS[index]
    check_complete(results, [table])
    lines = section(title, results / table, figures, [results / name for name in figure_names])
    metrics = results / table.split("/")[0] / "metrics.json"
    if metrics.is_file():  # this section's run may come from another host kind than the others'
        m = json.loads(metrics.read_text())
        lines[2:2] = [
            f"This section made on: {m.get('cpu', '?')}, BLAS {m.get('blas', '?')}, backend {m['backend']}.",
            "",
        ]
    refreshed = "\n".join(lines)
    text = readme.read_text()
    if f"### {title}\n" not in text:
        before = SECTIONS[index - 1][0] if index else "Classification (`experiments/fashion_mnist.py`)"
        text = add_subsection(text, f"### {before}", f"### {title}")
    write_atomic(readme, replace_subsection(text, f"### {title}", refreshed))
    print(f"README section {title!r} updated from {results}")


def add_subsection(text: str, after: str, title: str) -> str:
    """`text` with an empty subsection headed `title` placed right after the subsection `after`."""
    start = text.find(after + "\n")
    if start < 0:
        raise ValueError(f"no subsection {after!r} to add {title!r} after")
    end = _subsection_end(text, start)
    return text[:end].rstrip("\n") + f"\n\n{title}\n\n" + text[end:].lstrip("\n")


def replace_between(text: str, name: str, body: str) -> str:
    """`text` with what lies between the `name` markers replaced by `body`."""
    start, end = MARKERS[name]
    before, _, rest = text.partition(start)
    _, _, after = rest.partition(end)
    return f"{before}{start}\n{body}\n{end}{after}"


if __name__ == "__main__":
    main()
