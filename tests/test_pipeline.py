"""run.py end to end on the embedded domain: stages, outputs, resume, bad files, multi-ID, ablations."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from pti_lab.models import load_generator
from pti_lab.models.delta import load_tuned
from pti_lab.tracking.store import RunStore
from tests.conftest import REPO

FAST = ["logger=none", "inverter.steps=4", "tuner.steps=3", "device=cpu", "preview.count=2", "tuner.progress=false"]


def run_py(*args, timeout=600):
    result = subprocess.run([sys.executable, "run.py", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def summary_of(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def test_default_pipeline_writes_every_output(tmp_path):
    out = tmp_path / "run"
    run_py(f"hydra.run.dir={out}", "data.limit=2", *FAST)
    summary = summary_of(out)
    assert summary["images"] == 2 and summary["failed"] == []
    assert summary["choices"]["inverter"] == "w" and summary["choices"]["tuner"] == "pivotal"
    for stage in ("inversion", "tuning"):
        metrics = summary["stages"][stage]
        assert {"mse", "lpips", "ms_ssim", "psnr"} <= set(metrics)
        assert 0 <= metrics["lpips"] < 1.5 and 0 <= metrics["mse"] <= 4
    rows = RunStore(out).results()
    assert [(r["stage"]) for r in rows] == ["inversion", "tuning"] * 2
    assert all(-1 <= r["id_sim"] <= 1 for r in rows)  # identity=synthfaces, the default
    name = rows[0]["image"]
    for file in ("target.png", "inversion.png", "tuned.png", "pivot.pt", "tuned_G.pt", "tuned_pivot.pt"):
        assert (out / "images" / name / file).is_file(), file
    G = load_generator(REPO / "pti_lab/synthfaces/weights/generator.pt")
    tuned = load_tuned(out / "images" / name / "tuned_G.pt", G)
    pivot = torch.load(out / "images" / name / "pivot.pt", weights_only=True)
    image = np.asarray(Image.open(out / "images" / name / "tuned.png"), dtype=np.float32) / 127.5 - 1
    with torch.no_grad():
        rendered = tuned.synthesis(pivot, noise_mode="const").clamp(-1, 1)[0].permute(1, 2, 0).numpy()
    assert np.abs(rendered - image).max() < 2 / 127.5  # the stored delta restores the tuned generator


def test_rerun_skips_finished_images_and_adds_new_ones(tmp_path):
    out = tmp_path / "run"
    run_py(f"hydra.run.dir={out}", "data.limit=1", *FAST)
    first = RunStore(out).results()
    result = run_py(f"hydra.run.dir={out}", "data.limit=2", *FAST)
    rows = RunStore(out).results()
    assert rows[:2] == first  # untouched
    assert len(rows) == 4 and summary_of(out)["images"] == 2
    assert "already done, skipped" in result.stderr + result.stdout


def test_corrupt_images_are_skipped_and_recorded(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "run"
    run_py(f"hydra.run.dir={out}", "data=folder", f"data.path={folder}", *FAST)
    summary = summary_of(out)
    assert summary["images"] == 2
    assert [f["image"] for f in summary["failed"]] == ["broken"]
    assert "broken.png" in summary["failed"][0]["reason"]


def test_multi_id_reports_locality_drift(tmp_path):
    out = tmp_path / "run"
    run_py(f"hydra.run.dir={out}", "data.limit=2", "tuner.mode=multi", "regularizer=locality", *FAST)
    summary = summary_of(out)
    assert summary["images"] == 2 and (out / "tuned_G.pt").is_file()
    locality = summary["locality"]
    assert locality["latents"] == 64 and locality["lpips"] >= 0 and locality["mse"] >= 0
    stamp, rows = (out / "tuned_G.pt").stat().st_mtime_ns, RunStore(out).results()
    result = run_py(f"hydra.run.dir={out}", "data.limit=2", "tuner.mode=multi", "regularizer=locality",
                    "editor=interfacegan", "editor.strengths=[2]", *FAST)
    assert "all 2 images already tuned together, skipped" in result.stderr + result.stdout
    assert (out / "tuned_G.pt").stat().st_mtime_ns == stamp  # the shared generator is reused, not re-tuned
    assert RunStore(out).results()[:4] == rows
    edits = [r for r in RunStore(out).results() if r["stage"] == "edit"]
    assert [(r["edit"], r["strength"]) for r in edits] == [("smile", 2.0)] * 2
    assert summary_of(out)["locality"] == pytest.approx(locality, rel=1e-4)  # the stored delta restores G


@pytest.mark.slow
def test_all_ablations_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    run_py("-m", "+ablation=A,B,C,D,E,F", f"hydra.sweep.dir={sweep}", "data.limit=1", *FAST, timeout=1500)
    summaries = {p.parent.name.split("_")[0]: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}
    assert len(summaries) == 6
    inverters = {s["choices"]["ablation"]: (s["choices"]["inverter"], s["choices"]["tuner"]) for s in summaries.values()}
    assert inverters == {"A": ("w", "pivotal"), "B": ("w_plus", "pivotal"), "C": ("mean", "pivotal"),
                         "D": ("random", "pivotal"), "E": ("mean", "joint"), "F": ("random", "joint")}
