import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pti_lab.tracking import wandb_logger
from pti_lab.tracking.recorder import Recorder
from pti_lab.tracking.store import RunStore
from pti_lab.tracking.wandb_logger import WandbLogger, key_part, results_summary
from tests.conftest import REPO, run_py
from tests.wandb_records import OfflineRun

ROWS = [  # results.jsonl of 2 images x 2 stages, as the run store writes it
    {"image": "0001", "stage": "inversion", "mse": 0.04, "lpips": 0.30, "ms_ssim": 0.7, "psnr": 20.0, "ssim": 0.6,
     "id_sim": 0.70, "steps": 30, "seconds": 1.5},
    {"image": "0001", "stage": "tuning", "mse": 0.01, "lpips": 0.10, "ms_ssim": 0.9, "psnr": 27.0, "ssim": 0.8,
     "id_sim": 0.90, "steps": 30, "stopped_early": False, "seconds": 1.0},
    {"image": "0002", "stage": "inversion", "mse": 0.05, "lpips": 0.40, "ms_ssim": 0.6, "psnr": 19.0, "ssim": 0.5,
     "id_sim": None, "steps": 30, "seconds": 1.4, "reasons": {"id_sim": "no face found"}},
    {"image": "0002", "stage": "tuning", "mse": 0.02, "lpips": 0.20, "ms_ssim": 0.8, "psnr": 25.0, "ssim": 0.7,
     "id_sim": 0.80, "steps": 30, "stopped_early": True, "seconds": 0.9},
]


def write_run_dir(run_dir: Path, rows=ROWS) -> None:
    """What the pipeline leaves: results.jsonl, summary.json, images/<image>/{target,inversion,tuned}.png."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (run_dir / "summary.json").write_text(json.dumps({"images": 2, "stages": {"tuning": {"lpips": 0.15}}}))
    for i, name in enumerate(sorted({row["image"] for row in rows})):
        folder = run_dir / "images" / name
        folder.mkdir(parents=True, exist_ok=True)
        for j, picture in enumerate(("target", "inversion", "tuned")):
            Image.fromarray(np.full((8, 8, 3), 40 * i + 60 * j, np.uint8)).save(folder / f"{picture}.png")
        (folder / "tuned_G.pt").write_bytes(b"delta")


def full_cycle(logger, run_dir):
    rows = [ROWS[0], {**ROWS[1], "reasons": {"id_sim": "no face"}}]
    write_run_dir(run_dir, rows)
    logger.start({"tuner": {"steps": 20}, "choices": {"tuner": "pivotal"}, "overrides": []}, str(run_dir),
                 name="test", group="A", tags=["tuner=pivotal"], job_type="pti")
    for step in range(21):
        logger.log_step("0001", "tuning", step, {"loss": 1.0 / (step + 1), "lpips": torch.tensor(0.5)},
                        renders=torch.randn(1, 3, 8, 8) * 3)
    images = {"target": torch.zeros(1, 3, 8, 8), "tuned": torch.ones(1, 3, 8, 8)}
    logger.log_result(rows[1], images)
    logger.log_result(rows[0], {"inversion": -torch.ones(1, 3, 8, 8)})
    logger.log_image("edits/0001", np.full((8, 24, 3), 200, np.uint8))
    logger.log_summary({"images": 1, "stages": {"tuning": {"mse": 0.1}}})
    logger.finish(str(run_dir))


def test_offline_cycle_writes_the_run_and_its_table(wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = wandb_env / "run"
    logger = WandbLogger(log_every=10, preview_every=10)
    full_cycle(logger, run_dir)
    assert logger.mode == "offline" and logger.run is None
    (offline_run,) = (run_dir / "wandb").glob("offline-run-*")
    (table_file,) = offline_run.glob("files/media/table/results_table_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"][:2] == ["image", "stage"]
    assert {"mse", "lpips", "reasons", "target", "tuned", "inversion"} <= set(table["columns"])
    assert len(table["data"]) == 2
    # rows of results.jsonl in file order; pictures this process logged (the inversion row: only its own)
    inversion, tuning = table["data"]
    assert inversion[1] == "inversion" and inversion[table["columns"].index("target")] is None
    assert tuning[table["columns"].index("tuned")] == "Image"  # offline: a placeholder; pictures are staged
    # An offline run stages its table images, for `wandb sync`, in the data directory.
    staged = [f for f in (wandb_env / "wandb_home" / "artifacts" / "staging").iterdir()
              if f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"]
    assert len(staged) == 3
    assert list(offline_run.glob("run-*.wandb"))
    (grid,) = offline_run.glob("files/media/images/edits/0001_*.png")  # log_image: an image's grid of edits
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    previews = list(offline_run.glob("files/media/images/tuning/0001/preview_*.png"))
    assert len(previews) == 3  # steps 0, 10, 20


def test_offline_run_reads_back_with_history_summary_table_and_artifact(wandb_env, monkeypatch):
    """The dashboard's content, read back from the offline run's record log."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = wandb_env / "run"
    write_run_dir(run_dir)
    config = {"seed": 0, "tuner": {"steps": 30}, "choices": {"inverter": "w", "tuner": "pivotal"},
              "overrides": ["+ablation=A", "tuner.steps=30"]}
    tags = ["inverter=w", "tuner=pivotal", "data=synthfaces_ood"]
    logger = WandbLogger(log_every=5, preview_every=10)
    logger.start(config, str(run_dir), name="A", group="sweep-ablations", tags=tags, job_type="pti")
    for i, name in enumerate(("0001", "0002")):
        for stage in ("inversion", "tuning"):
            for step in range(30):
                loss = (1 + i) / (step + 1)
                logger.log_step(name, stage, step, {"loss": loss, "mse": loss / 2}, renders=torch.rand(1, 3, 8, 8))
    # An earlier process did image 0001 (a resumed run): only 0002's rows are logged live.
    for row in ROWS[2:]:
        pictures = {"target": torch.zeros(1, 3, 8, 8), row["stage"].replace("tuning", "tuned"): torch.ones(1, 3, 8, 8)}
        logger.log_result(row, pictures)
    logger.log_summary(json.loads((run_dir / "summary.json").read_text()))
    logger.finish(str(run_dir))

    run = OfflineRun(run_dir)
    # config, tags, group
    assert run.config["choices"] == config["choices"] and run.config["overrides"] == config["overrides"]
    assert list(run.run.tags) == tags and run.run.run_group == "sweep-ablations" and run.run.job_type == "pti"
    # live losses: each image and stage its own keys against its own step, every log_every steps
    for name in ("0001", "0002"):
        for stage in ("inversion", "tuning"):
            points = run.series(f"{stage}/{name}/loss", f"{stage}/{name}/step")
            assert [step for step, _ in points] == [0, 5, 10, 15, 20, 25]
            assert points[0][1] == pytest.approx(1 + (name == "0002"))
    assert run.series("tuning/0001/loss", "tuning/0001/step") != run.series("tuning/0002/loss", "tuning/0002/step")
    # previews every preview_every steps
    previews = [row for row in run.history if "inversion/0002/preview" in row]
    assert [row["inversion/0002/step"] for row in previews] == [0, 10, 20]
    assert previews[0]["inversion/0002/preview"]["_type"] == "image-file"
    assert any(path.startswith("media/images/inversion/0002/preview_") for path in run.files)
    # results metrics against results/step; summaries over all of results.jsonl, not just 0002
    assert [row["results/step"] for row in run.history if "results/tuning/lpips" in row] == [2]
    assert run.summary["results/tuning/lpips"] == pytest.approx({"min": 0.10, "mean": 0.15, "last": 0.20})
    assert run.summary["results/inversion/lpips"]["min"] == pytest.approx(0.30)
    assert run.summary["results/tuning/id_sim"] == pytest.approx({"max": 0.90, "mean": 0.85, "last": 0.80})
    assert run.summary["results/inversion/id_sim"]["max"] == pytest.approx(0.70)  # 0002's is None
    assert "results/inversion/steps" not in run.summary and "tuning/0001/loss" not in run.summary
    assert run.summary["stages"] == {"tuning": {"lpips": 0.15}}  # log_summary: summary.json
    # the table: one row per results.jsonl line, with pictures (0001's read from its PNGs)
    (table_row,) = [row for row in run.history if "results_table" in row]
    assert table_row["results_table"]["nrows"] == len(ROWS)
    (table_file,) = run.dir.glob("files/media/table/results_table_*.table.json")
    table = json.loads(table_file.read_text())
    columns = table["columns"]
    assert [(row[0], row[1]) for row in table["data"]] == [(row["image"], row["stage"]) for row in ROWS]
    for row in table["data"]:
        picture = "inversion" if row[1] == "inversion" else "tuned"
        assert row[columns.index("target")] == row[columns.index(picture)] == "Image"
    (table_artifact,) = [a for a in run.artifacts if a.type == "run_table"]
    pictures = {Path(entry.path).name for entry in table_artifact.manifest.contents if entry.path.endswith(".png")}
    assert {"target.png", "inversion.png", "tuned.png"} <= pictures  # 0001's, read from its PNGs
    assert json.loads(table["data"][2][columns.index("reasons")]) == {"id_sim": "no face found"}
    # the artifact: results.jsonl and summary.json; the generators only on request
    (artifact,) = [a for a in run.artifacts if a.type == "pti-results"]
    assert artifact.name == f"pti-results-{run.run.run_id}"
    assert sorted(entry.path for entry in artifact.manifest.contents) == ["results.jsonl", "summary.json"]


def test_artifact_can_hold_the_tuned_generators(wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = wandb_env / "run"
    write_run_dir(run_dir)
    (run_dir / "tuned_G.pt").write_bytes(b"multi")
    logger = WandbLogger(log_generators=True)
    logger.start({}, str(run_dir), name="test")
    logger.finish(str(run_dir))
    (artifact,) = [a for a in OfflineRun(run_dir).artifacts if a.type == "pti-results"]
    assert sorted(entry.path for entry in artifact.manifest.contents) == [
        "images/0001/tuned_G.pt", "images/0002/tuned_G.pt", "results.jsonl", "summary.json", "tuned_G.pt"]


def test_steps_of_a_repeated_optimisation_continue_the_axis():
    logger = WandbLogger(mode="disabled", log_every=1)
    logged = []

    class Run:
        def define_metric(self, *args, **kwargs):
            pass

        def log(self, data):
            logged.append(data["edit/a_b/step"])

    logger.run = Run()
    for _ in range(2):  # two StyleCLIP edits of one image: steps 0..2 twice
        for step in range(3):
            logger.log_step("a.b", "edit", step, {"loss": 1.0})
    assert logged == [0, 1, 2, 3, 4, 5]


def test_key_part_makes_one_safe_key_segment():
    assert key_part("0001") == "0001"
    assert key_part("a/b.c*d e") == "a_b_c_d_e"
    long = "+".join(f"{i:04d}" for i in range(32))  # a multi-ID group
    assert len(key_part(long)) == 48 and key_part(long) != key_part(long[:-1])


def test_results_summary_matches_define_metric_summaries():
    summary = results_summary(ROWS)
    assert summary["results/tuning/mse"] == pytest.approx({"min": 0.01, "mean": 0.015, "last": 0.02})
    assert summary["results/tuning/psnr"] == pytest.approx({"max": 27.0, "mean": 26.0, "last": 25.0})
    assert not any(key.endswith(("/steps", "/seconds", "/stopped_early")) for key in summary)


def test_unreachable_server_falls_back_to_offline_quickly(wandb_env, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "2")
    logger = WandbLogger(mode="online")
    start = time.perf_counter()
    logger.start({}, str(wandb_env / "run"), name="test", group=None, job_type="pti")
    assert time.perf_counter() - start < 10
    assert logger.mode == "offline" and "unreachable" in caplog.text
    logger.finish(str(wandb_env / "run"))


def test_failing_init_falls_back_and_never_raises(wandb_env, monkeypatch, caplog):
    import wandb

    def refuse(**kwargs):
        raise wandb.errors.UsageError(f"no API key ({kwargs['mode']})")

    monkeypatch.setattr(wandb_logger, "server_reachable", lambda url: True)
    monkeypatch.setattr(wandb, "init", refuse)
    logger = WandbLogger(mode="online")
    full_cycle(logger, wandb_env / "run")  # every call is a harmless no-op
    assert logger.run is None
    assert "online init failed" in caplog.text and "offline init failed" in caplog.text


def test_a_later_wandb_error_stops_logging_once(wandb_env, monkeypatch, caplog):
    logger = WandbLogger(mode="offline", log_every=1)
    logger.start({}, str(wandb_env / "run"), name="test", group=None, job_type="pti")
    run = logger.run

    def broken(*args, **kwargs):
        raise RuntimeError("lost the service")

    monkeypatch.setattr(run, "log", broken)
    for step in range(5):
        logger.log_step("0001", "inversion", step, {"loss": 1.0})
    assert logger.stopped and caplog.text.count("lost the service") == 1
    logger.finish(str(wandb_env / "run"))  # still closes the run
    assert logger.run is None and run._is_finished


def test_disabled_mode_does_nothing(wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    full_cycle(WandbLogger(), wandb_env / "run")
    assert not (wandb_env / "run" / "wandb").exists()


def test_a_recorder_without_logger_writes_the_store_only(wandb_env):
    """logger=none: the Recorder gets None; rows, pictures and the summary are on disk all the same."""
    run_dir = wandb_env / "run"
    recorder = Recorder(RunStore(run_dir), logger=None)
    recorder.start({}, name="test", group=None, tags=[], job_type="pti")
    recorder.on_step("0001", "inversion")(0, {"loss": 1.0}, torch.zeros(1, 3, 8, 8))
    recorder.result(ROWS[0], {"target": torch.zeros(1, 3, 8, 8)})
    summary = recorder.summary({}, {})
    recorder.finish()
    assert RunStore(run_dir).results() == [ROWS[0]] and summary["images"] == 1
    assert (run_dir / "images" / "0001" / "target.png").is_file() and not (run_dir / "wandb").exists()


def test_logger_configs_instantiate():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    wandb_cfg = OmegaConf.load(REPO / "conf" / "logger" / "wandb.yaml")
    logger = instantiate(wandb_cfg, mode="disabled")
    assert isinstance(logger, WandbLogger) and logger.project == "pti-lab" and logger.log_every == 10
    assert logger.preview_every == 100 and logger.log_generators is False
    assert OmegaConf.load(REPO / "conf" / "logger" / "none.yaml") == {"logger": None}  # @package _global_


def test_run_py_logs_a_live_offline_dashboard(wandb_env):
    """End to end: run.py with W&B offline; the record log holds each image's live curves, the
    group choices as tags, the overrides, a table row per results.jsonl line and the artifact."""
    run_dir = wandb_env / "run"
    run_py(f"hydra.run.dir={run_dir}", "+ablation=A", "data.limit=2", "inverter.steps=6", "tuner.steps=4",
           "reuse_inversions=false",  # inversions from the cache have no live curves
           "device=cpu", "preview=null", "logger.mode=offline", "logger.log_every=2", "logger.preview_every=4")
    run = OfflineRun(run_dir)
    for name in ("ood_000", "ood_001"):
        assert [step for step, _ in run.series(f"inversion/{name}/loss", f"inversion/{name}/step")] == [0, 2, 4]
        assert [step for step, _ in run.series(f"tuning/{name}/lpips", f"tuning/{name}/step")] == [0, 2]
        assert any(f"inversion/{name}/preview" in row for row in run.history)
    assert {"ablation=A", "inverter=w", "tuner=pivotal", "data=synthfaces_ood"} <= set(run.run.tags)
    assert run.run.run_group == "A" and "data.limit=2" in run.config["overrides"]
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    (table_row,) = [row for row in run.history if "results_table" in row]
    assert table_row["results_table"]["nrows"] == len(rows) == 4
    assert "results/tuning/lpips" in run.summary
    assert any(a.type == "pti-results" for a in run.artifacts)
