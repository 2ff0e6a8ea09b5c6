"""The sweep report (pti_lab.report): tables equal the means of the runs' rows, figures, claims,
incomplete sweeps, and report.html as a headless Chromium shows it.

The fixture writes a small sweep in the real formats (multirun.yaml, .hydra/, results.jsonl, summary.json
through RunStore, images/<name>/*.png) with jobs of the four paper experiments, an unfinished job and
two launched jobs that never started.
"""

import csv
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
import yaml
from PIL import Image

from pti_lab.metrics.edit_scores import edit_summary
from pti_lab.report import write_report
from pti_lab.report.claims import (FAIL, NOT_RUN, PASS, ablation_a_beats_c_and_d, check_claims,
                                   locality_cuts_drift, pti_edits_keep_identity, tuned_halves_inversion_lpips)
from pti_lab.report.figures import edit_tiles
from pti_lab.report.numbers import RunNumbers, Stat, compare_at_equal_change, run_numbers
from pti_lab.report.sweep import read_sweep
from pti_lab.tracking.store import RunStore, write_json
from tests.conftest import REPO
from tests.wandb_records import OfflineRun

TILE = 16  # pixels of one picture
EDITS = {"smile": (-3.0, 3.0), "pose": (-3.0, 3.0)}
METRICS = ("mse", "lpips", "ms_ssim", "psnr", "id_sim")


def picture(seed: int) -> Image.Image:
    """A TILE x TILE picture of one colour per seed with a stripe, so that tiles can be told apart."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((TILE, TILE, 3), np.uint8) + rng.integers(0, 256, 3, dtype=np.uint8)
    pixels[TILE // 2] = 255 - pixels[0, 0]
    return Image.fromarray(pixels)


def reconstruction_rows(image: str, stage: str, lpips: float, id_sim: float, rng: random.Random) -> dict:
    row = {"image": image, "stage": stage, "mse": 0.2 * lpips + rng.uniform(0, 0.01),
           "lpips": lpips + rng.uniform(-0.02, 0.02), "ms_ssim": 1 - lpips + rng.uniform(0, 0.05),
           "psnr": 30 - 20 * lpips + rng.uniform(-1, 1), "ssim": 1 - lpips, "id_sim": id_sim + rng.uniform(-0.02, 0.02),
           "steps": 10, "seconds": round(rng.uniform(1, 3), 3)}
    return row


def write_job(sweep, number: int, *, choices: dict, report: dict, images: int, inversion_lpips: float,
              tuned_lpips=None, id_sim: float = 0.8, edit_identity=None, locality=None, finished: bool = True,
              failed=None, mode: str = "single", limit=None, eval_size=None):
    """One job folder as run.py writes it. tuned_lpips None: no tuning (W, W+); edit_identity: the
    id_sim_target of the strongest edit (edits at +-1.5 and +-3 of smile and pose) when the run edits;
    eval_size None: a summary from before metrics.eval_size (measured at the generator's resolution)."""
    job = sweep / str(number)
    rng = random.Random(number)
    overrides = [f"+case={number}", *(f"{group}={option}" for group, option in choices.items())]
    hydra_dir = job / ".hydra"
    hydra_dir.mkdir(parents=True)
    config = {"seed": 0, "mode": mode, "data": {"limit": limit or images}, "report": report}
    (hydra_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (hydra_dir / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}, "job": {"num": number}}}))
    rows = []
    for i in range(images):
        name = f"ood_{i:03d}"
        folder = job / "images" / name
        folder.mkdir(parents=True)
        picture(1000 * number + 10 * i).save(folder / "target.png")
        picture(1000 * number + 10 * i + 1).save(folder / "inversion.png")
        rows.append(reconstruction_rows(name, "inversion", inversion_lpips, id_sim - 0.1, rng))
        tiles = [folder / "target.png", folder / "inversion.png"]
        if tuned_lpips is not None:
            picture(1000 * number + 10 * i + 2).save(folder / "tuned.png")
            tiles[1] = folder / "tuned.png"
            rows.append(reconstruction_rows(name, "tuning", tuned_lpips, id_sim, rng))
        if number == 2 and i == 1:
            rows[-1]["ms_ssim"] = None  # a metric that could not be computed
            rows[-1]["reasons"] = {"ms_ssim": "image too small for 5 scales"}
        if edit_identity is not None:
            for edit, strengths in EDITS.items():
                for strength in (strengths[0], strengths[0] / 2, strengths[1] / 2, strengths[1]):
                    change = abs(strength) / 3
                    rows.append({"image": name, "stage": "edit", "edit": edit, "strength": strength,
                                 "id_sim": 1 - 0.1 * change, "id_sim_target": id_sim - (id_sim - edit_identity) * change
                                 + rng.uniform(-0.01, 0.01), "target_delta": np.sign(strength) * (change + rng.uniform(0, 0.1)),
                                 "other_delta": 0.05 * change + rng.uniform(0, 0.01), "seconds": 0.1})
            edit_pictures = [Image.open(path) for path in tiles] + [picture(7 * i + k) for k in range(4 * len(EDITS))]
            two_rows = tuned_lpips is not None
            grid = Image.new("RGB", (TILE * len(edit_pictures), TILE * (2 if two_rows else 1)))
            for k, tile in enumerate(edit_pictures):
                grid.paste(tile, (TILE * k, 0))
                if two_rows:
                    grid.paste(tile.transpose(Image.Transpose.FLIP_TOP_BOTTOM), (TILE * k, TILE))
            grid.save(folder / "edits.png")
    (job / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    if failed:
        write_json(job / "failed.json", [{"image": failed, "reason": "BadInputError: not an image"}])
    if finished:
        extra = {"generator": {"resolution": TILE}, "report": report, "edits": edit_summary(rows),
                 **({"eval_size": eval_size} if eval_size else {})}
        if locality is not None:
            extra["locality"] = {"lpips": locality, "mse": locality / 10, "latents": 64}
        RunStore(job).write_summary(choices, extra)
    return job


def base_choices(**chosen) -> dict:
    return {"data": "synthfaces_ood", "inverter": "w", "tuner": "pivotal", "regularizer": "none",
            "editor": "none", "identity": "synthfaces", **chosen}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Jobs 0-5 table1, 6-8 table2, 9-12 fig15, 13-18 fig16 (18 unfinished: 3 of 4 images, no
    summary); jobs 19 and 20 launched but never started."""
    root = tmp_path_factory.mktemp("report") / "sweep"
    root.mkdir()
    jobs = []
    for data in ("synthfaces_ood", "synthfaces_indomain"):  # table1: W, W+, PTI on two data sets
        jobs.append((base_choices(data=data, tuner="none"), {"experiment": "table1", "method": "W"}, 0.30, None))
        jobs.append((base_choices(data=data, inverter="w_plus", tuner="none"), {"experiment": "table1", "method": "W+"},
                     0.25, None))
        jobs.append((base_choices(data=data), {"experiment": "table1", "method": "PTI"}, 0.30, 0.10))
    for number, (choices, report, inversion, tuned) in enumerate(jobs):
        write_job(root, number, choices=choices, report=report, images=4, inversion_lpips=inversion,
                  tuned_lpips=tuned, failed="ood_009" if number == 0 else None)
    table2 = [(base_choices(tuner="none", editor="paper"), "W", None, 0.5),
              (base_choices(inverter="w_plus", tuner="none", editor="paper"), "W+", None, 0.55),
              (base_choices(editor="paper"), "PTI", 0.1, 0.7)]
    for number, (choices, method, tuned, identity) in enumerate(table2, start=6):
        write_job(root, number, choices=choices, report={"experiment": "table2", "method": method}, images=3,
                  inversion_lpips=0.3, tuned_lpips=tuned, edit_identity=identity)
    number = 9
    for identities in (2, 4):  # fig15: multi-ID, without and with the locality regulariser
        for regularizer, drift, fit in (("none", 0.1 * identities, 0.10), ("locality", 0.05 * identities, 0.11)):
            write_job(root, number, choices=base_choices(regularizer=regularizer), mode="multi",
                      report={"experiment": "fig15", "identities": identities, "regularizer": regularizer},
                      images=identities, inversion_lpips=0.3, tuned_lpips=fit, locality=drift)
            number += 1
    ablations = {"A": ("w", "pivotal", 0.10, 0.9), "B": ("w_plus", "pivotal", 0.12, 0.85),
                 "C": ("mean", "pivotal", 0.15, 0.8), "D": ("random", "pivotal", 0.2, 0.7),
                 "E": ("mean", "joint", 0.18, 0.75), "F": ("random", "joint", 0.22, 0.6)}
    for letter, (inverter, tuner, lpips, identity) in ablations.items():  # fig16, jobs 13-18
        finished = letter != "F"
        report = {"experiment": "fig16", "method": letter if finished else "${hydra:runtime.choices.ablation}"}
        write_job(root, number, choices=base_choices(ablation=letter, inverter=inverter, tuner=tuner, editor="fig16"),
                  report=report, images=4 if finished else 3, inversion_lpips=0.5, tuned_lpips=lpips, id_sim=identity,
                  edit_identity=identity - 0.2, finished=finished, limit=4)
        number += 1
    launched = number + 2  # two more jobs launched that never started
    multirun = {"hydra": {"sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
                          "overrides": {"hydra": ["hydra.mode=MULTIRUN"],
                                        "task": [f"+case={','.join(str(n) for n in range(launched))}", "data.limit=4"]}},
                "seed": 0}
    (root / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    return root


@pytest.fixture(scope="module")
def report(sweep):
    return write_report(sweep)


def read_csv(path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def expected(values: list) -> tuple:
    """(mean, std, n) of the values that are not None, as a reader would compute them."""
    present = [v for v in values if v is not None]
    return statistics.fmean(present), (statistics.stdev(present) if len(present) > 1 else None), len(present)


def job_of(sweep, experiment: str, row: dict) -> str:
    """The job folder of `experiment` whose report labels are this table row's."""
    for job in sweep.iterdir():
        if not job.name.isdigit():
            continue
        summary = job / "summary.json"
        if summary.is_file():
            report = json.loads(summary.read_text())["report"]
        else:
            report = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["report"]
        choices = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["choices"]
        method = report.get("method", "").replace("${hydra:runtime.choices.ablation}", choices.get("ablation", ""))
        method = method or choices.get("ablation") or f"{choices['inverter']}+{choices['tuner']}"
        if (report["experiment"], method, choices["data"]) == (experiment, row["method"], row["data"]) and all(
                str(report[key]) == row[key] for key in report if key not in ("experiment", "method")):
            return job
    raise AssertionError(f"no job for {row}")


def check(csv_value: str, values: list) -> None:
    assert float(csv_value) == pytest.approx(expected(values)[0], rel=1e-12)


def test_every_reconstruction_number_is_the_mean_of_the_runs_rows(sweep, report):
    for experiment in ("table1", "table2", "fig15", "fig16"):
        table = read_csv(report.parent / f"{experiment}.csv")
        assert table, experiment
        for row in table:
            rows = RunStore(job_of(sweep, experiment, row)).results()
            final = "tuning" if any(r["stage"] == "tuning" for r in rows) else "inversion"
            final_rows = [r for r in rows if r["stage"] == final]
            images = {r["image"] for r in final_rows}
            assert int(row["n"]) == len(images)
            for metric in METRICS:
                mean, std, _ = expected([r[metric] for r in final_rows])
                assert float(row[metric]) == pytest.approx(mean, rel=1e-12), (experiment, row["method"], metric)
                if std is None:
                    assert row[f"{metric}_std"] == ""
                else:
                    assert float(row[f"{metric}_std"]) == pytest.approx(std, rel=1e-12)
            seconds = [sum(r["seconds"] for r in rows if r["image"] == image) for image in images]
            assert float(row["seconds"]) == pytest.approx(statistics.fmean(seconds), rel=1e-12)


def test_edit_table_holds_the_mean_over_images_at_each_strength(sweep, report):
    table = read_csv(report.parent / "table2_edits.csv")
    assert {row["method"] for row in table} == {"W", "W+", "PTI"}
    assert len(table) == 3 * len(EDITS) * 4
    for row in table:
        rows = [r for r in RunStore(job_of(sweep, "table2", row)).results()
                if r["stage"] == "edit" and r["edit"] == row["edit"] and f"{r['strength']:g}" == row["strength"]]
        for metric in ("id_sim_target", "id_sim", "target_delta", "other_delta"):
            check(row[metric], [r[metric] for r in rows])
        assert int(row["n"]) == len(rows)


def test_equal_change_interpolates_between_strengths_from_the_reconstruction():
    def run(identity: float, points: dict) -> RunNumbers:
        edits = {("smile", s): {"target_delta": Stat(d, None, 1), "id_sim_target": Stat(i, None, 1)}
                 for s, (d, i) in points.items()}
        return RunNumbers(job=None, reconstruction={"id_sim": Stat(identity, None, 1)}, inversion={}, edits=edits, drift={})

    x = run(0.9, {2.0: (1.0, 0.7), 4.0: (2.0, 0.5)})
    y = run(0.8, {2.0: (0.5, 0.6), 4.0: (1.5, 0.4), -2.0: (-0.5, 0.7)})
    rows = compare_at_equal_change({"x": x, "y": y}, "smile")
    assert [(sign, level) for sign, level, _ in rows] == [(-1.0, 0.25), (-1.0, 0.5), (1.0, 0.75), (1.0, 1.5)]
    assert rows[0][2] == pytest.approx({"y": 0.75})  # x has no negative edit: y alone, from 0.8 at no change
    assert rows[2][2] == pytest.approx({"x": 0.75, "y": 0.55})
    assert rows[3][2] == pytest.approx({"x": 0.6, "y": 0.4})


def test_equal_change_table_compares_every_edit_on_both_sides(report):
    table = read_csv(report.parent / "table2_equal_change.csv")
    assert {(row["edit"], row["side"]) for row in table} == {(edit, side) for edit in EDITS for side in "+-"}
    assert {row["method"] for row in table} == {"W", "W+", "PTI"}


def test_markdown_and_latex_show_mean_std_and_the_best_in_bold(report):
    markdown = (report.parent / "table1.md").read_text()
    latex = (report.parent / "table1.tex").read_text()
    table = read_csv(report.parent / "table1.csv")
    ood = [row for row in table if row["data"] == "synthfaces_ood"]
    best = min(ood, key=lambda row: float(row["lpips"]))
    assert best["method"] == "PTI"
    assert f"**{float(best['lpips']):.4g}** ± {float(best['lpips_std']):.2g}" in markdown
    assert rf"\textbf{{{float(best['lpips']):.4g}}} $\pm$ {float(best['lpips_std']):.2g}" in latex
    for needed in (r"\toprule", r"\midrule", r"\bottomrule", r"synthfaces\_ood"):
        assert needed in latex
    # the sweep's summaries predate metrics.eval_size: measured at the generator's resolution
    assert "MS-SSIM and LPIPS at 16×16 (native)" in markdown.splitlines()[0]
    assert r"MS-SSIM and LPIPS at 16$\times$16 (native)" in latex


def test_captions_say_the_size_each_run_was_measured_at(tmp_path):
    """summary.json's eval_size; where runs differ, the caption names the runs at each size."""
    for number, (method, size) in enumerate((("W", 256), ("PTI", 256))):
        write_job(tmp_path, number, choices=base_choices(tuner="pivotal" if method == "PTI" else "none"),
                  report={"experiment": "table1", "method": method}, images=2, inversion_lpips=0.3,
                  tuned_lpips=0.1 if method == "PTI" else None, eval_size=size)
    page = write_report(tmp_path)
    assert "; MSE, PSNR, SSIM, MS-SSIM and LPIPS at 256×256;" in (page.parent / "table1.md").read_text()
    write_job(tmp_path, 2, choices=base_choices(), report={"experiment": "table1", "method": "PTI old"}, images=2,
              inversion_lpips=0.3, tuned_lpips=0.1)
    page = write_report(tmp_path)
    assert ("MSE, PSNR, SSIM, MS-SSIM and LPIPS at 256×256 (W, synthfaces_ood; PTI, synthfaces_ood); "
            "16×16 (native) (PTI old, synthfaces_ood)") in (page.parent / "table1.md").read_text()
    assert "16×16 (native) (PTI old, synthfaces_ood)" in page.read_text()  # report.html's caption


def test_claims_pass_on_the_sweep_and_say_their_numbers(sweep):
    runs = [run_numbers(job) for job in read_sweep(sweep).jobs]
    claims = {claim: (status, evidence) for claim, status, evidence in check_claims(runs)}
    assert [status for status, _ in claims.values()] == [PASS] * 4, claims
    assert "vs W inversion" in tuned_halves_inversion_lpips(runs)[1]
    assert "50% lower" in locality_cuts_drift(runs)[1]


def test_claims_fail_or_are_not_run_when_the_numbers_or_runs_say_so(sweep):
    runs = [run_numbers(job) for job in read_sweep(sweep).jobs]
    for claim in (tuned_halves_inversion_lpips, ablation_a_beats_c_and_d, locality_cuts_drift, pti_edits_keep_identity):
        status, evidence = claim([])
        assert status == NOT_RUN and evidence.startswith("needs")
    a = next(run for run in runs if run.job.choices.get("ablation") == "A")
    a.reconstruction["lpips"] = Stat(0.9, None, 4)  # A now reconstructs worse than C and D
    assert ablation_a_beats_c_and_d(runs)[0] == FAIL
    for run in runs:
        if run.regularizer == "locality" and run.drift:
            run.drift["drift_lpips"] = Stat(run.drift["drift_lpips"].mean * 1.8, None, 1)  # only a 10% cut
    assert locality_cuts_drift(runs)[0] == FAIL


def test_incomplete_sweep_marks_missing_jobs_and_cells(sweep, report):
    notes = (report.parent / "fig16.md").read_text()
    assert "job 19: +case=19 data.limit=4: not started (no job folder)" in notes
    assert "job 20: +case=20 data.limit=4: not started" in notes
    assert "job 18 (fig16, F, synthfaces_ood): not finished (no summary.json)" in notes
    assert "job 18 (fig16, F, synthfaces_ood): 3 of 4 images" in notes
    table1 = (report.parent / "table1.md").read_text()
    assert "job 0 (table1, W, synthfaces_ood): image ood_009 failed" in table1
    assert "ms_ssim not computed for 1 image(s): image too small for 5 scales" in (report.parent / "table1.md").read_text()
    assert "| W | synthfaces_ood |" in table1
    fig15 = read_csv(report.parent / "fig15_drift.csv")
    assert {(row["identities"], row["regularizer"]) for row in fig15} == {(i, r) for i in "24" for r in ("none", "locality")}
    assert all(row["drift_lpips"] for row in fig15)
    edits = read_csv(report.parent / "table1.csv")  # W and W+ have no tuning: their final stage is the inversion
    assert {row["method"] for row in edits} == {"W", "W+", "PTI"}


def test_missing_values_are_dashes(tmp_path):
    """A job folder without any rows yet: its row is there, every cell a dash."""
    write_job(tmp_path, 0, choices=base_choices(), report={"experiment": "table1", "method": "PTI"}, images=2,
              inversion_lpips=0.3, tuned_lpips=0.1)
    started = tmp_path / "1"
    shutil.copytree(tmp_path / "0" / ".hydra", started / ".hydra")
    (started / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"report": {"experiment": "table1", "method": "W"}}))
    page = write_report(tmp_path)
    table = (page.parent / "table1.md").read_text()
    line = next(line for line in table.splitlines() if line.startswith("| W |"))
    assert line.count("—") == 7  # six metrics and n
    assert "job 1 (table1, W, synthfaces_ood): not finished" in table
    assert read_csv(page.parent / "table1.csv")[1]["lpips"] == ""


def test_runs_without_report_labels_fall_back_to_the_group_choices(tmp_path):
    """No "report": the experiment is "runs", the method the ablation or inverter+tuner, and runs that
    would share a row are told apart by the overrides in which they differ."""
    for number in (0, 1):
        write_job(tmp_path, number, choices=base_choices(), report=None, images=2, inversion_lpips=0.3, tuned_lpips=0.1)
    write_job(tmp_path, 2, choices=base_choices(ablation="C", inverter="mean"), report=None, images=2,
              inversion_lpips=0.5, tuned_lpips=0.2)
    table = read_csv(write_report(tmp_path).parent / "runs.csv")
    assert [(row["method"], row["setting"]) for row in table] == [("w+pivotal", "+case=0"), ("w+pivotal", "+case=1"),
                                                                   ("C", "")]


def split_sweep(sweep, root) -> list:
    """The module's sweep as two sweeps, as `+experiment=paper` leaves them: table1 and table2 jobs in
    root/tables, fig15 and fig16 jobs in root/figures (each numbered from 0)."""
    parts = {"tables": [], "figures": []}
    for job in sorted((d for d in sweep.iterdir() if d.name.isdigit()), key=lambda d: int(d.name)):
        experiment = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["report"]["experiment"]
        parts["tables" if experiment.startswith("table") else "figures"].append(job)
    for name, jobs in parts.items():
        for number, job in enumerate(jobs):
            shutil.copytree(job, root / name / str(number))
    return [root / "tables", root / "figures"]


def test_one_report_of_several_sweeps_holds_every_experiment_and_claim(sweep, report, tmp_path):
    """The paper's report: four sweeps in one page; its tables equal those of one sweep holding the
    same jobs, the claims are checked on the runs of all of them, and jobs are named sweep/number."""
    from pti_lab.report.writer import build_report

    combined = build_report(split_sweep(sweep, tmp_path))
    assert combined.html == tmp_path / "report" / "report.html"
    assert [section.name for section in combined.sections] == ["table1", "table2", "fig15", "fig16"]
    for name in ("table1.csv", "table2_edits.csv", "fig15_drift.csv", "fig16.csv"):
        ours, theirs = read_csv(combined.html.parent / name), read_csv(report.parent / name)
        assert ours == theirs, name
    alone = check_claims([run_numbers(job) for job in read_sweep(sweep).jobs])
    unnumbered = [(claim, status, re.sub(r"job \d+ ", "", numbers)) for claim, status, numbers in alone]
    assert [(claim, status, re.sub(r"job \d+ ", "", numbers)) for claim, status, numbers in combined.claims] == unnumbered
    page = combined.html.read_text()
    assert "tables/0" in page and "figures/5" in page and "PTI report: tables, figures" in page
    assert (combined.html.parent / "fig15.png").is_file() and (combined.html.parent / "fig16.png").is_file()


def test_report_command_takes_several_sweeps(sweep, tmp_path):
    sweeps = split_sweep(sweep, tmp_path)
    result = subprocess.run([sys.executable, "-m", "pti_lab.report", *map(str, sweeps), "--out", str(tmp_path / "out")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "out" / "report.html")
    assert {row["method"] for row in read_csv(tmp_path / "out" / "table1.csv")} == {"W", "W+", "PTI"}


def test_importing_the_package_loads_no_plotting():
    """Hydra imports pti_lab.report.hydra_callback when every run starts; matplotlib waits for a report."""
    script = "import sys, pti_lab.report.hydra_callback; print(sorted({'matplotlib', 'torch'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_fig16_tiles_are_cut_from_the_top_row_of_edits_png(sweep, report):
    job = next(job for job in read_sweep(sweep).jobs if job.method == "A")
    tiles = edit_tiles(job, "ood_000")
    assert list(tiles) == ["target", "reconstruction", "smile", "pose"]
    assert np.array_equal(tiles["target"].pixels, np.asarray(Image.open(job.path / "images/ood_000/target.png").convert("RGB")))
    assert np.array_equal(tiles["reconstruction"].pixels, np.asarray(Image.open(job.path / "images/ood_000/tuned.png")))
    assert tiles["smile"].title == "smile +3"
    smile_plus_3 = picture(3)  # edits of ood_000: smile at -3, -1.5, 1.5, 3 are pictures 0-3
    assert np.array_equal(tiles["smile"].pixels, np.asarray(smile_plus_3))
    w = next(job for job in read_sweep(sweep).jobs if (job.experiment, job.method) == ("table2", "W"))
    one_row = edit_tiles(w, "ood_000")  # no tuning: edits.png has the tuned-generator row only
    assert np.array_equal(one_row["reconstruction"].pixels, np.asarray(Image.open(w.path / "images/ood_000/inversion.png")))
    assert np.array_equal(one_row["pose"].pixels, np.asarray(picture(7)))
    for name in ("fig15", "fig16"):
        for suffix in ("png", "pdf"):
            assert (report.parent / f"{name}.{suffix}").stat().st_size > 1000
    assert Image.open(report.parent / "fig16.png").size[1] > Image.open(report.parent / "fig16.png").size[0]  # 6 rows, 4 columns


def test_report_is_one_self_contained_file_with_the_command_and_code_version(sweep, report):
    page = report.read_text()
    assert report == sweep / "report" / "report.html"
    for external in ("<script", "<link", "<iframe", 'src="http', 'href="http', "url("):
        assert external not in page
    assert "python run.py -m +case=0,1,2," in page
    version = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert version and version in page
    assert not list((sweep / "report").glob(".*.tmp"))  # atomic writes leave no temporary files


def test_command_line_writes_the_report(sweep, tmp_path):
    result = subprocess.run([sys.executable, "-m", "pti_lab.report", str(sweep), "--out", str(tmp_path / "out")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "out" / "report.html")
    assert (tmp_path / "out" / "table2_equal_change.tex").is_file()


class PageParts(HTMLParser):
    """The <img> sources and the text of every <td> of a page."""

    def __init__(self):
        super().__init__()
        self.images, self.cells, self._cell = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")
        elif tag == "td":
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        pytest.skip("chromium is not installed (apt-get install chromium): the browser check of report.html is skipped")
    return found


def test_report_renders_in_headless_chromium(sweep, report, tmp_path):
    browser = chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "report.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2000, 1280) and pixels.std() > 10, "the screenshot is blank"
    dom = subprocess.run([browser, *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    parts = PageParts()
    parts.feed(dom)
    pictures = [path for path in sweep.glob("*/images/*/*.png")]
    assert len(parts.images) == 2 + len(pictures)  # the two figures and every picture of every image
    assert all(src.startswith("data:image/") for src in parts.images)
    table1 = read_csv(report.parent / "table1.csv")
    pti = next(row for row in table1 if row["method"] == "PTI" and row["data"] == "synthfaces_ood")
    assert f"{float(pti['lpips']):.4g} ± {float(pti['lpips_std']):.2g}" in parts.cells
    assert {"PASS", "table1", "W+", "synthfaces_indomain"} <= set(parts.cells)


def test_sweep_summary_run_holds_the_report_tables_figures_and_claims(wandb_env, monkeypatch):
    """The summary run of a sweep: in the sweep's group, each report table as a wandb.Table with the
    CSV's numbers, the figures, the claims (table and summary), report.html and the report artifact."""
    from pti_lab.report.wandb_summary import publish
    from pti_lab.report.writer import build_report
    from pti_lab.tracking.wandb_logger import WandbLogger, sweep_group

    monkeypatch.setenv("WANDB_MODE", "offline")
    sweep = wandb_env / "2026-12-02" / "10-00-00"
    for number, regularizer, drift in ((0, "none", 0.2), (1, "locality", 0.1)):
        write_job(sweep, number, choices=base_choices(regularizer=regularizer), mode="multi",
                  report={"experiment": "fig15", "identities": 2, "regularizer": regularizer}, images=2,
                  inversion_lpips=0.3, tuned_lpips=0.1, locality=drift)
    report = build_report(sweep)
    group = sweep_group("fig15", sweep)
    assert group == "fig15:2026-12-02/10-00-00"
    publish(report, WandbLogger(), group)

    run = OfflineRun(report.html.parent)
    assert run.run.run_group == group and run.run.job_type == "summary"
    (drift_row,) = [row for row in run.history if "tables/fig15_drift" in row]
    (table_file,) = run.dir.glob("files/media/table/tables/fig15_drift_*.table.json")
    table = json.loads(table_file.read_text())
    csv_rows = read_csv(report.html.parent / "fig15_drift.csv")
    assert table["columns"] == list(csv_rows[0]) and drift_row["tables/fig15_drift"]["nrows"] == len(csv_rows) == 2
    column = table["columns"].index("drift_lpips")
    assert [row[column] for row in table["data"]] == [float(row["drift_lpips"]) for row in csv_rows]
    assert any("figures/fig15" in row for row in run.history) and any("report" in row for row in run.history)
    (claims_file,) = run.dir.glob("files/media/table/claims_*.table.json")
    claims = json.loads(claims_file.read_text())["data"]
    assert [row[:2] for row in claims] == [[claim, status] for claim, status, _ in report.claims]
    assert run.summary["claims"]  # claims/<claim>: PASS|FAIL|not run
    assert any(a.type == "pti-report" for a in run.artifacts)
