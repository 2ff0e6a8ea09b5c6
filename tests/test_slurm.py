"""Sweeps through a real SLURM with the submitit launcher (hydra/launcher=submitit_slurm).

Needs a running SLURM on this machine: `.ci/slurm_local.sh start` (as root; `.ci/run` does it), a
single-node cluster from Debian's slurm-wlm. Without one the tests skip and say why.

A 2-shard sweep runs as one SLURM array job; one of its tasks is requeued in the middle of its
shard (`scontrol requeue`, what a preemption does), resumes, and the merged summary holds every
image once. Slow: the whole array cancelled (`scancel`) and the same command run again. The local
cluster has no accounting database: submitit's `sacct` calls fail (it warns, and learns that a job
finished from its result file), and a cancelled job is not reported to the waiting sweep.
"""

import importlib.util
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional

import pytest
from hydra import compose, initialize_config_dir
from hydra.types import RunMode
from omegaconf import OmegaConf

from pti_lab.config import register_configs
from pti_lab.launch import USER_THREADS_VAR, threads_for_job
from tests.conftest import REPO
from tests.fault_helpers import Run, check_complete, rows_of

# The local cluster has no GPU and little memory: ask for neither; one core per job.
ON_LOCAL_SLURM = ["hydra/launcher=submitit_slurm", "hydra.launcher.gpus_per_node=null", "hydra.launcher.mem_gb=null",
                  "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=20"]
IMAGES = ["ood_000", "ood_001", "ood_002", "ood_003"]  # data.limit=4: shard 0 holds 3 of them, shard 1 one


def slurm_missing() -> Optional[str]:
    """Why a sweep cannot run on SLURM here, or None."""
    if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:
        return "hydra-submitit-launcher is not installed (pip install -e '.[cluster]')"
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        return "SLURM is not installed (start one with .ci/slurm_local.sh start, as root)"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    if "UP" not in ping.stdout:
        said = (ping.stdout.strip() or ping.stderr.strip() or "nothing").splitlines()[0]
        return f"no SLURM controller answers (scontrol ping: {said}; start one with .ci/slurm_local.sh start)"
    nodes = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout.split()
    if not any(state.startswith(("idle", "mixed", "allocated")) for state in nodes):
        return f"no SLURM node is up (sinfo: {' '.join(nodes) or 'none'})"
    return None


@pytest.fixture(scope="module")
def slurm():
    reason = slurm_missing()
    if reason:
        print(f"SLURM tests skipped: {reason}")
        pytest.skip(reason)


@pytest.mark.parametrize("launcher", ["submitit_slurm", "submitit_local", "joblib"])
def test_launcher_configs_compose_with_their_defaults(launcher, monkeypatch):
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"hydra/launcher={launcher}"],
                      return_hydra_config=True)
    node = cfg.hydra.launcher
    if launcher == "joblib":
        assert node.n_jobs == -1 and node.prefer == "processes"
        return
    assert node._target_.endswith("SlurmLauncher" if launcher == "submitit_slurm" else "LocalLauncher")
    assert node.gpus_per_node == 1 and node.timeout_min == 720 and node.tasks_per_node == 1
    if launcher == "submitit_slurm":
        assert node.cpus_per_task == 8 and node.additional_parameters.requeue is True and node.max_num_timeout == 3
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv(USER_THREADS_VAR, raising=False)
        job = OmegaConf.create({"hydra": {"mode": RunMode.MULTIRUN, "launcher": {"cpus_per_task": 8}}})
        assert threads_for_job(job) == (8, "hydra.launcher.cpus_per_task=8")  # each job's threads: its cores


def sweep_args(sweep: Path, *extra: str) -> list[str]:
    return ["-m", f"hydra.sweep.dir={sweep}", "data.shard=range(0,2)", "data.shards=2", "data.limit=4", "debug=smoke",
            *ON_LOCAL_SLURM, *extra]


def array_task(sweep: Path, index: int, timeout: float = 120) -> str:
    """The SLURM id (ARRAY_TASK) of sweep job `index`, from submitit's folder of it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p.name for p in (sweep / ".submitit").glob(f"*_{index}") if p.is_dir()]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no SLURM job of sweep job {index} in {sweep / '.submitit'}")


def job_state(task: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", task, "-o", "%T"], capture_output=True, text=True).stdout.strip()


def wait_for(condition, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def check_merged(sweep: Path) -> None:
    merged = json.loads((sweep / "report" / "shards" / "all" / "summary.json").read_text())
    assert merged["images"] == len(IMAGES) and merged["failed"] == []
    assert merged["shards"]["missing_images"] == [] and merged["shards"]["duplicated_images"] == {}
    assert merged["shards"]["jobs"] == [0, 1]
    for job in ("0", "1"):
        check_complete(sweep / job, sorted({row["image"] for row in rows_of(sweep / job)}))


def test_sharded_sweep_on_slurm_survives_a_requeue_and_merges(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    start = time.monotonic()
    # reuse_inversions=false and 60 inversion steps: the shard's last two images take longer than the
    # cluster's KillWait (5 s), the time a requeued job runs on after its SIGTERM (which submitit ignores),
    # so the requeue stops the shard in its middle rather than after its end
    run = Run(*sweep_args(sweep, "inverter.steps=60", "tuner.steps=5", "reuse_inversions=false"))
    task = array_task(sweep, 0)
    wait_for(lambda: any(r["stage"] == "tuning" for r in rows_of(sweep / "0")), "the first image of shard 0")
    subprocess.run(["scontrol", "requeue", task], check=True)
    wait_for(lambda: job_state(task) == "PENDING", "the requeued job to be pending")
    subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], check=True)  # not SLURM's 2-min hold
    assert run.wait(timeout=600) == 0, run.output[-3000:]
    print(f"SLURM 2-shard sweep with a requeue: {time.monotonic() - start:.1f} s wall")
    restarts = subprocess.run(["scontrol", "show", "job", task], capture_output=True, text=True).stdout
    assert "Restarts=1" in restarts, restarts  # it really ran twice
    assert "already done, skipped" in (sweep / "0" / "run.log").read_text()
    check_merged(sweep)


@pytest.mark.slow
def test_cancelled_slurm_sweep_finishes_when_the_command_is_run_again(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    args = sweep_args(sweep, "inverter.steps=20", "tuner.steps=5", "reuse_inversions=false")
    cancelled = Run(*args)
    task = array_task(sweep, 0)
    wait_for(lambda: rows_of(sweep / "0"), "the first row of shard 0")
    subprocess.run(["scancel", task.split("_")[0]], check=True)  # the whole array
    # Without an accounting database (sacct) the local cluster cannot tell submitit that its jobs were
    # cancelled, so the sweep would wait for them: stop it, as a user would.
    wait_for(lambda: job_state(task) == "", "the cancelled job to leave the queue", timeout=60)
    cancelled.process.kill()
    cancelled.wait()
    again = Run(*args)
    assert again.wait(timeout=600) == 0, again.output[-3000:]
    check_merged(sweep)
