"""Peak memory of each group of images: the `peak_memory_mb` of every results row.

The driver starts a measurement when a group of images starts (one image by default, K with
batch_size=K, all of them in multi-ID mode); every row recorded until the next group carries the
peak so far, so an image's peak is the largest `peak_memory_mb` of its rows. What it includes:

  cuda         torch.cuda.max_memory_allocated: every tensor the process holds on the GPU during the
               group, the generator, LPIPS, identity and encoder networks included (not the CUDA
               context, nor what the caching allocator reserves beyond it).
  rss          the process's peak resident memory (VmHWM) during the group, everything included:
               the Python interpreter and torch's libraries, every network, tensors, optimiser state.
               At the start of each group the freed memory that glibc keeps for reuse
               (runtime.keep_freed_memory) goes back to the kernel and the high-water mark is reset
               (/proc/self/clear_refs), so the peak is this group's, not an earlier job's in the
               same process.
  rss_process  where the high-water mark cannot be reset (not Linux, or no clear_refs): the
               process's peak resident memory since it started (getrusage ru_maxrss), an upper
               bound that earlier groups and jobs of the same process raise.

Images of one group share one peak (batch_size=K: K images in one pass; multi-ID: all images).
"""

import resource
import sys
from pathlib import Path
from typing import Optional

import torch

from pti_lab.batching.memory import proc_bytes
from pti_lab.runtime import return_freed_memory

MiB = 2 ** 20
PEAK_MEMORY_KEY = "peak_memory_mb"  # the results-row key
MEASURES = {"cuda": "peak CUDA memory allocated by torch (networks and tensors)",
            "rss": "peak resident memory of the process (networks, tensors, interpreter and libraries)",
            "rss_process": "peak resident memory of the process since it started (an upper bound)"}


def reset_high_water_mark() -> bool:
    """Reset the process's VmHWM to its current resident size (Linux >= 4.0); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def max_rss_bytes() -> int:
    """getrusage's peak resident size of the process (kibibytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class PeakMemory:
    """start() at the beginning of a group, peak_mb() whenever a row is recorded; `measure` names
    what is measured (a key of MEASURES)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.measure = "cuda" if device.type == "cuda" else "rss"

    def start(self) -> None:
        if self.measure == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.measure == "rss":
            return_freed_memory()
            if not reset_high_water_mark() or proc_bytes("/proc/self/status", "VmHWM") is None:
                self.measure = "rss_process"

    def peak_mb(self) -> float:
        if self.measure == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self.measure == "rss":
            peak = proc_bytes("/proc/self/status", "VmHWM") or max_rss_bytes()
        else:
            peak = max_rss_bytes()
        return round(peak / MiB, 1)


def image_peaks(rows: list[dict]) -> dict[str, float]:
    """{image: its largest peak_memory_mb over its rows} for the images that have one."""
    peaks: dict[str, float] = {}
    for row in rows:
        value = row.get(PEAK_MEMORY_KEY)
        if value is not None:
            peaks[row["image"]] = max(value, peaks.get(row["image"], value))
    return peaks


def peak_memory_summary(rows: list[dict], measure: Optional[str]) -> Optional[dict]:
    """summary.json's `peak_memory`: what was measured, and the mean and largest peak per image
    (MiB); None when no row has a peak."""
    peaks = list(image_peaks(rows).values())
    if not peaks:
        return None
    return {"measure": measure, "mean_mb": round(sum(peaks) / len(peaks), 1), "max_mb": max(peaks),
            "images": len(peaks)}
