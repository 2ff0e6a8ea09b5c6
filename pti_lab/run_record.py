"""What a run directory was made with: the settings that change its results, kept in run_config.json,
so that a re-run into the directory resumes only what the same settings would have produced.

Recorded (they change what an image's rows, pictures and tensors hold): the nodes `generator`,
`data`, `inverter`, `tuner`, `regularizer`, `perceptual`, `identity`, `editor`, `metrics`, and the
keys `seed` and `mode`. Not recorded (they change which images run, or how and where, not what
each image gets):
  data.limit, data.shard(s), data.split  which images of the data set run: a larger limit adds
                                         images to a run, and the shards of one data set share the settings
  batch_size                           images per pass: the results of one at a time, up to rounding
  device                               cpu or cuda: rounding only; a run may finish on other hardware
  reuse_inversions                     the pivot cache returns what these inverter settings compute
  any `progress`, `w_stats_disk_cache` progress bars and a cache of statistics
  logger, paths, preview, report       where results go and how they are shown and labelled
  hydra (launcher, threads, dirs)      how jobs are started
A directory of other settings is refused (StaleRunError, one line naming the differing keys) unless
the run says `resume=restart` (the old outputs move to replaced/<time>/ and the run starts over) or
`resume=force` (continue, mixing the settings; the record keeps the earlier ones). Both act only when
the settings differ, so a requeued job that carries them on its command line still resumes. One
change is no conflict: an editor added to a run that had none edits its finished pivots.
"""

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pti_lab.atomic import remove_leftovers, write_text
from pti_lab.config import ConfigError

log = logging.getLogger(__name__)

RECORD_FILE = "run_config.json"
REPLACED_DIR = "replaced"  # resume=restart moves earlier outputs to replaced/<UTC time>/
RECORDED_NODES = ("generator", "data", "inverter", "tuner", "regularizer", "perceptual", "identity",
                  "editor", "metrics", "seed", "mode")
EDIT_NODES = ("editor", "metrics")  # what only the edit stage uses
UNRECORDED_KEYS = {"data.limit", "data.shard", "data.shards", "data.split"}
UNRECORDED_NAMES = {"progress", "w_stats_disk_cache"}  # leaf names ignored wherever they are
KEPT_ON_RESTART = {".hydra", REPLACED_DIR, ".submitit"}  # Hydra's record of the run, submitit's, earlier outputs


class StaleRunError(ConfigError):
    """The run directory holds results of other settings."""


def flatten(value: Any, prefix: str, out: dict) -> dict:
    if isinstance(value, dict):
        for key, item in value.items():
            flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value
    return out


def result_settings(cfg: DictConfig) -> dict:
    """{dotted key: value} of every setting that changes results (see the module docstring)."""
    settings = {}
    for node in RECORDED_NODES:
        value = OmegaConf.select(cfg, node, throw_on_missing=False)
        if isinstance(value, DictConfig):
            value = OmegaConf.to_container(value, resolve=True)
        flatten(value, node, settings)
    return {key: value for key, value in settings.items()
            if key not in UNRECORDED_KEYS and key.rsplit(".", 1)[-1] not in UNRECORDED_NAMES}


def fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def differences(old: dict, new: dict) -> list[str]:
    """'key: old -> new' for every key whose value differs (absent on one side counts), edit settings
    last; a node switched on or off (`editor: null` on one side) is one entry naming its _target_."""
    def show(settings: dict, key: str) -> str:
        if key not in settings:
            return settings.get(f"{key}._target_", "(absent)")
        text = json.dumps(settings[key], default=str)
        return text if len(text) <= 40 else text[:37] + "..."
    switched = {key for key in old.keys() | new.keys()
                if "." not in key and (old.get(key, 0) is None) != (new.get(key, 0) is None)}
    keys = {key.split(".")[0] if key.split(".")[0] in switched else key for key in old.keys() | new.keys()}
    changed = [key for key in keys if key in switched or old.get(key, object()) != new.get(key, object())]
    changed.sort(key=lambda key: (key.split(".")[0] in EDIT_NODES, key))
    return [f"{key}: {show(old, key)} -> {show(new, key)}" for key in changed]


def adds_edits(old: dict, new: dict) -> bool:
    """Whether `new` only adds an editor to settings that had none: edits of the pivots and generators a
    finished run made (their rows are new; the edit scorer `metrics` may change with them)."""
    def before_editing(settings: dict) -> dict:
        return {key: value for key, value in settings.items() if key.split(".")[0] not in EDIT_NODES}
    return "editor" in old and old["editor"] is None and before_editing(old) == before_editing(new)


def has_outputs(run_dir: Path) -> bool:
    return any(entry.name not in KEPT_ON_RESTART and not entry.name.endswith(".log") for entry in run_dir.iterdir())


def move_outputs(run_dir: Path) -> Path:
    """Move everything a run wrote (not Hydra's .hydra/, logs, earlier replacements) to replaced/<time>/."""
    target = run_dir / REPLACED_DIR / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target.mkdir(parents=True, exist_ok=True)
    for entry in run_dir.iterdir():
        if entry.name not in KEPT_ON_RESTART and not entry.name.endswith(".log"):
            shutil.move(str(entry), str(target / entry.name))
    return target


def prepare_run_dir(run_dir: str | os.PathLike, settings: dict, resume: str = "auto") -> None:
    """Before a run writes into `run_dir`: refuse or handle results of other settings (`resume` =
    auto | restart | force), record these settings, and remove the temporary files of writes an
    earlier run was killed in."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    record_path = run_dir / RECORD_FILE
    settings = json.loads(json.dumps(settings, default=str))  # as the record will hold them
    record = {"fingerprint": fingerprint(settings), "settings": settings}
    if record_path.is_file():
        old = json.loads(record_path.read_text())
        if old.get("earlier"):
            record["earlier"] = old["earlier"]
        changed = differences(old["settings"], settings)
        if changed and adds_edits(old["settings"], settings):
            log.info("%s: edits added to the finished inversions and tunings", run_dir)
        elif changed:
            if resume == "auto":
                shown = "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
                raise StaleRunError(
                    f"{run_dir} holds results of other settings ({shown}); add resume=restart to start over "
                    f"(the old outputs move to {REPLACED_DIR}/) or resume=force to continue with them")
            if resume == "restart":
                log.warning("%s: other settings (%s): earlier outputs moved to %s", run_dir, "; ".join(changed),
                            move_outputs(run_dir))
                record.pop("earlier", None)
            else:
                log.warning("%s: continuing results of other settings (resume=force): %s", run_dir, "; ".join(changed))
                record["earlier"] = record.get("earlier", []) + [{key: old[key] for key in ("fingerprint", "settings")}]
    elif has_outputs(run_dir):
        log.warning("%s: results without a record of their settings (made before %s existed): assuming the "
                    "same settings", run_dir, RECORD_FILE)
    remove_leftovers(run_dir)
    write_text(record_path, json.dumps(record, indent=2, default=str) + "\n")
