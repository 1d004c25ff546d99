"""The Optuna search: two worker processes share one study; a restarted study resumes."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # worker processes, PostgreSQL

optuna = pytest.importorskip("optuna")
ROOT = Path(__file__).resolve().parents[2]


def _hpo_command(tmp_path):
    """A function giving a command that runs experiments/hpo.py on generated Fashion-MNIST files (official
    layout) in tmp_path/data, its output and journal in tmp_path/out (a later --out wins), and its environment."""
    from datasets_fixtures import make_files

    folder = tmp_path / "data"
    make_files(folder, n_train=300, n_test=60, separable=True)
    runner = tmp_path / "run_hpo.py"
    runner.write_text(
        textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from datasets_fixtures import spec_for
        from diynn.datasets import loaders
        loaders.FASHION_MNIST = spec_for(Path({str(folder)!r}), n_train=300, n_test=60)
        import hpo
        if "NOT_BEFORE" in os.environ:  # a test's start time: hpo.main's imports done, then wait for it
            import optuna, optuna.storages._rdb.storage, psycopg, sklearn.model_selection
            time.sleep(max(0.0, float(os.environ["NOT_BEFORE"]) - time.time()))
        if "REPORT_PAUSE" in os.environ:  # a test's slow trial: it stays RUNNING a while after each report
            import optuna
            report = optuna.trial.Trial.report
            def report_then_pause(trial, value, step):
                report(trial, value, step)
                time.sleep(float(os.environ["REPORT_PAUSE"]))
            optuna.trial.Trial.report = report_then_pause
        hpo.main(sys.argv[1:])
    """)
    )
    env = {"DIYNN_CACHE_DIR": str(tmp_path / "cache"), "PATH": "", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), str(ROOT / "experiments")])  # the fixtures, hpo.py

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


@pytest.fixture
def hpo_command(tmp_path):
    return _hpo_command(tmp_path)


@pytest.fixture(scope="module")
def two_workers_study(tmp_path_factory):
    """Two workers started at once on one study of --trials 30: their folder (its out/ holds the
    journal, which the tests read or copy) and its command."""
    folder = tmp_path_factory.mktemp("two_workers")
    hpo_command = _hpo_command(folder)
    # enough trials that the second worker joins before the first has run them all, also on a
    # loaded machine (a trial takes a fraction of a second, starting a worker seconds)
    command, env = hpo_command("--trials", "30", "--workers-only")
    workers = [subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for worker in workers:
        _, errors = worker.communicate(timeout=300)
        assert worker.returncode == 0, errors
    return folder, hpo_command


def journal_study(tmp_path):
    """The study in tmp_path/out's journal file."""
    path = tmp_path / "out" / "fashion-mnist-mlp.journal"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    return optuna.load_study(study_name="fashion-mnist-mlp", storage=storage)


def finished_trials(tmp_path):
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t for t in journal_study(tmp_path).trials if t.state in done]


def test_two_workers_split_one_study(two_workers_study):
    trials = finished_trials(two_workers_study[0])
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) >= 30  # no duplicates; no losses
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers ran trials
    assert trials[0].params["width"] == 256  # trial 0 is the default configuration, enqueued once


def test_a_killed_worker_loses_only_its_trial_and_a_rerun_resumes_and_reports(two_workers_study, tmp_path):
    """SIGKILL a worker in the middle of a trial (of a copy of the two workers' study); running the
    command again brings the study to --trials finished trials with every trial number used once,
    the finished trials kept, and reports. With the journal file the killed trial stays RUNNING (no
    heartbeat there; the README says so). Meanwhile, on another copy: a finished study runs nothing more."""
    import signal

    folder, hpo_command = two_workers_study
    for copy in (tmp_path, tmp_path / "finished"):  # journal_study(copy) is each copy's
        (copy / "out").mkdir(parents=True)
        shutil.copy(folder / "out" / "fashion-mnist-mlp.journal", copy / "out")
    first = {t.number: t.value for t in finished_trials(tmp_path)}
    finished = ["--trials", str(len(first)), "--workers-only", "--out", str(tmp_path / "finished" / "out")]
    check = subprocess.Popen(hpo_command(*finished)[0], env=hpo_command()[1], stdout=subprocess.PIPE, text=True)
    out, trials = ["--out", str(tmp_path / "out")], len(first) + 1
    command, env = hpo_command("--trials", str(trials), "--workers-only", *out)
    worker = _slow_worker(command, env)
    killed = _wait_for_a_running_trial(worker, lambda: journal_study(tmp_path))
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    worker.stderr.close()
    # killed while appending to the journal, it leaves Optuna's lock behind: the next worker would wait
    # 30 s (the lock's grace period) to break it
    (tmp_path / "out" / "fashion-mnist-mlp.journal.lock").unlink(missing_ok=True)
    subprocess.run(hpo_command("--trials", str(trials), *out)[0], env=env, check=True, capture_output=True)
    study = journal_study(tmp_path)
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(len(numbers)))  # none lost, none duplicated
    assert {t.number: t.state for t in study.trials}[killed.number] == optuna.trial.TrialState.RUNNING
    values = {t.number: t.value for t in finished_trials(tmp_path)}
    assert len(values) == trials and all(values[number] == value for number, value in first.items())
    result = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert 0 <= result["test_accuracy_retrained"] <= 1 and result["best_val_accuracy"] >= result["default_val_accuracy"]
    assert (tmp_path / "out" / "history.png").is_file() and (tmp_path / "out" / "importances.png").is_file()
    assert check.communicate(timeout=300)[0].count(f"already has {len(first)} finished trials") == 1
    assert check.returncode == 0 and len(finished_trials(tmp_path / "finished")) == len(first)


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL server on a free loopback port (initdb + pg_ctl in a temporary
    folder, run as `nobody` when the tests run as root: the server refuses root); its URL."""
    import os
    import shutil
    import socket
    import tempfile

    found = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))[-1:]), None)
    if found is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    pytest.importorskip("psycopg", reason='needs psycopg (pip install "psycopg[binary]")')
    initdb, pg_ctl = Path(found), Path(found).with_name("pg_ctl")
    folder = Path(tempfile.mkdtemp(prefix="diynn-postgres-"))
    as_user = {}
    if os.geteuid() == 0:
        import pwd

        nobody = pwd.getpwnam("nobody")
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        as_user = {"user": nobody.pw_uid, "group": nobody.pw_gid}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data, env = folder / "data", {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
    quiet = {"env": env, "cwd": folder, "check": True, "capture_output": True, **as_user}
    # a throwaway cluster: nothing is synced to disk (initdb takes 0.8 s instead of 4 here)
    subprocess.run(
        [initdb, "-D", data, "-U", "postgres", "--auth=trust", "--locale=C", "-E", "UTF8", "--no-sync"], **quiet
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
    subprocess.run([pg_ctl, "-D", data, "-l", folder / "server.log", "-o", options, "-w", "start"], **quiet)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([pg_ctl, "-D", data, "-m", "immediate", "stop"], **{**quiet, "check": False})
        shutil.rmtree(folder, ignore_errors=True)


def _slow_worker(command, env):
    """A worker whose trials pause 5 s after each reported epoch, so that the test sees a trial
    RUNNING (pruning could end one within milliseconds of its first report) and kills the worker in
    the middle of it (its settings are the study's: a worker with others would be refused)."""
    return subprocess.Popen(
        command,
        env={**env, "REPORT_PAUSE": "5"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_a_running_trial(worker, load_study, seconds=120):
    """The first RUNNING trial that has reported an epoch: by then its heartbeat thread, started
    with the trial, has recorded a heartbeat (a trial killed before its first heartbeat is never
    found stale: it would stay RUNNING on PostgreSQL too). Fails with the worker's errors if it exits."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if worker.poll() is not None:
            raise AssertionError(
                f"the worker exited ({worker.returncode}) before a trial was seen running:\n{worker.stderr.read()}"
            )
        try:
            study = load_study()
        except KeyError:  # the study is not created yet
            continue
        running = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING and t.intermediate_values]
        if running:
            return running[0]
    raise AssertionError(f"the worker started no trial in {seconds} s")


def test_a_killed_worker_s_trial_fails_through_the_heartbeat_on_postgresql(hpo_command, postgres):
    """Two workers on a real PostgreSQL server; one is killed with SIGKILL mid-trial. Its trial is
    marked FAILED once its heartbeat lapses, the other worker brings the study to --trials finished
    trials, and no trial number is lost or duplicated."""
    import signal
    import time

    command, env = hpo_command("--trials", "3", "--workers-only", "--storage", postgres, "--heartbeat", "1")
    worker = _slow_worker(command, env)
    storage = optuna.storages.RDBStorage(postgres)
    killed = _wait_for_a_running_trial(
        worker, lambda: optuna.load_study(study_name="fashion-mnist-mlp", storage=storage)
    )
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    worker.stderr.close()
    # the next worker fails the trial when it starts one past the grace period (3 heartbeats of 1 s) after
    # its last heartbeat, which was before now: it starts then, its imports done while it waits
    subprocess.run(command, env={**env, "NOT_BEFORE": str(time.time() + 3.2)}, check=True, capture_output=True)
    study = optuna.load_study(study_name="fashion-mnist-mlp", storage=storage)
    states = {t.number: t.state for t in study.trials}
    assert states[killed.number] == optuna.trial.TrialState.FAIL
    assert sorted(states) == list(range(len(states)))  # none lost, none duplicated
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert sum(state in finished for state in states.values()) == 3


def test_the_trials_are_judged_on_a_held_out_fraction():
    import hpo

    assert hpo.parse_args([]).validation == 0.1
    assert hpo.parse_args(["--validation", "0.2"]).validation == 0.2
    for value in ("0", "1", "-0.5"):  # the trials need a validation split
        with pytest.raises(SystemExit):
            hpo.parse_args(["--validation", value])


def test_a_worker_with_other_trial_settings_is_refused(hpo_command, tmp_path):
    command, env = hpo_command("--trials", "1", "--workers-only")
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
    assert journal_study(tmp_path).user_attrs["settings"]["epochs"] == 2
    command, env = hpo_command("--trials", "2", "--workers-only", "--epochs", "3", "--validation", "0.2")
    other = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert other.returncode != 0
    assert "--epochs 3 (the study's: 2), --validation 0.2 (the study's: 0.1)" in other.stderr
    assert len(journal_study(tmp_path).trials) == 1  # it ran none
