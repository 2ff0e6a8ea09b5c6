"""Sweeps and launchers: job-numbered sweep subdirectories, and torch threads per parallel job."""

import logging
import os

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.types import RunMode
from omegaconf import OmegaConf

from pti_lab import launch
from pti_lab.config import register_configs
from tests.conftest import REPO, run_py

register_configs()


def compose_hydra(*overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def test_sweep_subdir_is_the_job_number_and_overrides_are_recorded():
    hydra = compose_hydra().hydra
    assert OmegaConf.to_container(hydra.sweep, resolve=False)["subdir"] == "${hydra.job.num}"
    assert hydra.output_subdir == ".hydra"  # where overrides.yaml goes; null would write none


def test_threads_callback_is_registered():
    callbacks = compose_hydra().hydra.callbacks
    assert {name: node._target_ for name, node in callbacks.items()} == {
        "threads_per_job": "pti_lab.launch.ThreadsPerJob", "write_report": "pti_lab.report.hydra_callback.WriteReport"}


def test_joblib_launcher_is_available_with_its_own_defaults():
    launcher = compose_hydra("hydra/launcher=joblib").hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert launcher.n_jobs == -1  # one job per core, 1 thread each


def job_config(mode=RunMode.MULTIRUN, **launcher):
    return OmegaConf.create({"hydra": {"mode": mode, "launcher": launcher}})


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(launch, "usable_cores", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for var in (launch.USER_THREADS_VAR, launch.JOB_THREADS_VAR, launch.CORE_BUDGET_VAR):
        monkeypatch.delenv(var, raising=False)  # and restored after the test, as the callbacks set them


@pytest.mark.parametrize("config,expected", [
    (job_config(mode=RunMode.RUN), (4, "4 cores / 1 job")),                    # a single run
    (job_config(mode=RunMode.RUN, n_jobs=2), (4, "4 cores / 1 job")),          # joblib chosen, no -m
    (job_config(), (4, "4 cores / 1 job")),                                    # basic launcher: one at a time
    (job_config(n_jobs=2), (2, "4 cores / 2 jobs")),
    (job_config(n_jobs=3), (1, "4 cores / 3 jobs")),
    (job_config(n_jobs=8), (1, "4 cores / 8 jobs")),                           # at least 1
    (job_config(n_jobs=-1), (1, "4 cores / 4 jobs")),                          # joblib: -1 = all cores
    (job_config(n_jobs=-3), (2, "4 cores / 2 jobs")),                          # joblib: cores + 1 + n_jobs
    (job_config(n_jobs=None), (4, "4 cores / 1 job")),
], ids=["run", "run-joblib", "basic", "2", "3", "8", "-1", "-3", "null"])
def test_threads_rule(four_cores, config, expected):
    assert launch.threads_for_job(config) == expected


def test_user_omp_num_threads_wins(four_cores, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert launch.threads_for_job(job_config(n_jobs=2)) == (3, "OMP_NUM_THREADS=3")
    # In a joblib worker OMP_NUM_THREADS is joblib's; what the user set was recorded at (multi)run start.
    monkeypatch.setenv(launch.USER_THREADS_VAR, "")
    assert launch.threads_for_job(job_config(n_jobs=2)) == (2, "4 cores / 2 jobs")
    monkeypatch.setenv(launch.USER_THREADS_VAR, "1")
    assert launch.threads_for_job(job_config(n_jobs=2)) == (1, "OMP_NUM_THREADS=1")


def test_unusable_omp_num_threads_is_ignored_with_a_warning(four_cores, monkeypatch, caplog):
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    with caplog.at_level(logging.WARNING, logger="pti_lab.launch"):
        assert launch.threads_for_job(job_config(n_jobs=2)) == (2, "4 cores / 2 jobs")
    assert "ignoring OMP_NUM_THREADS='lots'" in caplog.text


def test_callback_sets_torch_threads_and_the_environment(four_cores, monkeypatch, caplog):
    callback, before = launch.ThreadsPerJob(), torch.get_num_threads()
    callback.on_multirun_start(config=job_config(n_jobs=2))  # records "" (not set by the user)
    assert os.environ[launch.USER_THREADS_VAR] == ""
    try:
        for _ in range(2):  # a second job in the same process is not misled by the first one's setting
            with caplog.at_level(logging.INFO, logger="pti_lab.launch"):
                callback.on_job_start(config=job_config(n_jobs=2))
            assert torch.get_num_threads() == 2 and os.environ["OMP_NUM_THREADS"] == "2"
            assert caplog.messages[-1] == "torch threads: 2 (4 cores / 2 jobs)"
    finally:
        torch.set_num_threads(before)


def test_a_run_started_inside_a_job_divides_that_jobs_threads_among_its_own_jobs(four_cores, monkeypatch):
    callback, before = launch.ThreadsPerJob(), torch.get_num_threads()
    try:
        # An outer job (a single run: make paper) takes the 4 cores ...
        callback.on_run_start(config=job_config(mode=RunMode.RUN))
        callback.on_job_start(config=job_config(mode=RunMode.RUN))
        assert os.environ["OMP_NUM_THREADS"] == "4"
        # ... and a run.py it starts, a joblib sweep of 2 jobs, gives each job half of them, not 4 each.
        monkeypatch.setattr(launch, "usable_cores", lambda: 8)  # the machine may have more than the outer job
        callback.on_multirun_start(config=job_config(n_jobs=2))
        assert launch.threads_for_job(job_config(n_jobs=2)) == (2, "4 cores / 2 jobs")
        # The user's OMP_NUM_THREADS stays the threads of every job, also of the jobs of a run a job starts.
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        callback.on_run_start(config=job_config(mode=RunMode.RUN))
        callback.on_job_start(config=job_config(mode=RunMode.RUN))
        callback.on_multirun_start(config=job_config(n_jobs=2))
        assert launch.threads_for_job(job_config(n_jobs=2)) == (1, "OMP_NUM_THREADS=1")
    finally:
        torch.set_num_threads(before)


def run_threads(*args, env_extra=None, timeout=600):
    """run.py with no thread setting inherited from this shell (plus `env_extra`)."""
    ours = ("OMP_NUM_THREADS", launch.USER_THREADS_VAR, launch.JOB_THREADS_VAR, launch.CORE_BUDGET_VAR)
    env = {k: v for k, v in os.environ.items() if k not in ours}
    return run_py(*args, env={**env, **(env_extra or {})}, timeout=timeout)


def test_joblib_sweep_gives_each_job_its_share_of_the_cores(tmp_path):
    sweep = tmp_path / "sweep"
    run_threads("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1", "debug=smoke",
                f"hydra.sweep.dir={sweep}")
    cores = launch.usable_cores()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "report"]  # report: when it ends
    for num in (0, 1):
        job = sweep / str(num)
        overrides = OmegaConf.load(job / ".hydra" / "overrides.yaml")
        assert f"seed={num}" in overrides and "debug=smoke" in overrides
        assert (job / "results.jsonl").stat().st_size > 0 and (job / "summary.json").is_file()
        log = (job / "run.log").read_text()  # Hydra's job log: <job dir>/<job name>.log
        assert f"torch threads: {max(cores // 2, 1)} ({cores} cores / 2 jobs)" in log


def test_basic_launcher_sweep_gives_every_job_all_cores(tmp_path):
    cores = launch.usable_cores()
    run_threads("-m", "seed=0,1", "debug=smoke", "data.limit=0", f"hydra.sweep.dir={tmp_path}")
    for num in (0, 1):  # one after the other in this process: job 1 is not misled by job 0's OMP_NUM_THREADS
        log = (tmp_path / str(num) / "run.log").read_text()
        assert f"torch threads: {cores} ({cores} core{'s' * (cores != 1)} / 1 job)" in log


@pytest.mark.slow
def test_single_run_respects_the_users_omp_num_threads(tmp_path):
    run_threads("debug=smoke", "data.limit=0", f"hydra.run.dir={tmp_path}", env_extra={"OMP_NUM_THREADS": "1"})
    assert "torch threads: 1 (OMP_NUM_THREADS=1)" in (tmp_path / "run.log").read_text()
