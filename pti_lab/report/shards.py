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

The report shows a merged run as one row (its n counting every image of every shard, its means over
all of them), labelled like any of its shards, and checks the claims on it; multi-ID shards, each a
generator tuned for its own images, stay a row each.
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
from pti_lab.metrics.edit_scores import edit_summary
from pti_lab.report.sweep import Job, Sweep
from pti_lab.tracking.memory import peak_memory_summary
from pti_lab.tracking.store import RunStore, write_json

SHARDS_DIR = "shards"  # inside the report directory
SHARD_OVERRIDE = re.compile(r"^\+?data\.shard=")
RUN_LEVEL_KEYS = ("report", "generator", "eval_size")  # summary.json keys every shard of a run shares


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


def merged_summary_extra(jobs: list[Job], rows: list[dict]) -> dict:
    """The summary keys of a merged run beyond the store's: those its shards share (from the first
    finished one), the edit means and the peak memory per image over all its rows."""
    finished = [job.summary for job in jobs if job.summary is not None]
    extra = {key: finished[0][key] for key in RUN_LEVEL_KEYS if finished and key in finished[0]}
    if any(row.get("stage") == "edit" for row in rows):
        extra["edits"] = edit_summary(rows)
    measure = next((s["peak_memory"].get("measure") for s in finished if s.get("peak_memory")), None)
    peak = peak_memory_summary(rows, measure)
    return {**extra, **({"peak_memory": peak} if peak else {})}


def merge_run(jobs: list[Job], folder: Path) -> tuple[Job, list[str]]:
    """Merge the shard jobs of one run into `folder`; returns the merged run (finished when every shard
    is) and notes on missing and duplicated images."""
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
    summary = store.write_summary(jobs[0].choices, {**merged_summary_extra(jobs, rows), "shards": {
        "count": shards, "run": label, "jobs": [job.number for job in jobs], "missing_shards": missing_shards,
        "missing_images": missing, "duplicated_images": duplicated}})
    first = jobs[0]
    merged = Job(number=first.number, path=folder, overrides=[o for o in first.overrides if not SHARD_OVERRIDE.match(o)],
                 config=first.config, choices=first.choices,
                 summary=summary if all(job.summary is not None for job in jobs) else None, rows=rows,
                 experiment=first.experiment, method=first.method, data=first.data, keys=first.keys,
                 shards=[job.number for job in jobs],
                 image_dirs={image: job.path / "images" / image for job in jobs for image in job.images
                             if owner.get(image) == job.number})

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
    return merged, notes


def merge_shards(sweep: Sweep, report_dir: str | Path) -> tuple[list[Job], list[str]]:
    """Merge every sharded run of the sweep into report_dir/shards/<run>/. Returns the sweep's jobs as
    the report shows them, each sharded run (other than multi-ID ones) as one merged job in the place
    of its first shard, and the notes on the merges."""
    runs: dict[str, list[Job]] = {}
    for job in sweep.jobs:
        if sharded(job):
            runs.setdefault(run_label(job), []).append(job)
    notes, shown = [], {job.number: job for job in sweep.jobs}
    for label, jobs in runs.items():
        name = "all" if len(runs) == 1 else re.sub(r"[^A-Za-z0-9._=-]+", "_", label).strip("_")[:100] or "all"
        merged, run_notes = merge_run(jobs, Path(report_dir) / SHARDS_DIR / name)
        notes += run_notes
        if jobs[0].mode != "multi":
            for job in jobs[1:]:
                del shown[job.number]
            shown[jobs[0].number] = merged
    return list(shown.values()), notes
