"""Writing the report of one sweep, or of several together (the paper's four): tables and figures per
experiment, the claims checked on every run, report.html."""

import os
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional, Sequence

import pti_lab
from pti_lab.atomic import write_text
from pti_lab.report.claims import check_claims
from pti_lab.report.figures import EXPERIMENT_FIGURES, save_figure
from pti_lab.report.html import ExperimentSection, render_page
from pti_lab.report.numbers import run_numbers
from pti_lab.report.shards import merge_shards
from pti_lab.report.sweep import Job, Sweep, job_notes, read_sweep
from pti_lab.report.tables import experiment_tables, write_table

REPORT_DIR = "report"  # inside the sweep directory


@dataclass
class Report:
    html: Path                           # report.html; the tables and figures are beside it
    sweeps: list[Sweep]
    sections: list[ExperimentSection]    # one per experiment: its tables and figures
    claims: list[tuple[str, str, str]]   # (claim, PASS|FAIL|not run, numbers)
    notes: list[str]                     # what is missing or incomplete


def code_version() -> str:
    """`git describe --always --dirty` of the repository pti_lab is checked out in, else the package version."""
    repository = Path(pti_lab.__file__).resolve().parents[1]
    if (repository / ".git").exists():
        try:
            described = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=repository,
                                       capture_output=True, text=True, timeout=30)
            if described.returncode == 0 and described.stdout.strip():
                return described.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass  # no git: the package version below
    return f"pti-lab {pti_lab.__version__}"


def build_report(sweep_dirs: str | Path | Sequence[str | Path], out_dir: Optional[str | Path] = None) -> Report:
    """Write the report of the sweep(s) in `sweep_dirs` (Hydra multirun directories, finished or not)
    into `out_dir` (default: SWEEP_DIR/report; for several sweeps, report/ in the folder that holds
    them). With several sweeps, jobs are named <sweep folder>/<job number> and the claims are checked on
    all their runs together."""
    single = isinstance(sweep_dirs, (str, Path))
    sweeps = [read_sweep(path) for path in ([sweep_dirs] if single else sweep_dirs)]
    if not sweeps:
        raise ValueError("no sweep to report")
    if out_dir is None:
        out_dir = (sweeps[0].path if len(sweeps) == 1 else
                   Path(os.path.commonpath([sweep.path.resolve() for sweep in sweeps]))) / REPORT_DIR
    out = Path(out_dir)
    missing = [f"{sweep.path.name + ' ' if len(sweeps) > 1 else ''}{job}: not started (no job folder)"
               for sweep in sweeps for job in sweep.missing]
    notes: list[tuple[Job, str]] = []
    experiments: dict[str, list[Job]] = {}
    for sweep in sweeps:
        jobs, merge_notes = merge_shards(sweep, out)  # a sharded run is one job of all its shards' rows
        missing += merge_notes
        notes += job_notes(jobs)
        for job in jobs:  # by experiment, in the order they first appear
            experiments.setdefault(job.experiment, []).append(job)
    runs, sections = [], []
    for experiment, jobs in experiments.items():
        experiment_runs = [run_numbers(job) for job in jobs]
        runs += experiment_runs
        tables = experiment_tables(experiment, experiment_runs)
        tables[0].notes = missing + [note for job, note in notes if job.experiment == experiment]
        for table in tables:
            write_table(table, out)
        figures = {}
        if experiment in EXPERIMENT_FIGURES:
            draw, caption = EXPERIMENT_FIGURES[experiment]
            figure = draw(experiment_runs)
            if figure is not None:
                figures[caption] = save_figure(figure, out, experiment)[0]
        sections.append(ExperimentSection(experiment, tables, figures))
    claims = check_claims(runs)
    all_notes = missing + [note for _, note in notes]
    page = render_page(sweeps, sections, claims, all_notes, code_version(),
                       datetime.now().isoformat(sep=" ", timespec="seconds"))
    return Report(write_text(out / "report.html", page), sweeps, sections, claims, all_notes)


def write_report(sweep_dirs: str | Path | Sequence[str | Path], out_dir: Optional[str | Path] = None) -> Path:
    """build_report(...).html: the path of the report.html written."""
    return build_report(sweep_dirs, out_dir).html
