"""run.py end to end on the embedded domain: stages, outputs, resume, bad files, multi-ID, ablations."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pti_lab.models import load_generator
from pti_lab.models.delta import load_tuned
from pti_lab.tracking.store import RunStore
from tests.conftest import REPO, run_py

FAST = ["debug=smoke", "inverter.steps=4", "tuner.steps=3"]  # the steps the tolerances below were measured at


def summary_of(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def test_default_pipeline_writes_every_output(tmp_path):
    out = tmp_path / "run"
    result = run_py(f"hydra.run.dir={out}", "data.limit=2", *FAST)
    log = result.stderr + result.stdout
    assert "[1/2] ood_000:" in log and "ETA" in log and "[2/2] ood_001:" in log  # the progress line
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
    assert summary_of(out)["eval_size"] == 256 and {row["eval_size"] for row in rows} == {256}  # metrics.eval_size


def test_corrupt_images_are_skipped_and_recorded(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "run"
    run_py(f"hydra.run.dir={out}", "data=folder", f"data.path={folder}", "metrics.eval_size=null", *FAST,
           "data.limit=null")
    summary = summary_of(out)
    assert summary["images"] == 2
    assert summary["eval_size"] == 64 and {row["eval_size"] for row in RunStore(out).results()} == {64}  # native
    assert [f["image"] for f in summary["failed"]] == ["broken"]
    assert "broken.png" in summary["failed"][0]["reason"]


def test_multi_id_reports_locality_drift(tmp_path):
    out = tmp_path / "run"
    run_py(f"hydra.run.dir={out}", "data.limit=2", "mode=multi", "regularizer=locality", *FAST)
    summary = summary_of(out)
    assert summary["images"] == 2 and (out / "tuned_G.pt").is_file()
    locality = summary["locality"]
    assert locality["latents"] == 64 and locality["lpips"] >= 0 and locality["mse"] >= 0
    assert locality["eval_size"] == 256  # measured as the reconstructions are
    stamp, rows = (out / "tuned_G.pt").stat().st_mtime_ns, RunStore(out).results()
    result = run_py(f"hydra.run.dir={out}", "data.limit=2", "tuner.mode=multi", "regularizer=locality",
                    "editor=interfacegan", "editor.strengths=[2]", *FAST)  # the deprecated spelling still works
    assert "tuner.mode=multi is deprecated; use the top-level mode=multi" in result.stderr + result.stdout
    assert "all 2 images already tuned together, skipped" in result.stderr + result.stdout
    assert (out / "tuned_G.pt").stat().st_mtime_ns == stamp  # the shared generator is reused, not re-tuned
    assert RunStore(out).results()[:4] == rows
    edits = [r for r in RunStore(out).results() if r["stage"] == "edit"]
    assert [(r["edit"], r["strength"]) for r in edits] == [("smile", 2.0)] * 2
    assert summary_of(out)["locality"] == pytest.approx(locality, rel=1e-4)  # the stored delta restores G


def test_groups_of_two_give_the_outputs_of_groups_of_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run_py(f"hydra.run.dir={one}", "data.limit=3", *FAST)
    result = run_py(f"hydra.run.dir={two}", "data.limit=3", "batch_size=2", *FAST)
    assert "[2/3] ood_000, ood_001:" in result.stderr + result.stdout
    # A group runs each stage for all its images before the next stage: same rows, another order; the
    # numbers equal within float tolerance (a batch sums in another order).
    strip = lambda rows: sorted(({k: v for k, v in r.items() if k not in ("seconds", "reused", "peak_memory_mb")} for r in rows),  # noqa: E731
                                key=lambda r: (r["image"], r["stage"]))
    rows_two, rows_one = strip(RunStore(two).results()), strip(RunStore(one).results())
    assert [r.keys() for r in rows_two] == [r.keys() for r in rows_one]
    for row_two, row_one in zip(rows_two, rows_one):
        numbers = {k for k, v in row_one.items() if isinstance(v, float)}
        # abs: id_sim is a cosine in [-1, 1] that is near 0 after a few steps (measured: 9.7e-5 apart)
        assert {k: row_two[k] for k in numbers} == pytest.approx({k: row_one[k] for k in numbers}, rel=1e-3, abs=5e-4)
        assert {k: v for k, v in row_two.items() if k not in numbers} == {k: v for k, v in row_one.items() if k not in numbers}
    files = lambda out: sorted(p.relative_to(out).as_posix() for p in (out / "images").rglob("*"))  # noqa: E731
    assert files(two) == files(one)
    # The second run took its inversions from the pivot cache: same generator, images, settings, seed.
    assert all(r["reused"] for r in RunStore(two).results() if r["stage"] == "inversion")


def test_pivot_cache_hits_only_the_same_inversion(tmp_path):
    from pti_lab.inversion import Inversion
    from pti_lab.inversion.pivot_cache import PivotCache

    target = torch.rand(1, 3, 8, 8) * 2 - 1
    cache = PivotCache(tmp_path, "g", '{"steps": 450}', seed=0, device="cpu")
    assert cache.get(target) is None
    cache.put(target, Inversion(pivot=torch.ones(1, 4, 2), steps=450, seconds=12.5))
    hit = cache.get(target)
    assert torch.equal(hit.pivot, torch.ones(1, 4, 2)) and hit.steps == 450 and hit.seconds == 12.5
    for other in (PivotCache(tmp_path, "g", '{"steps": 100}', seed=0, device="cpu"),
                  PivotCache(tmp_path, "h", '{"steps": 450}', seed=0, device="cpu"),
                  PivotCache(tmp_path, "g", '{"steps": 450}', seed=1, device="cpu")):
        assert other.get(target) is None
    assert cache.get(target + 0.01) is None
    cache.path(target).write_bytes(b"damaged")
    assert cache.get(target) is None  # redone, never fatal


def test_an_official_generator_whose_renders_span_ten_is_inverted_and_tuned(tmp_path):
    """A 64 px network in the official pickle format with fresh weights: raw renders far outside
    [-1, 1]. Inversion and tuning run on its renders as they are; tuning lowers LPIPS."""
    from pti_lab.models import Generator
    from tests.official_pickle import dumps_network_pickle

    torch.manual_seed(0)
    G = Generator(64, 0, 64, 64, 3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=2048, channel_max=64))
    with torch.no_grad():
        assert G(torch.randn(8, 64), None, noise_mode="const").abs().max() > 5
    path = tmp_path / "network-snapshot-000000.pkl"
    path.write_bytes(dumps_network_pickle(G))
    out = tmp_path / "run"
    run_py(f"hydra.run.dir={out}", f"generator.path={path}", "debug=smoke", "data.limit=2", "inverter.steps=4",
           "tuner.steps=30", "tuner.lr=3e-3", "tuner.lpips_threshold=null")
    summary = summary_of(out)
    assert summary["failed"] == [] and summary["images"] == 2
    assert summary["stages"]["tuning"]["lpips"] < summary["stages"]["inversion"]["lpips"] - 0.05


@pytest.mark.slow
def test_all_ablations_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    run_py("-m", "+ablation=A,B,C,D,E,F", f"hydra.sweep.dir={sweep}", "data.limit=1", *FAST, timeout=1500)
    summaries = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}
    assert len(summaries) == 6
    inverters = {s["choices"]["ablation"]: (s["choices"]["inverter"], s["choices"]["tuner"]) for s in summaries.values()}
    assert inverters == {"A": ("w", "pivotal"), "B": ("w_plus", "pivotal"), "C": ("mean", "pivotal"),
                         "D": ("random", "pivotal"), "E": ("mean", "joint"), "F": ("random", "joint")}
