"""The studio's model logic, without any web page: a finished run, its edit directions as sliders, an
edit rendered with the tuned and the original generator, StyleCLIP directions, saved recipes.

    studio = Studio("outputs/x")
    sliders = studio.sliders()                         # InterfaceGAN boundaries, direction files, GANSpace
    shot = studio.render(studio.labels[0], {"smile": 2.0})   # Shot: ws, tuned and original pictures
    folder = studio.save(studio.labels[0], {"smile": 2.0})   # RUN/studio/<image>-NNN/: PNGs, latent, recipe

Every edit is a MixEditor (pti_lab.editing.mix) of the non-zero sliders, so a saved recipe replays
as `python -m pti_lab.studio.replay IMAGE_DIR editor=mix ...` to the same pixels.
"""

import json
import re
from collections import OrderedDict
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from pti_lab.animate import ANIMATIONS_DIR, sweep_frames, write_video
from pti_lab.atomic import save_torch
from pti_lab.editing.directions import load_direction, read_boundaries
from pti_lab.editing.mix import MixEditor
from pti_lab.errors import BadInputError
from pti_lab.finished_run import FinishedRun, TunedImage, compose_editor
from pti_lab.models.fingerprint import generator_fingerprint
from pti_lab.tracking.store import save_png, to_uint8, write_json

STUDIO_DIR = "studio"          # RUN/studio/: saved edits and StyleCLIP directions
RECIPE_FILE = "recipe.json"
DIRECTION_RANGE = 5.0          # InterfaceGAN sliders: -5..5 in W units (the README's edits use +-3)
COMPONENT_RANGE = 5.0          # GANSpace sliders: -5..5 standard deviations
LOADED_IMAGES = 4              # tuned generators kept in memory (an FFHQ one is ~120 MB)


@dataclass(frozen=True)
class Slider:
    key: str                   # unique name: a boundary's name, a file's stem, 'pc3', 'styleclip: <prompt>'
    kind: str                  # 'direction' (a unit direction, strength in W units) or 'component' (GANSpace)
    source: str | int          # the boundary name or direction file, or the component index
    minimum: float
    maximum: float
    value: float = 0.0         # where it starts


@dataclass
class Shot:
    ws: torch.Tensor           # [1, num_ws, w_dim] the edited latent
    tuned: np.ndarray          # uint8 [R, R, C] rendered with the tuned generator
    original: np.ndarray       # uint8 [R, R, C] rendered with the original generator
    seconds: float             # the time the edit and both renders took


def format_override(key: str, values: list) -> str:
    """A Hydra override of a list: strings quoted (paths), floats exact (repr round-trips)."""
    return f"{key}=[{','.join(json.dumps(v) if isinstance(v, str) else repr(v) for v in values)}]"


def replay_command(image_dir: Path, overrides: list[str], out: Path, generator: Optional[str]) -> str:
    parts = ["python", "-m", "pti_lab.studio.replay", str(image_dir), *overrides, "--out", str(out)]
    if generator:
        parts += ["--generator", generator]
    return " ".join(shlex.quote(p) for p in parts)


class Studio:
    def __init__(
        self,
        path: str | Path,                       # a run directory or a sweep directory
        directions: tuple = (),                 # direction files (.pt/.npy) besides the shipped boundaries
        components: int = 5,                    # GANSpace sliders: the first K principal components (0: none)
        pca: Optional[str] = None,              # an official PCA file; None = fitted on the generator (cached)
        pca_samples: int = 100_000,             # samples of the fitted PCA
        generator: Optional[str] = None,        # the base generator, when not where the run found it
        device: str = "cpu",
    ):
        self.run = FinishedRun(path, generator, device)
        self.direction_files = [str(Path(d).expanduser().resolve()) for d in directions]
        self.components, self.pca, self.pca_samples = components, pca, pca_samples
        self.generator = generator
        self.labels = [self.run.label(run_dir, name) for run_dir, name in self.run.images]
        self._where = dict(zip(self.labels, self.run.images))
        self._images: OrderedDict[str, TunedImage] = OrderedDict()  # the latest LOADED_IMAGES, each with its generator
        self._sliders: Optional[list[Slider]] = None
        self._editors: dict[int, MixEditor] = {}   # id(base generator) -> the editor of every slider

    # -- images ---------------------------------------------------------------------------------------

    def image(self, label: str) -> TunedImage:
        """The image of a label, loaded once (BadInputError / CheckpointError, one line, when it cannot be)."""
        if label not in self._where:
            raise BadInputError(f"{self.run.path}: no image {label!r}")
        if label not in self._images:
            self._images[label] = self.run.open(*self._where[label])
            while len(self._images) > LOADED_IMAGES:
                self._images.popitem(last=False)
        self._images.move_to_end(label)
        return self._images[label]

    def metrics(self, label: str) -> dict:
        """{stage: {metric: value}} of the image's inversion and tuning rows."""
        rows = self.image(label).rows
        keys = ("lpips", "mse", "psnr", "ms_ssim", "id_sim")
        return {stage: {k: row.get(k) for k in keys if k in row} for stage, row in rows.items() if row}

    # -- sliders ----------------------------------------------------------------------------------------

    def sliders(self) -> list[Slider]:
        """The directions that apply to the run's generator (the first image that loads decides)."""
        if self._sliders is None:
            base = self.first_image().base
            sliders = [Slider(name, "direction", name, -DIRECTION_RANGE, DIRECTION_RANGE)
                       for name in self.shipped_boundaries(base)]
            for file in self.direction_files:
                load_direction(file, base.w_dim)  # checked now: a file of another W fails on the page at once
                sliders.append(Slider(Path(file).stem, "direction", file, -DIRECTION_RANGE, DIRECTION_RANGE))
            sliders += [Slider(f"pc{k}", "component", k, -COMPONENT_RANGE, COMPONENT_RANGE) for k in range(self.components)]
            self._sliders = sliders
        return self._sliders

    def first_image(self) -> TunedImage:
        problems = []
        for label in self.labels:
            try:
                return self.image(label)
            except (BadInputError, ValueError) as exc:
                problems.append(str(exc))
        raise BadInputError(problems[0] if problems else f"{self.run.path}: the run holds no images")

    @staticmethod
    def shipped_boundaries(base) -> list[str]:
        """The shipped synthfaces InterfaceGAN boundaries, when they were fitted on this generator."""
        data = read_boundaries()
        fitted_on = data.get("generator_fingerprint")
        vectors = data["boundaries"]
        if any(v.numel() != base.w_dim for v in vectors.values()):
            return []
        if fitted_on and fitted_on != generator_fingerprint(base):
            return []
        return sorted(vectors)

    def editor(self, image: TunedImage, sliders: list[Slider], strengths: list[float]) -> MixEditor:
        directions = [(s.source, t) for s, t in zip(sliders, strengths) if s.kind == "direction"]
        components = [(s.source, t) for s, t in zip(sliders, strengths) if s.kind == "component"]
        editor = MixEditor(directions=[d for d, _ in directions], strengths=[t for _, t in directions],
                           components=[k for k, _ in components], component_strengths=[t for _, t in components],
                           pca=self.pca, num_samples=self.pca_samples)
        editor.prepare(image.base)  # as the pipeline prepares editors: on the base generator
        return editor

    def full_editor(self, image: TunedImage) -> MixEditor:
        """One prepared editor of every slider (strengths given per render)."""
        key = id(image.base)
        sliders = self.sliders()
        if key not in self._editors or len(self._editors[key].steps) != len(sliders):
            self._editors[key] = self.editor(image, sliders, [0.0] * len(sliders))
        return self._editors[key]

    def strengths(self, values: dict[str, float]) -> list[float]:
        """Slider values by key -> strengths in slider order (absent: 0); unknown keys are an error."""
        keys = [s.key for s in self.sliders()]
        unknown = sorted(set(values) - set(keys))
        if unknown:
            raise BadInputError(f"no slider {unknown[0]!r}; the sliders are {', '.join(keys)}")
        return [float(values.get(key, 0.0)) for key in keys]

    # -- edits ------------------------------------------------------------------------------------------

    def render(self, label: str, values: dict[str, float]) -> Shot:
        """The edit of the slider values, rendered with the tuned and the original generator."""
        start = time.perf_counter()
        image = self.image(label)
        editor = self.full_editor(image)
        strengths = self.strengths(values)
        with torch.no_grad():
            ws = editor.mix(image.pivot, strengths)
            tuned = to_uint8(image.render(ws).clamp(-1, 1))[0]
            original = to_uint8(image.render(ws, original=True).clamp(-1, 1))[0]
        return Shot(ws, tuned, original, time.perf_counter() - start)

    def styleclip(self, label: str, prompt: str, steps: int = 100,
                  on_step: Optional[Callable[[int, int], None]] = None) -> Slider:
        """Optimise a StyleCLIP offset for `prompt` from the image's pivot through its tuned generator (W
        space, the run's config for editor=styleclip), store it as a direction file and add its slider,
        set to the optimised strength."""
        image = self.image(label)
        overrides = ["editor=styleclip", f"editor.prompt={json.dumps(prompt)}", f"editor.steps={int(steps)}",
                     "editor.space=w"]
        editor = compose_editor(overrides, image.run_dir)
        editor.prepare(image.tuned)
        offset, _ = editor.optimise(image.tuned, image.pivot,
                                    on_step=(lambda step, losses, picture: on_step(step + 1, steps)) if on_step else None)
        vector = offset.reshape(-1).cpu()
        norm = vector.norm().item()
        if not norm > 0:
            raise BadInputError(f"StyleCLIP {prompt!r}: the optimisation did not move the latent")
        slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40] or "prompt"
        file = image.run_dir / STUDIO_DIR / "directions" / f"styleclip-{slug}-{image.name}.pt"
        save_torch((vector / norm)[None], file)  # PTI's direction layout: [1, w_dim], unit length
        slider = Slider(f"styleclip: {prompt} ({image.name})", "direction", str(file.resolve()),
                        -2 * norm, 2 * norm, value=norm)
        self._sliders = [s for s in self.sliders() if s.key != slider.key] + [slider]
        return slider

    def save(self, label: str, values: dict[str, float]) -> Path:
        """Write RUN/studio/<image>-NNN/: edit.png (tuned), original.png, latent.pt and recipe.json."""
        image = self.image(label)
        shot = self.render(label, values)
        strengths = self.strengths(values)
        used = [(s, t) for s, t in zip(self.sliders(), strengths) if t != 0]
        folder = self.next_folder(image)
        directions = [(s.source, t) for s, t in used if s.kind == "direction"]
        components = [(s.source, t) for s, t in used if s.kind == "component"]
        overrides = ["editor=mix"]
        if directions:
            overrides += [format_override("editor.directions", [d for d, _ in directions]),
                          format_override("editor.strengths", [t for _, t in directions])]
        if components:
            overrides += [format_override("editor.components", [k for k, _ in components]),
                          format_override("editor.component_strengths", [t for _, t in components]),
                          f"editor.num_samples={self.pca_samples}"]
            if self.pca:
                overrides.append(f"editor.pca={json.dumps(str(Path(self.pca).resolve()))}")
        save_png(shot.tuned, folder / "edit.png")
        save_png(shot.original, folder / "original.png")
        save_torch(shot.ws.cpu(), folder / "latent.pt")
        recipe = {
            "image": image.name,
            "image_dir": str(image.dir.resolve()),
            "edits": [{"slider": s.key, "kind": s.kind, "source": s.source, "strength": t} for s, t in used],
            "editor_overrides": overrides if used else [],
            "replay": replay_command(image.dir.resolve(), overrides, folder.resolve() / "replay", self.generator)
            if used else None,
            "files": {"edit": "edit.png", "original": "original.png", "latent": "latent.pt"},
        }
        write_json(folder / RECIPE_FILE, recipe)
        return folder

    def animate(self, label: str, values: dict[str, float], frames: int = 41, fps: float = 15) -> Path:
        """An MP4 of the slider values swept from -1x to +1x (RUN/animations/<image>-studio-NNN.mp4)."""
        image = self.image(label)
        used = [(s.key, t) for s, t in zip(self.sliders(), self.strengths(values)) if t != 0]
        if not used:
            raise BadInputError("move a slider first: the animation sweeps the edit from -1x to +1x")
        shot = self.render(label, values)
        name = "[" + ",".join(f"{key}{t:+.2f}" for key, t in used) + "] x"  # captions read "[smile+3.00] x -0.50"
        taken = len(list((image.run_dir / ANIMATIONS_DIR).glob(f"{image.name}-studio-*.mp4")))
        out = image.run_dir / ANIMATIONS_DIR / f"{image.name}-studio-{taken + 1:03d}.mp4"
        return write_video(sweep_frames(image, shot.ws, name, 1.0, frames), out, fps)

    @staticmethod
    def next_folder(image: TunedImage) -> Path:
        root = image.run_dir / STUDIO_DIR
        taken = [int(m.group(1)) for p in root.glob(f"{image.name}-*") if (m := re.search(r"-(\d+)$", p.name))]
        return root / f"{image.name}-{max(taken, default=0) + 1:03d}"
