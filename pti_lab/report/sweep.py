"""Reading a Hydra multirun directory: its jobs, what each one ran and what it measured.

A sweep directory holds multirun.yaml and one folder per job, named by the job number. A job is
placed in an experiment and given a method label by summary.json's "report" (for a job that has not
written its summary yet, the `report` node of its .hydra/config.yaml); without one, the method is
the ablation, or "<inverter>+<tuner>", and the experiment is the `experiment` group choice, else
"runs". The data set is the `data` group choice.
"""

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pti_lab.tracking.memory import PEAK_MEMORY_KEY
from pti_lab.tracking.store import RunStore

FALLBACK_EXPERIMENT = "runs"
RECONSTRUCTION_STAGES = ("tuning", "inversion")  # the final reconstruction: the first a run has rows of


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.is_file() else None


@dataclass
class Job:
    """One job of the sweep, as far as it got."""

    number: int
    path: Path
    overrides: list[str]           # the job's own overrides (.hydra/overrides.yaml)
    config: dict                   # the job's composed config (.hydra/config.yaml; {} when missing)
    choices: dict                  # {config group: option}
    summary: Optional[dict]        # summary.json; None while the job has not finished
    rows: list[dict]               # results.jsonl
    experiment: str                # e.g. "table1"
    method: str                    # the row label, e.g. "PTI" or "A"
    data: str                      # the data set, e.g. "synthfaces_ood"
    keys: dict = field(default_factory=dict)  # the experiment's other report keys, e.g. {"identities": 4}
    shards: list[int] = field(default_factory=list)  # a sharded run merged into one (report/shards.py): its jobs
    image_dirs: dict[str, Path] = field(default_factory=dict)  # image -> its pictures' folder, when not under path

    @property
    def name(self) -> str:
        """'job 3', or for shards merged into one run 'jobs 3, 4, 5 (3 shards)'."""
        if self.shards:
            return f"jobs {', '.join(map(str, self.shards))} ({len(self.shards)} shards)"
        return f"job {self.number}"

    def stage_rows(self, stage: str) -> list[dict]:
        return [row for row in self.rows if row.get("stage") == stage]

    @property
    def final_stage(self) -> str:
        """The stage whose rows are the run's final reconstruction: tuning when it has any, else inversion."""
        return next((stage for stage in RECONSTRUCTION_STAGES if self.stage_rows(stage)), RECONSTRUCTION_STAGES[-1])

    @property
    def images(self) -> list[str]:
        """Names of the images that reached the final reconstruction, in the order of their rows."""
        return list(dict.fromkeys(row["image"] for row in self.stage_rows(self.final_stage)))

    @property
    def failed(self) -> list[dict]:
        return self.summary["failed"] if self.summary else RunStore(self.path).failed()

    @property
    def mode(self) -> str:
        return self.config.get("mode") or "single"

    def picture(self, image: str, filename: str) -> Optional[Path]:
        path = self.image_dirs.get(image, self.path / "images" / image) / filename
        return path if path.is_file() else None


@dataclass
class Sweep:
    path: Path
    jobs: list[Job]                # the job folders, by number
    multirun: dict                 # multirun.yaml ({} when missing)
    missing: list[str]             # jobs the sweep launches that have no folder: "job 4: +ablation=E"

    @property
    def command(self) -> str:
        """The command line that started the sweep, from multirun.yaml's record of its overrides."""
        overrides = (self.multirun.get("hydra") or {}).get("overrides") or {}
        hydra = [o for o in overrides.get("hydra") or [] if o != "hydra.mode=MULTIRUN"]  # that is the -m
        return shlex.join(["python", "run.py", "-m", *hydra, *(overrides.get("task") or [])])


def job_choices(summary: Optional[dict], hydra: dict) -> dict:
    """{group: option} from summary.json, else from Hydra's record of the job."""
    if summary and "choices" in summary:
        return dict(summary["choices"])
    choices = (hydra.get("runtime") or {}).get("choices") or {}
    return {group: option for group, option in choices.items() if not group.startswith("hydra")}


def config_report(config: dict, hydra: dict) -> dict:
    """The job config's `report` node (what its summary.json will hold), resolved against the config
    and Hydra's record of the job, `${hydra:key}` read as `${hydra.key}`; a value that does not
    resolve is left out."""
    report = config.get("report")
    if not isinstance(report, dict):
        return {}
    text = {key: value.replace("${hydra:", "${hydra.") if isinstance(value, str) else value for key, value in report.items()}
    node = OmegaConf.create({**config, "hydra": hydra, "report": text})
    resolved = {}
    for key in text:
        try:
            resolved[key] = OmegaConf.select(node, f"report.{key}", throw_on_resolution_failure=True)
        except OmegaConfBaseException:
            continue
    return resolved


def read_job(job_dir: Path) -> Job:
    summary_path = job_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    config = read_yaml(job_dir / ".hydra" / "config.yaml") or {}
    hydra = (read_yaml(job_dir / ".hydra" / "hydra.yaml") or {}).get("hydra") or {}  # Hydra's record of the job
    choices = job_choices(summary, hydra)
    report = dict((summary or {}).get("report") or config_report(config, hydra))
    experiment = report.pop("experiment", None) or choices.get("experiment") or FALLBACK_EXPERIMENT
    method = report.pop("method", None) or choices.get("ablation") or f"{choices.get('inverter')}+{choices.get('tuner')}"
    data = report.pop("data", None) or choices.get("data") or "?"
    return Job(number=int(job_dir.name), path=job_dir, overrides=read_yaml(job_dir / ".hydra" / "overrides.yaml") or [],
               config=config, choices=choices, summary=summary, rows=RunStore(job_dir).results(),
               experiment=str(experiment), method=str(method), data=str(data), keys=report)


def launched_jobs(multirun: dict) -> Optional[list[list[str]]]:
    """The overrides of every job a basic-sweeper multirun launches, by job number (the sweeper's
    params, then the command line's, as BasicSweeper.sweep combines them); None when unknown."""
    hydra = multirun.get("hydra") or {}
    sweeper = hydra.get("sweeper") or {}
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    params = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
    try:
        parsed = OverridesParser.create().parse_overrides(params + list((hydra.get("overrides") or {}).get("task") or []))
        return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    except HydraException:  # e.g. a glob() sweep, which needs the config search path: the job list is unknown
        return None


def read_sweep(sweep_dir: str | Path) -> Sweep:
    path = Path(sweep_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such sweep directory")
    multirun = read_yaml(path / "multirun.yaml") or {}
    jobs = sorted((read_job(d) for d in path.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda j: j.number)
    present = {job.number for job in jobs}
    launched = launched_jobs(multirun)
    if launched is not None:
        missing = [f"job {n}: {' '.join(o)}" for n, o in enumerate(launched) if n not in present]
    else:
        missing = [f"job {n}" for n in range(max(present, default=-1) + 1) if n not in present]
    return Sweep(path=path, jobs=jobs, multirun=multirun, missing=missing)


def job_notes(jobs: list[Job]) -> list[tuple[Job, str]]:
    """What a reader must know about each job's completeness: unfinished, fewer images than the jobs of
    its experiment on the same data set (at most its own data.limit), failed images, metrics that
    could not be computed (but not the peak memory, which every inversion taken from the pivot cache
    lacks, in every sweep that reuses inversions)."""
    most: dict[tuple, int] = {}
    for job in jobs:
        most[(job.experiment, job.data)] = max(most.get((job.experiment, job.data), 0), len(job.images))
    notes = []
    for job in jobs:
        label = f"{job.name} ({job.experiment}, {job.method}, {job.data})"
        if job.summary is None:
            notes.append((job, f"{label}: not finished (no summary.json); its numbers cover the rows written so far"))
        expected = most[(job.experiment, job.data)]
        limit = (job.config.get("data") or {}).get("limit")
        if isinstance(limit, int) and limit > 0:  # a job that asked for fewer images than its siblings have
            expected = min(expected, limit)
        if len(job.images) < expected:
            notes.append((job, f"{label}: {len(job.images)} of {expected} images"))
        for failure in job.failed:
            notes.append((job, f"{label}: image {failure['image']} failed: {failure['reason']}"))
        reasons: dict[str, list[str]] = {}
        for row in job.stage_rows(job.final_stage):
            for metric, why in (row.get("reasons") or {}).items():
                if metric != PEAK_MEMORY_KEY:
                    reasons.setdefault(metric, []).append(str(why))
        for metric, whys in reasons.items():
            notes.append((job, f"{label}: {metric} not computed for {len(whys)} image(s): {'; '.join(dict.fromkeys(whys))}"))
    return notes
