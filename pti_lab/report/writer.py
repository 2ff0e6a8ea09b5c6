"""Writing the report of a sweep: tables and figures per experiment, claims, report.html."""

import subprocess
from datetime import datetime
from pathlib import Path
from typing import Optional

import pti_lab
from pti_lab.atomic import write_text
from pti_lab.report.claims import check_claims
from pti_lab.report.figures import EXPERIMENT_FIGURES, save_figure
from pti_lab.report.html import ExperimentSection, render_page
from pti_lab.report.numbers import run_numbers
from pti_lab.report.sweep import job_notes, read_sweep
from pti_lab.report.tables import experiment_tables, write_table

REPORT_DIR = "report"  # inside the sweep directory


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


def write_report(sweep_dir: str | Path, out_dir: Optional[str | Path] = None) -> Path:
    """Write the report of the sweep in `sweep_dir` (a Hydra multirun directory, finished or not) into
    `out_dir` (default SWEEP_DIR/report); returns the path of report.html."""
    sweep = read_sweep(sweep_dir)
    out = Path(out_dir) if out_dir else sweep.path / REPORT_DIR
    notes = job_notes(sweep.jobs)
    missing = [f"{job}: not started (no job folder)" for job in sweep.missing]
    runs, sections = [], []
    for experiment, jobs in sweep.experiments().items():
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
    page = render_page(sweep, sections, check_claims(runs), missing + [note for _, note in notes], code_version(),
                       datetime.now().isoformat(sep=" ", timespec="seconds"))
    return write_text(out / "report.html", page)

