"""Hydra callbacks for launching runs and sweeps (registered in conf/hydra/default.yaml).

`ThreadsPerJob` gives every job `cores // parallel jobs` torch threads (at least 1), so that jobs
running side by side do not fight over the same cores: torch uses one thread per core by default,
and two 2-thread jobs on 2 cores each run about 10x slower than one thread each.

Precedence, per job:
1. `OMP_NUM_THREADS` as set in the environment `run.py` was started with (the user's choice);
2. otherwise, in a multirun whose launcher gives each job its own cores (`hydra.launcher.cpus_per_task`:
   submitit_slurm, submitit_local), that many;
3. otherwise `cores // n_jobs`, at least 1, where `cores` is the number of CPUs this process may use
   (joblib's count: CPU affinity and container CPU quota) or, for a run.py started from inside a job
   (`make paper` runs each sweep so), that job's threads if fewer: its share of the cores is what
   its own jobs divide; `n_jobs` is how many jobs run at once:
   `hydra.launcher.n_jobs` in a multirun with a launcher that has it (joblib; -1 = one job per core,
   -2 = all cores but one, as joblib reads it), else 1 (single runs, the basic launcher: one job at a
   time gets all cores).

The chosen number goes to torch.set_num_threads and to OMP_NUM_THREADS, for the job's child
processes. Nothing heavy is imported here: torch and joblib only when a job starts.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

THREADS_VAR = "OMP_NUM_THREADS"
# OMP_NUM_THREADS as the user gave it ("" = not set), recorded by the main process at run/multirun
# start: in joblib's worker processes OMP_NUM_THREADS is set by joblib itself, not by the user.
USER_THREADS_VAR = "PTI_LAB_USER_OMP_NUM_THREADS"
# The threads a job chose itself (rule 2 or 3), for the run.py processes it starts: their OMP_NUM_THREADS
# is then that job's core budget, not a user's threads per job.
JOB_THREADS_VAR = "PTI_LAB_JOB_THREADS"
# That budget ("" = none), recorded by the main process at run/multirun start, as USER_THREADS_VAR.
CORE_BUDGET_VAR = "PTI_LAB_CORE_BUDGET"


def usable_cores() -> int:
    """CPUs this process may use: joblib's count (affinity, cgroup quota), else the affinity mask."""
    try:
        from joblib import cpu_count
        return max(int(cpu_count()), 1)
    except ImportError:
        pass
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def parallel_jobs(config: DictConfig, cores: int) -> int:
    """How many jobs of this run execute at the same time (joblib's reading of n_jobs)."""
    if OmegaConf.select(config, "hydra.mode") != RunMode.MULTIRUN:
        return 1  # a single run, even with hydra/launcher=joblib on the command line
    n_jobs = OmegaConf.select(config, "hydra.launcher.n_jobs")
    if n_jobs is None:
        return 1  # basic launcher (one job after the other), or a launcher without n_jobs
    n_jobs = int(n_jobs)
    if n_jobs < 0:
        return max(cores + 1 + n_jobs, 1)
    return max(n_jobs, 1)


def user_threads() -> tuple[Optional[int], Optional[str]]:
    """(threads, raw value) from the user's OMP_NUM_THREADS; (None, raw) when unset or unusable."""
    raw = os.environ.get(USER_THREADS_VAR, os.environ.get(THREADS_VAR, ""))
    if not raw.strip():
        return None, None
    try:
        threads = int(raw.split(",")[0])  # "4,2" is a nested OpenMP list: the outer level counts
    except ValueError:
        threads = 0
    if threads < 1:
        log.warning("ignoring %s=%r: not a positive integer", THREADS_VAR, raw)
        return None, raw
    return threads, raw


def threads_for_job(config: DictConfig) -> tuple[int, str]:
    """(torch threads, why) for a job of `config` (the full config, with `hydra`)."""
    threads, raw = user_threads()
    if threads is not None:
        return threads, f"{THREADS_VAR}={raw}"
    job_cores = OmegaConf.select(config, "hydra.launcher.cpus_per_task")
    if job_cores and OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN:
        return int(job_cores), f"hydra.launcher.cpus_per_task={job_cores}"
    cores = usable_cores()
    budget = os.environ.get(CORE_BUDGET_VAR, "")
    if budget:
        cores = min(cores, int(budget))
    jobs = parallel_jobs(config, cores)
    return max(cores // jobs, 1), f"{cores} core{'s' * (cores != 1)} / {jobs} job{'s' * (jobs != 1)}"


class ThreadsPerJob(Callback):
    """Sets torch's intra-op threads (and OMP_NUM_THREADS for children) of each job; see the module."""

    def _remember_user_setting(self) -> None:
        # Main process, before any job. OMP_NUM_THREADS is the user's setting, unless a job that chose
        # its own threads started this run.py: then it is that job's share of the cores, the budget
        # of this run's jobs.
        inherited = os.environ.get(THREADS_VAR, "")
        from_job = inherited != "" and inherited == os.environ.get(JOB_THREADS_VAR)
        os.environ[USER_THREADS_VAR] = "" if from_job else inherited
        os.environ[CORE_BUDGET_VAR] = inherited if from_job else ""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._remember_user_setting()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._remember_user_setting()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        threads, why = threads_for_job(config)
        os.environ[THREADS_VAR] = str(threads)
        if user_threads()[0] is not None:  # the user's: a run.py this job starts keeps it per job
            os.environ.pop(JOB_THREADS_VAR, None)
        else:
            os.environ[JOB_THREADS_VAR] = str(threads)
        import torch  # the job imports it next anyway
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        log.info("torch threads: %d (%s)", threads, why)
