import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pti_lab.runtime import keep_freed_memory

os.environ.setdefault("WANDB_MODE", "disabled")
if "OMP_NUM_THREADS" not in os.environ:  # set: torch follows it (the suite must pass with 1 and 2)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
keep_freed_memory()  # as the entry points do

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Read-only reference files shipped beside the repository (../shared), as in CI.
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture
def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.fail(f"{SHARED_FIXTURES} is missing: clone the repository next to shared/")
    return SHARED_FIXTURES


def run_py(*args: str, env: dict | None = None, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """`python run.py ARGS` in the repository with W&B disabled (whatever the calling shell says);
    `env` replaces the environment (W&B still disabled). With `check`, a non-zero exit fails the
    test with the end of stderr."""
    environment = {**(os.environ if env is None else env), "WANDB_MODE": "disabled"}
    result = subprocess.run([sys.executable, "run.py", *args], cwd=REPO, env=environment, capture_output=True,
                            text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result
