"""Peak memory per group of images (pti_lab/tracking/memory.py): the group's own peak, not an earlier
one's, in every row the group records, and its mean and largest per image in summary.json."""

import sys

import pytest
import torch

from pti_lab.tracking.memory import PeakMemory, image_peaks
from pti_lab.tracking.recorder import Recorder
from pti_lab.tracking.store import RunStore

MiB = 2 ** 20
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs are Linux's")


def touch_blocks(count: int, mib: int) -> list[torch.Tensor]:
    """`count` blocks of `mib` MiB, each below glibc's mmap threshold (runtime.keep_freed_memory), so they
    come from the heap, which keeps them mapped after they are freed."""
    return [torch.ones(mib * MiB // 4) for _ in range(count)]


@linux_only
def test_a_groups_peak_counts_what_it_allocates_and_not_what_an_earlier_group_freed():
    memory = PeakMemory(torch.device("cpu"))
    memory.start()
    before = memory.peak_mb()
    blocks = touch_blocks(8, 25)                  # 200 MiB
    during = memory.peak_mb()
    del blocks                                    # freed, but glibc keeps the heap mapped
    memory.start()                                # the next group
    after = memory.peak_mb()
    assert memory.measure == "rss"
    assert during - before == pytest.approx(200, abs=15)
    assert after < during - 150                   # the earlier group's 200 MiB are not this group's peak


def test_rows_carry_the_groups_peak_and_the_summary_its_mean_and_largest_per_image(tmp_path):
    recorder = Recorder(RunStore(tmp_path))
    recorder.start_group(torch.device("cpu"))
    recorder.result({"image": "a", "stage": "inversion", "lpips": 0.3, "seconds": 1.0, "reused": True}, {})
    blocks = touch_blocks(4, 25)
    recorder.result({"image": "a", "stage": "tuning", "lpips": 0.1, "seconds": 1.0}, {})
    del blocks
    recorder.start_group(torch.device("cpu"))
    recorder.result({"image": "b", "stage": "inversion", "lpips": 0.3, "seconds": 1.0, "reused": False}, {})
    rows = RunStore(tmp_path).results()
    assert rows[0]["peak_memory_mb"] is None and "pivot cache" in rows[0]["reasons"]["peak_memory_mb"]
    assert rows[1]["peak_memory_mb"] > 100 and rows[2]["peak_memory_mb"] > 50
    peaks = image_peaks(rows)
    assert peaks == {"a": rows[1]["peak_memory_mb"], "b": rows[2]["peak_memory_mb"]}
    summary = recorder.summary({}, {})
    assert summary["peak_memory"] == {"measure": "rss" if sys.platform.startswith("linux") else "rss_process",
                                      "mean_mb": round((peaks["a"] + peaks["b"]) / 2, 1),
                                      "max_mb": max(peaks.values()), "images": 2}
    resumed = Recorder(RunStore(tmp_path)).summary({}, {})  # a re-run that found every image done
    assert resumed["peak_memory"] == summary["peak_memory"]
