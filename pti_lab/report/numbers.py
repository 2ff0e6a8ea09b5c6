"""The numbers of one run, aggregated from its per-image rows: means, standard deviations, counts.

Every number here is the mean over images of a job's results.jsonl rows (or, for the locality drift,
the run-level value of its summary.json), so a table built from it can be checked against the rows.
"""

import math
import statistics
from dataclasses import dataclass
from typing import Optional

import numpy as np

from pti_lab.report.sweep import Job
from pti_lab.tracking.memory import PEAK_MEMORY_KEY, image_peaks

RECONSTRUCTION_METRICS = ("mse", "lpips", "ms_ssim", "psnr", "id_sim", "seconds")
EDIT_METRICS = ("id_sim_target", "id_sim", "target_delta", "other_delta")
DRIFT_METRICS = ("drift_lpips", "drift_mse")
PEAK_MEMORY = PEAK_MEMORY_KEY      # per image: the largest of its rows' (pti_lab/tracking/memory.py)
LOWER_IS_BETTER = frozenset({"mse", "lpips", "seconds", "other_delta", "drift_lpips", "drift_mse", PEAK_MEMORY})
NOT_RANKED = frozenset({"target_delta"})  # a larger change is not better or worse in itself


@dataclass(frozen=True)
class Stat:
    mean: Optional[float]          # None: no value
    std: Optional[float]           # sample standard deviation; None with fewer than two values
    n: int                         # values averaged


def stat(values: list) -> Stat:
    """Mean and sample standard deviation of the values that are not None."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return Stat(None, None, 0)
    return Stat(statistics.fmean(present), statistics.stdev(present) if len(present) > 1 else None, len(present))


@dataclass
class RunNumbers:
    """The aggregated numbers of one job: one row of its experiment's tables."""

    job: Job
    reconstruction: dict[str, Stat]              # metric -> over the final stage's images
    inversion: dict[str, Stat]                   # metric -> over the inversion rows
    edits: dict[tuple[str, float], dict[str, Stat]]  # (edit, strength) -> metric -> over images
    drift: dict[str, Stat]                       # drift_lpips, drift_mse (run-level; empty without)

    @property
    def images(self) -> int:
        return len(self.job.images)

    @property
    def identities(self) -> int:
        """Identities tuned together (multi-ID runs): the report's count, else the run's images."""
        return int(self.job.keys.get("identities", (self.job.summary or {}).get("images", self.images)))

    @property
    def regularizer(self) -> str:
        return str(self.job.keys.get("regularizer", self.job.choices.get("regularizer", "none")))

    def edit_names(self) -> list[str]:
        return list(dict.fromkeys(edit for edit, _ in self.edits))

    @property
    def eval_size(self) -> Optional[str]:
        """The size the run's reconstruction metrics were measured at, e.g. "256×256", or "64×64 (native)"
        at the generator's own resolution (runs from before metrics.eval_size were all measured so);
        from summary.json, else from the rows of a run still going; None when unknown."""
        summary = self.job.summary or {}
        resolution = (summary.get("generator") or {}).get("resolution")
        sizes = {row["eval_size"] for row in self.job.stage_rows(self.job.final_stage) if row.get("eval_size")}
        size = summary.get("eval_size") or (sizes.pop() if len(sizes) == 1 else None) or resolution
        if size is None:
            return None
        return f"{size}×{size}" + (" (native)" if size == resolution else "")

    @property
    def memory_measure(self) -> Optional[str]:
        """What its peak memory is (a key of pti_lab.tracking.memory.MEASURES); None when not measured."""
        return ((self.job.summary or {}).get("peak_memory") or {}).get("measure")


def seconds_per_image(job: Job) -> dict[str, float]:
    """Seconds of each image that reached the final stage, summed over all its rows (every stage)."""
    seconds = {image: 0.0 for image in job.images}
    for row in job.rows:
        if row["image"] in seconds:
            seconds[row["image"]] += row.get("seconds") or 0.0
    return seconds


def stage_stats(rows: list[dict], metrics: tuple[str, ...]) -> dict[str, Stat]:
    return {metric: stat([row.get(metric) for row in rows]) for metric in metrics}


def run_numbers(job: Job) -> RunNumbers:
    reconstruction = stage_stats(job.stage_rows(job.final_stage), RECONSTRUCTION_METRICS[:-1])
    reconstruction["seconds"] = stat(list(seconds_per_image(job).values()))
    peaks = image_peaks(job.rows)
    reconstruction[PEAK_MEMORY] = stat([peaks.get(image) for image in job.images])
    edits: dict[tuple[str, float], list[dict]] = {}
    for row in job.stage_rows("edit"):
        edits.setdefault((row["edit"], float(row["strength"])), []).append(row)
    locality = (job.summary or {}).get("locality") or {}
    drift = {f"drift_{key}": Stat(locality[key], None, 1) for key in ("lpips", "mse") if locality.get(key) is not None}
    return RunNumbers(job=job, reconstruction=reconstruction,
                      inversion=stage_stats(job.stage_rows("inversion"), RECONSTRUCTION_METRICS[:-1]),
                      edits={key: stage_stats(rows, EDIT_METRICS) for key, rows in edits.items()}, drift=drift)


def compare_at_equal_change(runs: dict[str, RunNumbers], edit: str) -> list[tuple[float, float, dict[str, float]]]:
    """Identity to the source image (id_sim_target) of each run's `edit`, at equal attribute change.

    Edits of equal strength do not change the attribute equally in every run, so per sign of the
    strength each run's mean id_sim_target is interpolated linearly as a function of |mean
    target_delta| through its strengths, starting at no change with the reconstruction's identity
    (a strength-0 edit is the reconstruction), at half and all of the change that every run reaches.
    Runs without edits of a sign (or without identity
    scores) are left out of that sign's comparison. Returns rows (sign, |target_delta|, {label: value}).
    """
    rows = []
    for sign in (-1.0, 1.0):
        curves = {}
        for label, run in runs.items():
            start = run.reconstruction["id_sim"].mean
            points = [(abs(m["target_delta"].mean), m["id_sim_target"].mean)
                      for (name, strength), m in run.edits.items()
                      if name == edit and strength * sign > 0
                      and m["target_delta"].mean is not None and m["id_sim_target"].mean is not None]
            if points and start is not None:
                points = sorted([(0.0, start), *points])  # np.interp needs increasing change
                curves[label] = (np.array([x for x, _ in points]), np.array([y for _, y in points]))
        if not curves:
            continue
        reach = min(x.max() for x, _ in curves.values())
        if not reach > 0 or not math.isfinite(reach):
            continue
        for level in (reach / 2, reach):
            rows.append((sign, float(level), {label: float(np.interp(level, x, y)) for label, (x, y) in curves.items()}))
    return rows
