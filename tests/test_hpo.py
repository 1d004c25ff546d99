"""The Optuna search: two worker processes share one study; a restarted study resumes."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def hpo_command(tmp_path):
    """A command running experiments/hpo.py on generated Fashion-MNIST files (official layout)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from datasets_fixtures import make_files

    folder = tmp_path / "data"
    make_files(folder, n_train=300, n_test=60, separable=True)
    runner = tmp_path / "run_hpo.py"
    runner.write_text(
        textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path[:0] = [{str(ROOT / "tests")!r}, {str(ROOT / "experiments")!r}]
        from datasets_fixtures import spec_for
        from diynn.datasets import loaders
        loaders.FASHION_MNIST = spec_for(Path({str(folder)!r}), n_train=300, n_test=60)
        import hpo
        hpo.main(sys.argv[1:])
    """)
    )
    env = {"DIYNN_CACHE_DIR": str(tmp_path / "cache"), "PATH": "", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

    def command(*arguments):
        return [
            sys.executable,
            str(runner),
            "--data-dir",
            str(folder),
            "--epochs",
            "2",
            "--out",
            str(tmp_path / "out"),
            *arguments,
        ], env

    return command


def finished_trials(tmp_path):
    path = tmp_path / "out" / "fashion-mnist-mlp.journal"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    study = optuna.load_study(study_name="fashion-mnist-mlp", storage=storage)
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t for t in study.trials if t.state in done]


def test_two_workers_split_one_study(hpo_command, tmp_path):
    command, env = hpo_command("--trials", "10", "--workers-only")
    workers = [subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for worker in workers:
        _, errors = worker.communicate(timeout=300)
        assert worker.returncode == 0, errors
    trials = finished_trials(tmp_path)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) >= 10  # no duplicates; no losses
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers ran trials
    assert trials[0].params["width"] == 256  # trial 0 is the default configuration, enqueued once


def test_study_resumes_and_reports(hpo_command, tmp_path):
    command, env = hpo_command("--trials", "2", "--workers-only")
    subprocess.run(command, env=env, check=True, capture_output=True)
    first = {t.number: t.value for t in finished_trials(tmp_path)}
    command, env = hpo_command("--trials", "4")
    subprocess.run(command, env=env, check=True, capture_output=True)
    trials = {t.number: t.value for t in finished_trials(tmp_path)}
    assert len(trials) == 4 and all(trials[number] == value for number, value in first.items())
    result = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert 0 <= result["test_accuracy_retrained"] <= 1 and result["best_val_accuracy"] >= result["default_val_accuracy"]
    assert (tmp_path / "out" / "history.png").is_file() and (tmp_path / "out" / "importances.png").is_file()


def test_a_finished_study_runs_nothing_more(hpo_command, tmp_path):
    command, env = hpo_command("--trials", "2", "--workers-only")
    subprocess.run(command, env=env, check=True, capture_output=True)
    result = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    assert "already has 2 finished trials" in result.stdout
    assert len(finished_trials(tmp_path)) == 2


def test_a_killed_worker_loses_only_its_trial_with_the_journal(hpo_command, tmp_path):
    """SIGKILL a worker in the middle of a trial; a second worker still brings the study to
    --trials finished trials with every trial number used once. With the journal file the
    killed trial stays RUNNING (no heartbeat there; the README says so)."""
    import signal
    import time

    command, env = hpo_command("--trials", "3", "--workers-only")
    slow = [*command, "--epochs", "200"]  # long trials (the last --epochs wins): there is time to kill one
    worker = subprocess.Popen(slow, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = tmp_path / "out" / "fashion-mnist-mlp.journal"
    deadline = time.monotonic() + 60
    running = []
    while not running and time.monotonic() < deadline:
        time.sleep(0.2)
        if journal.is_file():
            storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
            try:
                study = optuna.load_study(study_name="fashion-mnist-mlp", storage=storage)
            except KeyError:  # the study is not created yet
                continue
            running = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert running, "the worker never started a trial"
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    subprocess.run(command, env=env, check=True, capture_output=True)
    study = optuna.load_study(
        study_name="fashion-mnist-mlp",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))),
    )
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(len(numbers)))  # none lost, none duplicated
    assert len(finished_trials(tmp_path)) == 3
    states = {t.number: t.state for t in study.trials}
    assert states[running[0].number] == optuna.trial.TrialState.RUNNING
