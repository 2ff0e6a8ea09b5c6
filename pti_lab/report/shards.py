"""One data set split over the jobs of a sweep (`-m 'data.shard=range(0,N)' data.shards=N`), merged back.

The jobs whose settings differ only in `data.shard` form one sharded run. Its merge, in
REPORT_DIR/shards/<run>/ (<run> = "all", or the other overrides when the sweep holds several sharded
runs), is a run directory of its own: results.jsonl (every shard's rows; an image done by two
shards keeps the rows of the lower job), results.csv (the same rows as a table), failed.json and
summary.json (the format of every run, plus `shards`: the shard count, the jobs, and the images
missing or duplicated). An image is missing when the data set holds it but no shard has its final
row nor recorded it as failed (a shard that has not run or not finished); duplicated when more
than one shard has rows of it (shards of different data.shards, or of a data set that changed
between jobs).
"""

import csv
import io
import json
import re
from pathlib import Path
from typing import Optional

from hydra.utils import instantiate
from omegaconf import OmegaConf

from pti_lab.atomic import write_text
from pti_lab.report.sweep import Job, Sweep
from pti_lab.tracking.store import RunStore, write_json

SHARDS_DIR = "shards"  # inside the report directory
SHARD_OVERRIDE = re.compile(r"^\+?data\.shard=")


def sharded(job: Job) -> bool:
    data = job.config.get("data") or {}
    return isinstance(data.get("shards"), int) and data["shards"] > 1


def run_label(job: Job) -> str:
    """The job's overrides other than data.shard: what its sibling shards share."""
    return " ".join(sorted(o for o in job.overrides if not SHARD_OVERRIDE.match(o)))


def dataset_names(job: Job) -> Optional[list[str]]:
    """Every image of the job's data set (all shards, after data.limit); None when it cannot be listed
    (a folder moved since, an option that needs the run's resolvers)."""
    data = dict(job.config.get("data") or {})
    try:
        dataset = instantiate(OmegaConf.create({**data, "shard": 0, "shards": 1}))
        return list(dataset.names)
    except Exception:  # anything the data set raises: the report then lists what the jobs hold
        return None


def to_csv(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def merge_run(jobs: list[Job], folder: Path) -> list[str]:
    """Merge the shard jobs of one run into `folder`; returns notes on missing and duplicated images."""
    shards = jobs[0].config["data"]["shards"]
    label = run_label(jobs[0]) or "all"
    owner: dict[str, int] = {}           # image -> the job whose rows are kept
    seen: dict[str, list[int]] = {}      # image -> jobs with rows of it
    for job in jobs:
        for image in dict.fromkeys(row["image"] for row in job.rows):
            seen.setdefault(image, []).append(job.number)
            owner.setdefault(image, job.number)
    rows = [row for job in jobs for row in job.rows if owner[row["image"]] == job.number]
    finished = {image for job in jobs for image in job.images if owner[image] == job.number}
    failed = {entry["image"]: entry for job in jobs for entry in job.failed if entry["image"] not in finished}
    present = {job.config["data"].get("shard") for job in jobs}
    missing_shards = [shard for shard in range(shards) if shard not in present]
    expected = dataset_names(jobs[0])
    missing = None if expected is None else [name for name in expected if name not in finished and name not in failed]
    duplicated = {image: numbers for image, numbers in seen.items() if len(numbers) > 1}

    store = RunStore(folder)
    write_text(store.results_path, "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows))
    write_json(store.failed_path, list(failed.values()))
    write_text(folder / "results.csv", to_csv(rows))
    store.write_summary(jobs[0].choices, {"shards": {
        "count": shards, "run": label, "jobs": [job.number for job in jobs], "missing_shards": missing_shards,
        "missing_images": missing, "duplicated_images": duplicated}})

    notes = []
    where = f"shards of '{label}'"
    if missing_shards:
        notes.append(f"{where}: shard(s) {', '.join(map(str, missing_shards))} of {shards} have no job")
    if missing is None:
        notes.append(f"{where}: the data set cannot be listed here, so missing images are not known")
    elif missing:
        notes.append(f"{where}: {len(missing)} image(s) missing: {', '.join(missing[:20])}"
                     + (" ..." if len(missing) > 20 else ""))
    for image, numbers in duplicated.items():
        notes.append(f"{where}: image {image} is in jobs {', '.join(map(str, numbers))} "
                     f"(the rows of job {numbers[0]} kept)")
    return notes


def merge_shards(sweep: Sweep, report_dir: str | Path) -> list[str]:
    """Merge every sharded run of the sweep into report_dir/shards/<run>/; returns the notes on it."""
    runs: dict[str, list[Job]] = {}
    for job in sweep.jobs:
        if sharded(job):
            runs.setdefault(run_label(job), []).append(job)
    notes = []
    for label, jobs in runs.items():
        name = "all" if len(runs) == 1 else re.sub(r"[^A-Za-z0-9._=-]+", "_", label).strip("_")[:100] or "all"
        notes += merge_run(jobs, Path(report_dir) / SHARDS_DIR / name)
    return notes
