"""Every config composes and checks; bad values fail at config time; run.py runs end to end."""

import json

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pti_lab.config import ConfigError, check_config, register_configs
from tests.conftest import REPO, run_py

CONF = REPO / "conf"
SKIP_GROUPS = {"hydra"}  # Hydra's own settings, composed in every run
GROUP_OPTIONS = sorted(
    (group.name, option.stem)
    for group in CONF.iterdir() if group.is_dir() and group.name not in SKIP_GROUPS
    for option in group.glob("*.yaml")
)

DEFAULT_GROUPS = {key for entry in OmegaConf.load(CONF / "config.yaml")["defaults"]
                  if isinstance(entry, dict) or OmegaConf.is_dict(entry) for key in entry}

register_configs()


def compose_config(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_groups_were_found():
    assert {"generator", "paths"} <= {group for group, _ in GROUP_OPTIONS}


# Options with a required value (`???`) get one, as a user must give it.
REQUIRED = {("data", "folder"): ["data.path=photos"], ("data", "image"): ["data.path=photo.png"]}


@pytest.mark.parametrize("group,option", GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_option_composes_and_checks(group, option):
    selection = f"{group}={option}" if group in DEFAULT_GROUPS else f"+{group}={option}"
    cfg = compose_config(selection, *REQUIRED.get((group, option), []))
    check_config(cfg)


def test_ablation_is_not_in_the_defaults_list():
    assert "ablation" not in DEFAULT_GROUPS and {"generator", "paths", "hydra"} <= DEFAULT_GROUPS


@pytest.mark.parametrize("override,message", [
    ("seed=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
    ("generator.pathh=x", "Key 'pathh' is not in struct"),
])
def test_hydra_refuses_bad_values(override, message):
    with pytest.raises(Exception) as info:
        compose_config(override)
    error, causes = info.value, []
    while error is not None:  # Hydra wraps the schema's message
        causes.append(str(error))
        error = error.__cause__
    assert any(message in cause for cause in causes), causes


@pytest.mark.parametrize("override,message", [
    ("+generator.pathh=x", r"generator.pathh: unknown key for pti_lab.generators.make_generator \(valid keys: path"),
    ("tuner.steps=abc", "tuner.steps='abc': expected int"),
    ("+tuner.stepz=3", r"tuner.stepz: unknown key for pti_lab.tuning.PivotalTuner"),
    ("+foo=1", "foo: unknown top-level key"),
    ("mode=both", "mode='both': expected one of single, multi"),
    ("batch_size=0", "batch_size=0: expected a whole number >= 1"),
    ("preview.count=0", r"preview.count=0: expected a whole number >= 1 \(preview=null: no preview\)"),
    ("data=folder", r"data.path: a value is required \(set data.path=...\)"),
])
def test_component_check_refuses_bad_values(override, message):
    cfg = compose_config(override)
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)


@pytest.mark.parametrize("method,tuner_steps", [("w", None), ("w_plus", None), ("e4e", None), ("psp", None),
                                                ("pti", 2), ("pti_e4e", 2), ("pti_locality", 2)])
def test_debug_smoke_shortens_a_method_and_keeps_tuning_off_where_it_is(method, tuner_steps):
    cfg = compose_config(f"+method={method}", "debug=smoke")
    check_config(cfg)
    assert (None if cfg.tuner is None else cfg.tuner.steps) == tuner_steps
    assert (cfg.inverter.steps, cfg.data.limit, cfg.device, cfg.logger, cfg.preview) == (2, 1, "cpu", None, None)


def test_the_command_line_and_an_experiment_win_over_debug_smoke():
    cfg = compose_config("debug=smoke", "logger=wandb", "data.limit=3", "tuner.steps=5")
    assert cfg.logger.project == "pti-lab" and cfg.data.limit == 3 and cfg.tuner.steps == 5
    assert compose_config("+experiment=table1", "+method=w", "debug=smoke").data.limit == 6  # table1's own


def test_settings_given_to_a_tuner_that_is_off_are_refused():
    with pytest.raises(ConfigError, match=r"^tuner: steps given to a tuner that is off \(tuner=none\); drop them "
                                          r"\(for a run without tuning use \+method=w"):
        check_config(compose_config("tuner=none", "debug=smoke"))


def test_run_py_writes_summary_and_preview(tmp_path):
    out = tmp_path / "run"
    result = run_py(f"hydra.run.dir={out}", "preview.count=4", "device=cpu", "generator=fresh",
                    "data.limit=0", "logger=none", check=False)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["choices"]["generator"] == "fresh"
    assert summary["generator"]["resolution"] == 64 and summary["generator"]["num_ws"] == 10
    assert summary["failed"] == [] and summary["images"] == 0
    assert (out / "preview.png").stat().st_size > 1000
    assert not list(out.glob(".*.tmp"))  # no temp files left behind


def test_run_py_sweep_writes_one_subdir_per_job(tmp_path):
    result = run_py("-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", "seed=0,1", "preview.count=2",
                    "device=cpu", "data.limit=0", "logger=none", check=False)
    assert result.returncode == 0, result.stderr
    summaries = sorted((tmp_path / "sweep").glob("*/summary.json"))
    assert [p.parent.name for p in summaries] == ["0", "1"]  # job numbers: an override may be a path
    for job, seed in (("0", 0), ("1", 1)):
        recorded = (tmp_path / "sweep" / job / ".hydra" / "overrides.yaml").read_text()
        assert f"seed={seed}" in recorded and "data.limit=0" in recorded


def test_run_py_config_error_is_one_line(tmp_path):
    result = run_py(f"hydra.run.dir={tmp_path / 'run'}", "device=tpu", check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == "error: device='tpu': expected one of auto, cpu, cuda, cuda:N"
