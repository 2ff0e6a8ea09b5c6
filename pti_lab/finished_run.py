"""A finished run directory read back: its base generator, and per image the tuned generator, the
pivot and the pictures and rows the run wrote (the layout the driver writes, see the README).

    run = FinishedRun("outputs/x")                 # or a sweep directory: every job's images
    image = run.open("ood_000")                    # TunedImage: base, tuned, pivot, rows
    image.render(image.pivot)                      # the tuned reconstruction, as tuned.png was made

Every problem is one line naming the directory or file (BadInputError / CheckpointError): a
directory that is not a run, an image whose tuning failed, a base generator that is missing or is
not the one the run was tuned from.
"""

import json
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Optional

import torch
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

import pti_lab
from pti_lab.config import register_configs
from pti_lab.safe_pickle import load_weights_only
from pti_lab.tracking.stage_files import PIVOT_FILE, TUNED_FILE, TUNED_PIVOT_FILE, synthesize
from pti_lab.editing.editor import Editor
from pti_lab.errors import BadInputError, CheckpointError
from pti_lab.generators import make_generator
from pti_lab.models.checkpoints import local_checkpoint
from pti_lab.models.delta import load_tuned
from pti_lab.models.stylegan2 import Generator
from pti_lab.pipeline import build
from pti_lab.run_record import RECORD_FILE
from pti_lab.tracking.store import RunStore

PICTURES = ("target", "inversion", "tuned")  # images/<name>/<picture>.png
CONF_DIR = Path(pti_lab.__file__).resolve().parents[1] / "conf"  # run.py's configuration


def unflatten(settings: dict, prefix: str) -> dict:
    """{'a.b': 1} -> {'a': {'b': 1}} for the keys under `prefix.` (run_config.json stores dotted keys)."""
    out: dict = {}
    for key, value in settings.items():
        if not key.startswith(prefix + "."):
            continue
        node = out
        *parents, leaf = key[len(prefix) + 1:].split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return out


def is_run_dir(path: Path) -> bool:
    return (path / RECORD_FILE).is_file() and (path / "images").is_dir()


@dataclass
class TunedImage:
    """One image of a finished run, with what the studio, the exporter and the animations need."""
    name: str
    run_dir: Path
    base: Generator                      # the generator the run started from
    tuned: Generator                     # the generator tuned for this image (multi-ID: for all of them)
    pivot: torch.Tensor                  # [1, num_ws, w_dim] the pivot after tuning
    rows: dict = field(default_factory=dict)   # stage -> its results row (inversion, tuning)
    generator_path: Optional[str] = None       # the base generator's checkpoint (None: shipped or fresh weights)

    @property
    def dir(self) -> Path:
        return self.run_dir / "images" / self.name

    def picture(self, kind: str) -> Path:
        return self.dir / f"{kind}.png"

    def render(self, ws: torch.Tensor, original: bool = False) -> torch.Tensor:
        """[1, C, R, R] image of ws [1, num_ws, w_dim] with the tuned (or the original) generator, noise const."""
        return synthesize(self.base if original else self.tuned, ws.to(self.pivot.device))


class FinishedRun:
    """A run directory, or a sweep directory whose jobs are run directories."""

    def __init__(self, path: str | Path, generator: Optional[str] = None, device: str = "cpu"):
        self.path = Path(path)
        self.generator_override = generator
        self.device = device
        if not self.path.is_dir():
            raise BadInputError(f"{self.path}: no such directory")
        if is_run_dir(self.path):
            self.run_dirs = [self.path]
        else:
            self.run_dirs = sorted((p.parent for p in self.path.glob(f"*/{RECORD_FILE}") if is_run_dir(p.parent)),
                                   key=lambda p: (len(p.name), p.name))
        if not self.run_dirs:
            raise BadInputError(f"{self.path}: not a pti-lab run or sweep directory (no {RECORD_FILE} and images/ "
                                f"in it or in its subdirectories)")
        self._bases: dict[Path, tuple[Generator, Optional[str]]] = {}

    @cached_property
    def images(self) -> list[tuple[Path, str]]:
        """(run directory, image name) of every image the runs hold, in their order."""
        found = []
        for run_dir in self.run_dirs:
            names = []
            for row in RunStore(run_dir).results():
                if row.get("image") not in names:
                    names.append(row["image"])
            names += [e["image"] for e in RunStore(run_dir).failed() if e["image"] not in names]
            found += [(run_dir, name) for name in names]
        return found

    def label(self, run_dir: Path, name: str) -> str:
        """How an image is named on the page: its name, prefixed by its job in a sweep."""
        return name if run_dir == self.path else f"{run_dir.relative_to(self.path)}/{name}"

    def base(self, run_dir: Path) -> tuple[Generator, Optional[str]]:
        """The run's base generator (from run_config.json, or the --generator given) and its checkpoint path."""
        if run_dir not in self._bases:
            settings = json.loads((run_dir / RECORD_FILE).read_text()).get("settings", {})
            node = unflatten(settings, "generator")
            path = self.generator_override or node.get("path")
            if path and not local_checkpoint(str(path)).is_file():
                raise BadInputError(f"{run_dir}: the run's base generator {path} is missing; give its path with "
                                    f"--generator FILE")
            if node.get("_target_", "pti_lab.generators.make_generator") != "pti_lab.generators.make_generator":
                raise BadInputError(f"{run_dir}: generator._target_={node['_target_']} is not pti-lab's generator "
                                    f"factory; give the base generator with --generator FILE")
            G = make_generator(path, node.get("architecture"), node.get("seed") or 0, device=self.device)
            self._bases[run_dir] = G, (str(local_checkpoint(str(path))) if path else None)
        return self._bases[run_dir]

    def open(self, run_dir: Path, name: str) -> TunedImage:
        """The image `name` of `run_dir`, tuned generator and pivot loaded."""
        store = RunStore(run_dir)
        where = run_dir / "images" / name
        failure = next((e["reason"] for e in store.failed() if e["image"] == name), None)
        if failure:
            raise BadInputError(f"{where}: this image failed in the run ({failure})")
        rows = {stage: store.done(name, stage) for stage in ("inversion", "tuning")}
        delta = next((f for f in (where / TUNED_FILE, run_dir / TUNED_FILE) if f.is_file()), None)
        if rows["tuning"] is None or delta is None:
            raise BadInputError(f"{where}: no tuned generator (the run did not tune this image, or has not yet)")
        pivot_file = next((f for f in (where / TUNED_PIVOT_FILE, where / PIVOT_FILE) if f.is_file()), None)
        if pivot_file is None:
            raise BadInputError(f"{where}: no {TUNED_PIVOT_FILE} or {PIVOT_FILE}")
        base, path = self.base(run_dir)
        try:
            tuned = load_tuned(delta, base)
        except CheckpointError as exc:
            if "tuned against base" in str(exc):
                raise CheckpointError(f"{exc}: the base generator is not the one this run was tuned from"
                                      f"{'' if self.generator_override else '; give it with --generator FILE'}") from None
            raise
        pivot = load_weights_only(pivot_file).to(self.device, torch.float32)
        if pivot.ndim != 3 or pivot.shape[1:] != (base.num_ws, base.w_dim):
            raise BadInputError(f"{pivot_file}: a pivot of shape {list(pivot.shape)}, the generator takes "
                                f"[1, {base.num_ws}, {base.w_dim}]")
        return TunedImage(name, run_dir, base, tuned, pivot[:1], rows, path)


def open_image_dir(image_dir: str | Path, generator: Optional[str] = None, device: str = "cpu") -> TunedImage:
    """The image of `RUN/images/NAME` (what `python -m pti_lab.export` and `pti_lab.animate` take)."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise BadInputError(f"{image_dir}: no such directory")
    run_dir = image_dir.parent.parent
    if image_dir.parent.name != "images" or not is_run_dir(run_dir):
        raise BadInputError(f"{image_dir}: not an image directory of a run (expected RUN_DIR/images/NAME)")
    return FinishedRun(run_dir, generator, device).open(run_dir, image_dir.name)


def compose_editor(overrides: list[str], run_dir: Optional[Path] = None) -> Editor:
    """The editor that `python run.py OVERRIDES` would build (e.g. ['editor=mix', 'editor.directions=[smile]']),
    with the run's own identity network for editors that use one (StyleCLIP's ID loss)."""
    choices = {}
    if run_dir is not None and (run_dir / "summary.json").is_file():
        choices = json.loads((run_dir / "summary.json").read_text()).get("choices", {})
    extra = [f"identity={choices['identity']}"] if choices.get("identity") and \
        not any(o.startswith("identity=") for o in overrides) else []
    register_configs()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            cfg = compose(config_name="config", overrides=[*extra, *overrides])
    except (HydraException, OmegaConfBaseException) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BadInputError(f"editor overrides {' '.join(overrides)}: {first}") from None
    if cfg.editor is None:
        raise BadInputError("no editor: give one, e.g. editor=interfacegan editor.direction=smile")
    return build(cfg.editor)
