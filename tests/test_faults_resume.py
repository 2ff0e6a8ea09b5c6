"""Stale resumes: a run directory records the settings that change its results (run_config.json); a
re-run with other settings is refused in one line naming the keys, unless resume=restart|force."""

import json
import logging

import pytest
from hydra import compose, initialize_config_dir

from pti_lab.config import ConfigError, check_config, register_configs
from pti_lab.run_record import RECORD_FILE, StaleRunError, prepare_run_dir, result_settings
from tests.conftest import REPO, run_py
from tests.fault_helpers import rows_of

register_configs()


def settings(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    check_config(cfg)
    return result_settings(cfg)


@pytest.mark.parametrize("override", [
    "logger=none", "paths.cache_dir=/elsewhere", "preview=null", "device=cpu", "batch_size=4", "data.limit=3",
    "data.shard=1", "data.shards=4", "inverter.progress=false", "tuner.progress=false", "reuse_inversions=false",
    "inverter.w_stats_disk_cache=false", "resume=force", "+report.method=x",
])
def test_settings_that_do_not_change_results_are_not_recorded(override):
    assert settings(override) == settings()


@pytest.mark.parametrize("override,key", [
    ("tuner.lpips_threshold=0.06", "tuner.lpips_threshold"), ("seed=1", "seed"), ("mode=multi", "mode"),
    ("inverter.steps=7", "inverter.steps"), ("data=synthfaces_indomain", "data.kind"),
    ("generator.path=/x/G.pkl", "generator.path"), ("regularizer=locality", "regularizer.alpha"),
    ("perceptual=vgg", "perceptual.net"), ("editor=interfacegan", "editor.direction"),
    ("tuner.mode=multi", "mode"),  # the deprecated spelling counts as what it means
])
def test_settings_that_change_results_are_recorded(override, key):
    before, after = settings(), settings(override)
    assert before.get(key, "absent") != after.get(key, "absent")


def test_other_settings_are_refused_in_one_line_naming_the_keys(tmp_path):
    prepare_run_dir(tmp_path, {"tuner.steps": 350, "seed": 0, "tuner.lr": 3e-4})
    (tmp_path / "results.jsonl").write_text('{"image": "a", "stage": "tuning"}\n')
    with pytest.raises(StaleRunError) as refused:
        prepare_run_dir(tmp_path, {"tuner.steps": 350, "seed": 1, "tuner.lr": 3e-4, "tuner.new": True})
    message = str(refused.value)
    assert "\n" not in message and str(tmp_path) in message
    assert "seed: 0 -> 1" in message and "tuner.new: (absent) -> true" in message and "tuner.steps" not in message
    assert "resume=restart" in message and "resume=force" in message
    assert isinstance(refused.value, ConfigError)  # run.py prints it as one `error:` line
    prepare_run_dir(tmp_path, {"tuner.steps": 350, "seed": 0, "tuner.lr": 3e-4})  # the same settings resume


def test_restart_moves_the_old_outputs_aside_and_force_keeps_them(tmp_path, caplog):
    old = {"seed": 0}
    prepare_run_dir(tmp_path, old)
    (tmp_path / "results.jsonl").write_text('{"image": "a", "stage": "tuning"}\n')
    (tmp_path / "images" / "a").mkdir(parents=True)
    (tmp_path / ".hydra").mkdir()
    (tmp_path / "run.log").write_text("log\n")
    with caplog.at_level(logging.WARNING, logger="pti_lab.run_record"):
        prepare_run_dir(tmp_path, {"seed": 1}, resume="force")
    assert (tmp_path / "results.jsonl").is_file() and "resume=force" in caplog.text
    record = json.loads((tmp_path / RECORD_FILE).read_text())
    assert record["settings"] == {"seed": 1} and record["earlier"][0]["settings"] == old
    prepare_run_dir(tmp_path, {"seed": 1}, resume="restart")  # the same settings: restart changes nothing
    assert (tmp_path / "results.jsonl").is_file()
    prepare_run_dir(tmp_path, {"seed": 2}, resume="restart")
    (moved,) = (tmp_path / "replaced").iterdir()
    assert sorted(p.name for p in moved.iterdir()) == sorted(["images", RECORD_FILE, "results.jsonl"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".hydra", "replaced", RECORD_FILE, "run.log"])
    record = json.loads((tmp_path / RECORD_FILE).read_text())
    assert record["settings"] == {"seed": 2} and "earlier" not in record


def test_an_editor_added_to_a_run_without_one_is_no_conflict(tmp_path):
    plain, edited = settings(), settings("editor=interfacegan")
    prepare_run_dir(tmp_path, plain)
    prepare_run_dir(tmp_path, edited)  # edits of the finished tunings
    with pytest.raises(StaleRunError, match="editor.direction"):
        prepare_run_dir(tmp_path, settings("editor=interfacegan", "editor.direction=age"))  # other edits
    with pytest.raises(StaleRunError, match="seed"):
        prepare_run_dir(tmp_path / "other", plain)
        prepare_run_dir(tmp_path / "other", settings("editor=interfacegan", "seed=3"))


def test_leftover_temporary_files_of_a_killed_write_are_removed(tmp_path):
    (tmp_path / "images" / "a").mkdir(parents=True)
    leftover = tmp_path / "images" / "a" / ".tuned_G.pt.k2j3h4.tmp"
    leftover.write_bytes(b"half a file")
    prepare_run_dir(tmp_path, {"seed": 0})
    assert not leftover.exists()


def test_unknown_resume_value_is_a_config_error():
    with pytest.raises(ConfigError, match="resume='later': expected one of auto, restart, force"):
        settings("resume=later")


def test_run_py_refuses_a_stale_resume_then_resumes_the_same_settings(tmp_path):
    out = tmp_path / "run"
    args = [f"hydra.run.dir={out}", "debug=smoke", "tuner.lpips_threshold=null"]
    run_py(*args, "data.limit=1")
    rows = rows_of(out)
    stale = run_py(*args, "data.limit=1", "tuner.lpips_threshold=0.06", check=False)
    assert stale.returncode == 1
    last = stale.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "tuner.lpips_threshold: null -> 0.06" in last, stale.stderr[-2000:]
    assert rows_of(out) == rows  # nothing touched
    again = run_py(*args, "data.limit=2")  # the same settings, one image more: resumes
    assert "ood_000: already done, skipped" in again.stderr + again.stdout
    assert len(rows_of(out)) == 4
