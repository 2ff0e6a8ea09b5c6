import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys, torch
from pti_lab.runtime import keep_freed_memory
if sys.argv[1] == "kept":
    assert keep_freed_memory()
torch.set_num_threads(1)
x = torch.randn(64, 64, 64)
def step():
    y = x
    for _ in range(8):
        y = (y * 1.5).tanh() + x  # fresh 1 MiB tensors, freed as the loop goes on
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_kept_memory_stops_page_faults_of_fresh_tensors():
    # 400 tensors of 1 MiB: with glibc's defaults they come back from the kernel untouched each
    # time; kept, they reuse freed heap pages.
    assert page_faults("kept") < 100 <= page_faults("default")
