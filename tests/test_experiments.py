"""The paper's experiments end to end at smoke size: `+experiment=paper` runs every experiment's sweep
(each from its own `+experiment=NAME`), every job writes its results, each sweep's report (tables,
figures, report.html) is written when it ends, and one report of all four when the paper ends. The
numbers in the tables are checked against the per-run results in tests/test_report.py."""

import csv
import json
import os
import re
from html import unescape
from pathlib import Path

import pytest

from pti_lab.paper import sweep_command
from pti_lab.report.claims import FAIL, PASS, check_claims
from pti_lab.report.numbers import run_numbers
from pti_lab.report.sweep import read_sweep
from tests.conftest import run_py
from tests.wandb_records import OfflineRun

def smoke(images: int = 1) -> list[str]:
    """debug=smoke on `images` images per job (an experiment's own data.limit wins over the debug config's)."""
    return ["debug=smoke", f"data.limit={images}"]


EXPERIMENTS = {  # experiment -> (jobs, files the report must hold, the claim its runs decide)
    "table1": (14, ["table1.csv", "table1.md", "table1.tex"], "tuned LPIPS <= 0.5 x W-inversion LPIPS"),
    "table2": (6, ["table2.csv", "table2_edits.csv", "table2_equal_change.csv"],
               "PTI edits keep more identity than W and W+ edits at equal attribute change"),
    "fig15": (2, ["fig15.csv", "fig15.png", "fig15.pdf"], "locality cuts drift >= 30% at equal fit"),
    "fig16": (6, ["fig16.csv", "fig16.png", "fig16.pdf"], "A beats C and D (reconstruction LPIPS and identity)"),
}


def verdicts_on_page(page: str) -> dict[str, list[str]]:
    """{claim: [its statuses]} of the claims table of a report.html."""
    section = page[page.index('<section id="claims">'):]
    rows = re.findall(r'<tr><td>(.*?)</td><td class="[^"]*">(.*?)</td>', section[:section.index("</section>")])
    verdicts = {}
    for claim, status in rows:
        verdicts.setdefault(unescape(claim), []).append(unescape(status))
    return verdicts


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    """`python run.py +experiment=paper` at smoke size: (its directory, its stdout)."""
    out = tmp_path_factory.mktemp("paper")
    result = run_py("+experiment=paper", f"paper.dir={out}", *smoke(), timeout=1200)
    return out, result.stdout


@pytest.mark.parametrize("experiment", list(EXPERIMENTS))
def test_experiment_sweep_writes_every_job_and_its_report(experiment, paper):
    out, stdout = paper
    jobs, files, claim = EXPERIMENTS[experiment]
    sweep = out / experiment
    summaries = [json.loads((sweep / str(job) / "summary.json").read_text()) for job in range(jobs)]
    assert not (sweep / str(jobs)).exists()
    assert all(s["report"]["experiment"] == experiment and s["failed"] == [] and s["images"] >= 1
               for s in summaries)
    report = sweep / "report"
    for name in files + ["report.html"]:
        assert (report / name).stat().st_size > 0, name
    with open(report / files[0]) as file:
        rows = list(csv.DictReader(file))
    methods = {s["report"].get("method") for s in summaries}
    assert len(rows) == jobs and (None in methods or {row["method"] for row in rows} == methods)
    # Each claim has one verdict, the one claims.py gives on these jobs; this experiment's own is decided.
    decided = {name: status for name, status, _ in check_claims([run_numbers(job) for job in read_sweep(sweep).jobs])}
    assert verdicts_on_page((report / "report.html").read_text()) == {name: [status] for name, status in decided.items()}
    assert decided[claim] in (PASS, FAIL), decided


def test_paper_writes_one_report_of_all_four(paper):
    out, stdout = paper
    assert stdout.splitlines()[-1] == f"report: {out / 'report' / 'report.html'}"
    assert re.findall(r"^\[\d/\d\] \w+", stdout, re.MULTILINE) == ["[1/4] table1", "[2/4] table2", "[3/4] fig15",
                                                                   "[4/4] fig16"]
    for experiment, (_, files, _) in EXPERIMENTS.items():
        for name in files:
            assert (out / "report" / name).read_text("latin-1") == (out / experiment / "report" / name).read_text("latin-1") \
                or name.endswith((".png", ".pdf")), name  # figures are redrawn (PDFs carry a date)
    page = (out / "report" / "report.html").read_text()
    for experiment in EXPERIMENTS:
        assert f'id="experiment-{experiment}"' in page and f"{experiment}/0" in page
    assert (out / ".hydra" / "overrides.yaml").is_file()  # the paper's own command, recorded


def test_paper_sweep_jobs_share_the_cores_rather_than_each_take_them_all(paper):
    """The sweeps run their jobs side by side (paper.sweep_overrides: joblib, one job per core): each job
    gets cores // jobs threads, or the user's OMP_NUM_THREADS, not the threads of the paper process."""
    out, _ = paper
    user = os.environ.get("OMP_NUM_THREADS")
    for log in sorted(out.glob("*/[0-9]*/run.log")):
        threads, why = re.search(r"torch threads: (\d+) \((.*)\)", log.read_text()).groups()
        if user:
            assert why == f"OMP_NUM_THREADS={user}", log
        else:
            cores, jobs = map(int, re.fullmatch(r"(\d+) cores? / (\d+) jobs?", why).groups())
            assert int(threads) == max(cores // jobs, 1) and jobs == cores, log


def test_paper_resumes_without_rerunning_a_job(paper):
    """Re-running the paper over a finished one reruns nothing: every job finds its results."""
    out, _ = paper
    files = sorted((out / "fig15").glob("*/results.jsonl")) + sorted((out / "fig15").glob("*/tuned_G.pt"))
    before = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in files}
    run_py("+experiment=paper", f"paper.dir={out}", "paper.experiments=[fig15]", *smoke())
    assert len(before) == 4 and {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in files} == before


def test_sweep_with_wandb_gets_a_summary_run_in_its_group(wandb_env, tmp_path):
    sweep = tmp_path / "2026-12-02" / "12-00-00"
    run_py("+experiment=fig15", f"hydra.sweep.dir={sweep}", *smoke(), "regularizer=none",
           "logger=wandb", "logger.mode=offline")
    job, summary = OfflineRun(sweep / "0"), OfflineRun(sweep / "report")
    assert job.run.run_group == summary.run.run_group == "fig15:2026-12-02/12-00-00"
    assert summary.run.job_type == "summary" and any("tables/fig15_drift" in row for row in summary.history)


def test_paper_sweeps_get_the_papers_defaults_unless_the_command_line_sets_them():
    defaults = ["hydra/launcher=joblib", "batch_size=8"]
    paper_command = ["+experiment=paper", "paper.dir=out", "logger=none"]
    command = sweep_command("run.py", "table1", Path("out/table1"), paper_command, ["hydra.run.dir=out"], defaults)
    assert command[1:] == ["run.py", "+experiment=table1", "hydra.sweep.dir=out/table1", *defaults, "logger=none"]
    command = sweep_command("run.py", "table1", Path("out/table1"), ["+experiment=paper", "batch_size=1"],
                            ["hydra/launcher=basic"], defaults)
    assert command[4:] == ["batch_size=1", "hydra/launcher=basic"]  # Hydra would refuse a key given twice


def test_benchmark_reports_ganinverters_table_of_every_method(tmp_path):
    """+experiment=benchmark: the six methods on the same images, one row each in GANInverter's columns,
    each number the mean over the job's per-image rows."""
    sweep = tmp_path / "benchmark"
    run_py("+experiment=benchmark", f"hydra.sweep.dir={sweep}", *smoke(2), timeout=300)
    with open(sweep / "report" / "benchmark.csv") as file:
        table = list(csv.DictReader(file))
    assert [row["method"] for row in table] == ["W", "W+", "e4e", "pSp", "PTI", "PTI (e4e pivot)"]
    assert list(table[0]) == ["method", "data", "mse", "lpips", "ms_ssim", "id_sim", "seconds", "peak_memory_mb", "n"]
    for number, row in enumerate(table):
        rows = [json.loads(line) for line in (sweep / str(number) / "results.jsonl").read_text().splitlines()]
        final = [r for r in rows if r["stage"] == ("tuning" if "PTI" in row["method"] else "inversion")]
        assert int(row["n"]) == len(final) == 2 and not any(r.get("reused") for r in rows)
        for metric in ("mse", "lpips", "ms_ssim", "id_sim", "peak_memory_mb"):
            assert float(row[metric]) == pytest.approx(sum(r[metric] for r in final) / 2, rel=1e-9), metric
        seconds = [sum(r["seconds"] for r in rows if r["image"] == image) for image in {r["image"] for r in final}]
        assert float(row["seconds"]) == pytest.approx(sum(seconds) / 2, rel=1e-9)
        assert 50 < float(row["peak_memory_mb"]) < 64_000
    markdown = (sweep / "report" / "benchmark.md").read_text()
    assert "| method | data | MSE ↓ | LPIPS ↓ | MS-SSIM ↑ | ID ↑ | Time (s)/image ↓ | Memory (MiB)/image ↓ | n |" in markdown
    assert "at 256×256" in markdown.splitlines()[0] and "peak resident memory" in markdown.splitlines()[0]
    assert 'id="experiment-benchmark"' in (sweep / "report" / "report.html").read_text()
