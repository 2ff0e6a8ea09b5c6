"""Faults injected into real runs, and what a re-run of the same command recovers.

kill -9 (SIGKILL, sent when the run's own progress bars or files show it has reached the point):
during an inversion, during a tuning, between two images, during an edit, during a sweep; W&B
unreachable at the start and failing in the middle; a NaN in one image's loss in a batch and in a
multi-ID group; a full disk (a small tmpfs, as root); checkpoints and direction files that carry code.
Each time: every image ends with one row per stage, none twice, and every .pt, .png and .json loads.
Bad image files are in tests/test_faults_inputs.py, stale resumes in tests/test_faults_resume.py.
"""

import json
import os
import pickle
import subprocess
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from pti_lab.config import check_config, register_configs
from pti_lab.data import SynthfacesTestSet
from pti_lab.driver import Driver
from pti_lab.pipeline import build_stages
from pti_lab.tracking.recorder import Recorder
from pti_lab.tracking.store import RunStore
from tests.conftest import REPO, run_py
from tests.fault_helpers import Run, check_complete, check_files_load, has_row, rows_of, step_shown

register_configs()

# Long enough to be killed inside a stage (the bars count the steps), short enough for the suite.
SLOW_STAGES = ["inverter.steps=20", "tuner.steps=30", "reuse_inversions=false", "inverter.progress=true",
               "tuner.progress=true"]


def fault_args(run_dir: Path, *extra: str) -> list[str]:
    return [f"hydra.run.dir={run_dir}", "debug=smoke", *SLOW_STAGES, *extra]


def test_kill_9_during_inversion_during_tuning_and_between_images_loses_nothing(tmp_path):
    out = tmp_path / "run"
    args = fault_args(out, "data.limit=2")
    inverting = Run(*args)  # killed at the 3rd inversion step of the first image
    inverting.kill_when(lambda: step_shown(inverting, "WInverter", 3))
    assert rows_of(out) == []

    tuning = Run(*args)  # re-run: the inversion is redone whole, then killed at the 3rd tuning step
    tuning.kill_when(lambda: step_shown(tuning, "PivotalTuner", 3))
    assert has_row(out, "ood_000", "inversion") and not has_row(out, "ood_000", "tuning")

    between = Run(*args)  # killed as soon as the first image is done (tuning row written)
    between.kill_when(lambda: has_row(out, "ood_000", "tuning"))
    assert not has_row(out, "ood_001", "tuning")
    check_files_load(out)

    final = Run(*args)
    assert final.wait() == 0, final.output[-3000:]
    assert "ood_000: already done, skipped" in final.output
    check_complete(out, ["ood_000", "ood_001"])


def test_kill_9_during_an_edit_loses_nothing(tmp_path):
    out = tmp_path / "run"
    # StyleCLIP optimises the edit (100 steps, seconds): the kill after the tuning row lands inside it.
    args = [f"hydra.run.dir={out}", "debug=smoke", "inverter.steps=4", "tuner.steps=3", "editor=styleclip",
            "editor.steps=100"]
    editing = Run(*args)
    editing.kill_when(lambda: has_row(out, "ood_000", "tuning"))
    assert not (out / "images" / "ood_000" / "edits.png").exists()
    final = Run(*args)
    assert final.wait() == 0, final.output[-3000:]
    rows = check_complete(out, ["ood_000"], stages=("inversion", "tuning", "edit"), rows_per_image=4)
    assert sorted(r["strength"] for r in rows if r["stage"] == "edit") == [0.5, 1.0]
    assert (out / "images" / "ood_000" / "edits.png").is_file()


def test_kill_9_during_a_sharded_sweep_then_the_same_command_finishes_it(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", f"hydra.sweep.dir={sweep}", "data.shard=0,1", "data.shards=2", "data.limit=3", "debug=smoke",
            "inverter.steps=4", "tuner.steps=3"]
    killed = Run(*args)  # the basic launcher runs the jobs one after the other in this process
    killed.kill_when(lambda: (sweep / "1" / "run_config.json").is_file())
    assert not (sweep / "1" / "summary.json").exists()
    final = Run(*args)
    assert final.wait() == 0, final.output[-3000:]
    merged = json.loads((sweep / "report" / "shards" / "all" / "summary.json").read_text())
    assert merged["images"] == 3 and merged["failed"] == []
    assert merged["shards"]["missing_images"] == [] and merged["shards"]["duplicated_images"] == {}
    assert merged["shards"]["missing_shards"] == [] and merged["shards"]["jobs"] == [0, 1]
    images = [sorted({r["image"] for r in rows_of(sweep / job)}) for job in ("0", "1")]
    assert sorted(images[0] + images[1]) == ["ood_000", "ood_001", "ood_002"]
    for job, names in zip(("0", "1"), images):
        check_complete(sweep / job, names)


def test_wandb_unreachable_at_start_or_failing_mid_run_leaves_local_results_intact(tmp_path):
    env = {"WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_INIT_TIMEOUT": "5", "WANDB_DIR": str(tmp_path),
           "WANDB_MODE": "online", "WANDB_API_KEY": "x" * 40, "WANDB_SILENT": "true"}
    unreachable = Run(f"hydra.run.dir={tmp_path / 'down'}", "data.limit=2", "debug=smoke", "logger=wandb",
                      "logger.mode=online", "inverter.steps=4", "tuner.steps=3", env=env)
    assert unreachable.wait() == 0, unreachable.output[-3000:]
    assert "unreachable" in unreachable.output
    check_complete(tmp_path / "down", ["ood_000", "ood_001"])

    failing = Run(f"hydra.run.dir={tmp_path / 'mid'}", "data.limit=2", "debug=smoke", "logger=wandb",
                  "logger._target_=tests.fault_helpers.MidRunFailingWandb", "logger.mode=offline",
                  "inverter.steps=4", "tuner.steps=3", env={"WANDB_DIR": str(tmp_path)})
    assert failing.wait() == 0, failing.output[-3000:]
    assert "W&B connection lost" in failing.output  # the logger saw it, said so once, and went on
    check_complete(tmp_path / "mid", ["ood_000", "ood_001"])


# ---------------------------------------------------------------------------------------------
# NaN in one image's loss, at the driver level (whether a group computes image by image or in one
# batched pass): that image fails, the others of its group complete.

class PoisonedPerceptual(torch.nn.Module):
    """The run's LPIPS, except NaN for every pair that involves `poison` (one image of a batch)."""

    def __init__(self, perceptual: torch.nn.Module, poison: torch.Tensor):
        super().__init__()
        self.perceptual, self.poison = perceptual, poison

    def is_poison(self, images: torch.Tensor) -> torch.Tensor:
        """[N] bool: which images are the poison image."""
        if images.shape[1:] != self.poison.shape[1:]:
            return torch.zeros(len(images), dtype=torch.bool, device=images.device)
        return (images.detach().cpu() == self.poison).flatten(1).all(1).to(images.device)

    def feature_maps_unchecked(self, images: torch.Tensor, *args) -> list[torch.Tensor]:
        return [*self.perceptual.feature_maps_unchecked(images, *args), self.is_poison(images)]  # the mark goes along

    def distance(self, feats_x: list[torch.Tensor], feats_y: list[torch.Tensor]) -> torch.Tensor:
        distance = self.perceptual.distance(feats_x[:-1], feats_y[:-1])  # [N, 1, 1, 1]
        hit = (feats_x[-1] | feats_y[-1]).reshape(-1, 1, 1, 1)
        return torch.where(hit, torch.full_like(distance, float("nan")), distance)

    def forward_unchecked(self, x: torch.Tensor, y: torch.Tensor, *args) -> torch.Tensor:
        return self.distance(self.feature_maps_unchecked(x, *args), self.feature_maps_unchecked(y, *args))


@pytest.mark.parametrize("mode,batch_size", [("single", 3), ("multi", 1)],
                         ids=["batch-of-3", "multi-ID"])
def test_nan_in_one_images_loss_fails_that_image_only(tmp_path, mode, batch_size):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["logger=none", "inverter.steps=4", "tuner.steps=5",
                                                       "inverter.progress=false", "tuner.progress=false"])
    check_config(cfg)
    stages = build_stages(cfg, torch.device("cpu"))
    samples = list(SynthfacesTestSet(kind="ood", limit=3).samples(stages.generator.img_resolution))
    stages.perceptual = PoisonedPerceptual(stages.perceptual, samples[1].image)
    store = RunStore(tmp_path)
    Driver(stages, Recorder(store), mode=mode, batch_size=batch_size).run(samples, total=3)
    failed = store.failed()
    assert [entry["image"] for entry in failed] == ["ood_001"], failed
    assert "nan" in failed[0]["reason"].lower() or "finite" in failed[0]["reason"].lower()
    tuned = sorted(r["image"] for r in store.results() if r["stage"] == "tuning")
    assert tuned == ["ood_000", "ood_002"]


# ---------------------------------------------------------------------------------------------
# A full disk.

@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (root only): room for one image's outputs (its tuned generator is 2.5 MB), not two."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("full-disk test: needs root to mount a small tmpfs")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        pytest.skip(f"full-disk test: cannot mount a tmpfs here ({result.stderr.strip()})")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_stops_with_one_error_and_the_rerun_completes(small_disk):
    out = small_disk / "run"
    args = [f"hydra.run.dir={out}", "data.limit=2", "debug=smoke", "inverter.steps=4", "tuner.steps=3"]
    full = run_py(*args, check=False)
    assert full.returncode == 1
    errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no space left on device" in errors[0], full.stderr[-3000:]
    assert "Traceback" not in full.stderr
    assert has_row(out, "ood_000", "tuning") and not has_row(out, "ood_001", "tuning")
    check_files_load(out)  # what was written is whole; no temporary file is left
    subprocess.run(["mount", "-o", "remount,size=32m", str(small_disk)], check=True)  # space freed
    run_py(*args)
    check_complete(out, ["ood_000", "ood_001"])


# ---------------------------------------------------------------------------------------------
# Files that carry code: refused before any image is touched.

class RunsShell:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("kind", ["generator pickle", "generator torch file", "direction file"])
def test_files_that_carry_code_are_refused_and_nothing_runs(tmp_path, kind):
    marker = tmp_path / "executed"
    payload = RunsShell(f"touch {marker}")
    out = tmp_path / "run"
    if kind == "generator pickle":
        (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"G_ema": payload}))
        override = [f"generator.path={tmp_path / 'evil.pkl'}"]
    elif kind == "generator torch file":
        torch.save({"g_ema": payload}, tmp_path / "evil.pt")
        override = [f"generator.path={tmp_path / 'evil.pt'}"]
    else:
        torch.save(payload, tmp_path / "evil.pt")
        override = ["editor=interfacegan", f"editor.direction={tmp_path / 'evil.pt'}"]
    result = run_py(f"hydra.run.dir={out}", "debug=smoke", *override, check=False)
    assert result.returncode == 1 and "evil." in result.stderr.splitlines()[-1], result.stderr[-2000:]
    assert result.stderr.splitlines()[-1].startswith("error:")
    assert not marker.exists(), "code from the file was executed"
    assert rows_of(out) == [] and not (out / "images").exists()
