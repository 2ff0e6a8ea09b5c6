import json
import time

import numpy as np
import pytest
import torch

from pti_lab.tracking import wandb_logger
from pti_lab.tracking.wandb_logger import NullLogger, WandbLogger
from tests.conftest import REPO


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """wandb's own files (settings, cache) go to a temporary directory, never the user's home."""
    for key in ("WANDB_DIR", "WANDB_API_KEY", "WANDB_ENTITY", "WANDB_PROJECT"):
        monkeypatch.delenv(key, raising=False)
    for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(key, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return tmp_path


def full_cycle(logger, run_dir):
    logger.start({"tuner": {"steps": 20}}, str(run_dir), name="test", group="A", job_type="pti")
    for step in range(21):
        logger.log_losses("0001", "tuning", step, {"loss": 1.0 / (step + 1), "lpips": torch.tensor(0.5)})
    images = {"target": torch.zeros(1, 3, 8, 8), "tuned": torch.ones(1, 3, 8, 8)}
    logger.log_result({"image": "0001", "stage": "tuning", "mse": 0.1, "reasons": {"id_sim": "no face"}}, images)
    logger.log_result({"image": "0001", "stage": "inversion", "lpips": 0.3}, {"inversion": -torch.ones(1, 3, 8, 8)})
    logger.log_image("edits/0001", np.full((8, 24, 3), 200, np.uint8))
    logger.log_summary({"images": 1, "stages": {"tuning": {"mse": 0.1}}})
    logger.finish()


def test_offline_cycle_writes_the_run_and_its_table(wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = wandb_env / "run"
    logger = WandbLogger(log_every=10)
    full_cycle(logger, run_dir)
    assert logger.mode == "offline" and logger.run is None
    (offline_run,) = (run_dir / "wandb").glob("offline-run-*")
    (table_file,) = offline_run.glob("files/media/table/results_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"][:2] == ["image", "stage"]
    assert {"mse", "lpips", "reasons", "target", "tuned", "inversion"} <= set(table["columns"])
    assert len(table["data"]) == 2
    assert table["data"][0][table["columns"].index("tuned")] == "Image"
    # An offline run stages its table images, for `wandb sync`, in the data directory.
    staged = [f for f in (wandb_env / "wandb_home" / "artifacts" / "staging").iterdir()
              if f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"]
    assert len(staged) == 3
    assert list(offline_run.glob("run-*.wandb"))
    (grid,) = offline_run.glob("files/media/images/edits/0001_*.png")  # log_image: an image's grid of edits
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unreachable_server_falls_back_to_offline_quickly(wandb_env, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "2")
    logger = WandbLogger(mode="online")
    start = time.perf_counter()
    logger.start({}, str(wandb_env / "run"), name="test", group=None, job_type="pti")
    assert time.perf_counter() - start < 10
    assert logger.mode == "offline" and "unreachable" in caplog.text
    logger.finish()


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
        logger.log_losses("0001", "inversion", step, {"loss": 1.0})
    assert logger.stopped and caplog.text.count("lost the service") == 1
    logger.finish()  # still closes the run
    assert logger.run is None and run._is_finished


def test_disabled_mode_and_null_logger_do_nothing(wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    logger = WandbLogger()
    full_cycle(logger, wandb_env / "run")
    full_cycle(NullLogger(), wandb_env / "run")
    assert not (wandb_env / "run" / "wandb").exists()


def test_logger_configs_instantiate():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf


    wandb_cfg = OmegaConf.load(REPO / "conf" / "logger" / "wandb.yaml")
    logger = instantiate(wandb_cfg, mode="disabled")
    assert isinstance(logger, WandbLogger) and logger.project == "pti-lab" and logger.log_every == 10
    assert type(instantiate(OmegaConf.load(REPO / "conf" / "logger" / "none.yaml"))) is NullLogger
