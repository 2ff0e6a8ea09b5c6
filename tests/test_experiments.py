"""The paper's experiments end to end at smoke size: every sweep runs from `+experiment=NAME`, every
job writes its results, and the sweep's report (tables, figures, report.html) is written when it ends.
The numbers in the tables are checked against the per-run results in tests/test_report.py."""

import csv
import json

import pytest

from tests.conftest import run_py

SMOKE = ["inverter.steps=2", "tuner.steps=2", "logger=none", "preview.count=0", "device=cpu"]
EXPERIMENTS = {  # experiment -> (smoke overrides, jobs, files the report must hold)
    "table1": (["data.limit=1"], 8, ["table1.csv", "table1.md", "table1.tex"]),
    "table2": (["data.limit=1", "editor.editors.3.num_samples=2000", "editor.editors.4.steps=2"], 3,
               ["table2.csv", "table2_edits.csv", "table2_equal_change.csv"]),
    "fig15": (["data.limit=1,2"], 4, ["fig15.csv", "fig15.png", "fig15.pdf"]),
    "fig16": (["data.limit=1"], 6, ["fig16.csv", "fig16.png", "fig16.pdf"]),
}


@pytest.mark.parametrize("experiment", list(EXPERIMENTS))
def test_experiment_sweep_writes_every_job_and_its_report(experiment, tmp_path):
    overrides, jobs, files = EXPERIMENTS[experiment]
    sweep = tmp_path / experiment
    result = run_py(f"+experiment={experiment}", *SMOKE, *overrides, f"hydra.sweep.dir={sweep}")
    summaries = [json.loads((sweep / str(job) / "summary.json").read_text()) for job in range(jobs)]
    assert not (sweep / str(jobs)).exists()
    assert all(s["report"]["experiment"] == experiment and s["failed"] == [] and s["images"] >= 1
               for s in summaries)
    report = sweep / "report"
    assert f"report: {report / 'report.html'}" in result.stdout
    for name in files + ["report.html"]:
        assert (report / name).stat().st_size > 0, name
    with open(report / files[0]) as file:
        rows = list(csv.DictReader(file))
    methods = {s["report"].get("method") for s in summaries}
    assert len(rows) == jobs and (None in methods or {row["method"] for row in rows} == methods)
    html = (report / "report.html").read_text()
    assert "PASS" in html or "FAIL" in html  # its claim is decided, whichever way
