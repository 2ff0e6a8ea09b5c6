import os
from pathlib import Path

import pytest
import torch

from pti_lab.runtime import keep_freed_memory

os.environ.setdefault("WANDB_MODE", "disabled")
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
