"""`+recipe=fast` (conf/recipe/fast.yaml) runs as documented; the end-to-end bench against the official code."""

import json
import os
import subprocess
import sys

import pytest
import torch

from pti_lab.data import SynthfacesTestSet
from pti_lab.generators import make_generator
from pti_lab.inversion import EncoderInverter
from tests.conftest import REPO, run_py


def test_fast_recipe_tunes_from_the_e4e_pivot_in_one_batch(tmp_path, cache_dir):
    """Every image's pivot is the shipped e4e's (no projector step), tuned with the recipe's settings
    as one batch of all images, with bf16 where the CPU has it."""
    run = tmp_path / "run"
    run_py("+recipe=fast", "tuner.steps=3", "data.limit=3", "logger=none", f"hydra.run.dir={run}")
    config = (run / ".hydra" / "config.yaml").read_text()
    assert "batch_size: 8" in config and "autocast: auto" in config
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    inversions = {row["image"]: row for row in rows if row["stage"] == "inversion"}
    tunings = {row["image"]: row for row in rows if row["stage"] == "tuning"}
    assert sorted(inversions) == sorted(tunings) == ["ood_000", "ood_001", "ood_002"]
    assert all(row["steps"] == 0 for row in inversions.values())  # the encoder alone
    assert all(row["steps"] == 3 and not row["stopped_early"] for row in tunings.values())
    assert all(tunings[name]["lpips"] < inversions[name]["lpips"] for name in tunings)

    G = make_generator(None)
    sample = next(SynthfacesTestSet(kind="ood", limit=1).samples(G.img_resolution))
    expected = EncoderInverter(kind="e4e", progress=False).invert(G, sample.image).pivot
    pivot = torch.load(run / "images" / "ood_000" / "pivot.pt", weights_only=True)
    torch.testing.assert_close(pivot, expected, atol=1e-5, rtol=0)


@pytest.mark.skipif(not (os.environ.get("PTI_LAB_OFFICIAL_PTI") and os.environ.get("PTI_LAB_OFFICIAL_STYLEGAN2_ADA")),
                    reason="set PTI_LAB_OFFICIAL_PTI and PTI_LAB_OFFICIAL_STYLEGAN2_ADA to checkouts of danielroich/PTI "
                           "and NVlabs/stylegan2-ada-pytorch to time the official code")
def test_recipe_bench_times_the_official_code_and_the_recipe_on_the_same_images(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pti_lab.bench.recipe", "--official", os.environ["PTI_LAB_OFFICIAL_PTI"],
                           "--stylegan2-ada", os.environ["PTI_LAB_OFFICIAL_STYLEGAN2_ADA"],
                           "--images", "2", "--smoke", "--arms", "official,fast,fast_pkl", "--work", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "bench.json").read_text())
    assert set(report["seconds"]) == {"official", "fast", "fast_pkl"}
    assert all(seconds > 0 for seconds in report["seconds"].values())
    for arm, rows in report["rows"].items():
        assert len(rows) == 2 and all(0 <= row["lpips"] < 1 for row in rows), arm
    for arm in ("official", "fast", "fast_pkl"):
        assert f"\n{arm} " in done.stdout, done.stdout
