"""The one loop of a run: groups of images through inversion, tuning and editing.

image -> inverter -> pivot -> tuner -> tuned generator -> editor -> metrics -> recorder.

Images come in groups: one image per group in single mode (each image tunes a generator of its
own), K per group with batch_size=K, all images in one group in multi-ID mode (one generator tuned
for all). Within a group every stage runs for every image before the next stage starts; with K > 1
the images a stage still has to do go through it as one batch (invert_batch, tune_batch: each image
as if alone, its own generator, early stop and failure), with the same files and rows as one at a
time. Each stage is written down per image before it counts as done:

  inversion  images/<name>/{target,inversion}.png and pivot.pt, then its results row (an
             inversion made before by any run, same generator, image, settings and seed, is
             taken from the pivot cache: `reused` in the row, `seconds` what it cost then)
  tuning     the tuned generator (images/<name>/tuned_G.pt, or tuned_G.pt of the run in multi-ID
             mode), images/<name>/tuned_pivot.pt and tuned.png, then the rows
  edit       one row per edit, then images/<name>/edits.png (written last: it marks the image done)

so a re-run into the same directory redoes nothing that was finished, and an interrupted stage is
redone whole. A stage that fails for one image (bad input, a NaN loss) records the image in
failed.json and the other images go on; in multi-ID mode an image whose own loss turns non-finite is
left out and the group tuned again without it, any other failed tuning fails the whole group.
"""

import copy
import logging
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, Optional

import torch

from pti_lab.batch_memory import BatchMemory
from pti_lab.config import MODES
from pti_lab.data import Sample
from pti_lab.editing.editor import Editor
from pti_lab.errors import PTILabError
from pti_lab.inversion.pivot_cache import PivotCache
from pti_lab.inversion.projector import Inversion
from pti_lab.metrics.drift import locality_drift
from pti_lab.metrics.run_metrics import RunMetrics
from pti_lab.models.delta import load_tuned, save_tuned
from pti_lab.models.fingerprint import generator_fingerprint
from pti_lab.models.stylegan2 import Generator
from pti_lab.tracking.recorder import Recorder
from pti_lab.tracking.store import image_grid
from pti_lab.tuning.pivotal import Tuning

log = logging.getLogger(__name__)

PIVOT_FILE = "pivot.pt"               # per image: the inverted latent
TUNED_FILE = "tuned_G.pt"             # the tuned generator as a delta against the base
TUNED_PIVOT_FILE = "tuned_pivot.pt"   # per image: the pivot after tuning (moved by joint tuning)
EDITS_FILE = "edits.png"              # per image: the grid of edits, written after all its edit rows


@dataclass
class Stages:
    """The components a run is made of, built from the config."""
    generator: Generator                 # the base generator (never modified)
    inverter: object                     # image -> pivot: invert(G, target, seed, on_step) -> Inversion
    perceptual: torch.nn.Module          # LPIPS of the tuning loss
    identity: Optional[torch.nn.Module]  # face identity for id_sim; None = not measured
    tuner: Optional[object] = None       # pivot -> tuned generator: tune(...) -> Tuning; None = no tuning
    regularizer: Optional[object] = None  # locality regulariser of the tuning; None = none
    editor: Optional[Editor] = None      # latent edits of the pivots; None = no editing
    metrics: RunMetrics = field(default_factory=RunMetrics)  # reconstruction and edit metrics


@dataclass
class Progress:
    """Images done so far and their time, for the progress line and its ETA."""
    total: Optional[int]   # images in the data set (None = unknown)
    seen: int = 0          # images handled, finished earlier ones included
    worked: int = 0        # images this process worked on
    seconds: float = 0.0   # spent on those

    def advance(self, names: list[str], seconds: float) -> str:
        """Count a finished group and return the progress line that reports it."""
        self.seen += len(names)
        self.worked += len(names)
        self.seconds += seconds
        total = "?" if self.total is None else self.total
        text = f"[{self.seen}/{total}] {', '.join(names)}: {seconds:.1f} s"
        if self.total is not None and self.seen < self.total:
            remaining = self.seconds / self.worked * (self.total - self.seen)
            text += f"; ETA {format_duration(remaining)}"
        return text


def format_duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while group := list(islice(iterator, size)):
        yield group


def synthesize(G: Generator, ws: torch.Tensor, transform: Optional[torch.Tensor] = None) -> torch.Tensor:
    """G's image of ws; transform: a StyleGAN3 input transform for this image (an edit's), None = G's own."""
    with torch.no_grad():
        return G.synthesis(ws, noise_mode="const", **({} if transform is None else {"transform": transform}))


class Driver:
    def __init__(
        self,
        stages: Stages,          # the run's components
        recorder: Recorder,      # where every row, picture and loss goes
        mode: str = "single",    # 'single': a generator per image; 'multi': one generator for all images
        batch_size: int = 1,     # images per group in single mode
        seed: int = 0,           # seed of every inversion and of the locality drift's latents
        pivot_cache: Optional[PivotCache] = None,  # inversions shared between runs; None = always invert
        base_sha256: Optional[str] = None,         # the generator's fingerprint, if the caller has it
    ):
        assert mode in MODES and batch_size >= 1
        self.stages, self.recorder, self.store = stages, recorder, recorder.store
        self.G = stages.generator
        self.device = next(self.G.parameters()).device
        self.mode, self.batch_size, self.seed = mode, batch_size, seed
        self.pivot_cache = pivot_cache
        self.base_sha256 = base_sha256 or generator_fingerprint(self.G)  # names the base of every stored delta

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, samples: Iterable[Sample], total: Optional[int] = None) -> dict:
        """Every sample through every stage; returns what the summary adds (multi-ID: the drift)."""
        readable = self.readable(samples)
        groups = [list(readable)] if self.mode == "multi" else batched(readable, self.batch_size)
        progress, extra = Progress(total), {}
        for group in groups:
            if not group:
                continue
            if self.mode == "single":
                group = self.unfinished(group, progress)
                if not group:
                    continue
            self.recorder.start_group(self.device)  # rows of this group carry its peak memory
            start = time.perf_counter()
            tuned = self.process(group)
            if self.mode == "multi" and tuned is not None:
                extra["locality"] = locality_drift(self.G, tuned, self.stages.metrics.eval_size, seed=self.seed)
            log.info("%s", progress.advance([sample.name for sample in group], time.perf_counter() - start))
        return extra

    def readable(self, samples: Iterable[Sample]) -> Iterator[Sample]:
        for sample in samples:
            if sample.image is None:
                self.recorder.unreadable(sample.name, sample.error)
            else:
                yield sample

    def unfinished(self, group: list[Sample], progress: Progress) -> list[Sample]:
        todo = []
        for sample in group:
            if self.finished(sample.name):
                log.info("%s: already done, skipped", sample.name)
                progress.seen += 1
            else:
                todo.append(sample)
        return todo

    def finished(self, name: str) -> bool:
        """Whether an earlier run did all of this image's work."""
        if self.stages.editor is not None:
            return self.edited(name)
        return self.store.done(name, "tuning" if self.stages.tuner is not None else "inversion") is not None

    def edited(self, name: str) -> bool:
        """Whether the image's edits are done (edits.png is written after all its edit rows)."""
        return (self.store.image_dir(name) / EDITS_FILE).is_file()

    memory_checked = False  # whether the memory a batch of batch_size images needs was measured

    def process(self, group: list[Sample]) -> Optional[Generator]:
        """All stages for one group; returns the generator tuned for the whole group in multi-ID mode."""
        if self.mode == "single" and self.batch_size > 1 and not self.memory_checked:
            self.check_batch_memory()
        targets = {sample.name: sample.image.to(self.device) for sample in group}
        pivots, generators = self.invert_all(targets), {}
        shared = None
        if self.stages.tuner is not None and self.mode == "single":
            generators = self.tune_each(targets, pivots)
        elif self.stages.tuner is not None and pivots:
            shared, generators = self.tune_group(targets, pivots)
        if self.stages.editor is not None:
            for name, pivot in pivots.items():
                if self.edited(name):
                    continue
                try:
                    self.edit(name, targets[name], pivot, generators.get(name, self.G))
                except PTILabError as exc:
                    self.recorder.failure(name, "edit", exc)
        return shared

    # -- the stages -------------------------------------------------------------------------------

    def measure(self, target: torch.Tensor, reconstruction: torch.Tensor) -> dict:
        return self.stages.metrics.reconstruction(target, reconstruction.clamp(-1, 1), self.stages.identity)

    def invert_all(self, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each image's pivot [1, num_ws, w_dim]: stored by an earlier run, taken from the pivot cache,
        or inverted now, batch_size images per batch when the inverter can batch (invert_batch). An image
        whose inversion fails is recorded in failed.json and left out; the others go on."""
        pivots, todo = {}, []
        for name, target in targets.items():
            pivot_file = self.store.image_dir(name) / PIVOT_FILE
            if self.store.done(name, "inversion") and pivot_file.is_file():
                pivots[name] = torch.load(pivot_file, weights_only=True).to(self.device)
                continue
            cached = self.pivot_cache.get(target) if self.pivot_cache is not None else None
            if cached is None:
                todo.append(name)
                continue
            try:
                pivots[name] = self.record_inversion(name, target, cached, reused=True)
            except PTILabError as exc:
                self.recorder.failure(name, "inversion", exc)
        invert_batch = getattr(self.stages.inverter, "invert_batch", None)
        for chunk in batched(todo, self.batch_size):
            if len(chunk) > 1 and invert_batch is not None:
                results = invert_batch(self.G, [targets[name] for name in chunk], seed=self.seed,
                                       on_steps=[self.recorder.on_step(name, "inversion") for name in chunk])
            else:
                results = [self.invert_one(name, targets[name]) for name in chunk]
            for name, result in zip(chunk, results):
                try:
                    if isinstance(result, PTILabError):
                        raise result
                    if self.pivot_cache is not None:
                        self.pivot_cache.put(targets[name], result)
                    pivots[name] = self.record_inversion(name, targets[name], result, reused=False)
                except PTILabError as exc:
                    self.recorder.failure(name, "inversion", exc)
        return {name: pivots[name] for name in targets if name in pivots}

    def check_batch_memory(self) -> None:
        """Before the first batch: stop the run with a ConfigError (one line) when batch_size images cannot
        be inverted and tuned together in the memory available, rather than run out of it halfway."""
        self.memory_checked = True
        invert_batch = getattr(self.stages.inverter, "invert_batch", None)
        tune_batch = getattr(self.stages.tuner, "tune_batch", None)
        if invert_batch is None and tune_batch is None:
            return
        G = self.G
        w = getattr(G.mapping, "w_avg", torch.zeros([G.w_dim], device=self.device))
        pivot = w.reshape(1, 1, -1).expand(1, G.num_ws, -1)
        target = synthesize(G, pivot).clamp(-1, 1)
        inverter, tuner = copy.copy(self.stages.inverter), copy.copy(self.stages.tuner)
        for stage in (inverter, tuner):  # one step each, quietly, to the end (no early stop)
            if stage is not None:  # no tuner: an inversion-only method
                stage.steps, stage.progress, stage.lpips_threshold = 1, False, 0

        def step(K: int) -> None:
            if invert_batch is not None:
                inverter.invert_batch(G, [target] * K, seed=self.seed)
            if tune_batch is not None:
                tuner.tune_batch(G, [target] * K, [pivot] * K, self.stages.perceptual, self.stages.regularizer)
        # Per image on the host besides autograd's tensors: the tuned copy, its gradient and two Adam moments.
        tuned_bytes = 4 * sum(p.numel() * p.element_size() for p in G.synthesis.parameters()) if tune_batch else 0
        memory = BatchMemory(step, self.device, tuned_bytes)
        log.info("batch_size=%d: memory %s", self.batch_size, memory.describe())
        memory.check(self.batch_size, f"batch_size={self.batch_size}")

    def invert_one(self, name: str, target: torch.Tensor) -> Inversion | PTILabError:
        try:
            return self.stages.inverter.invert(self.G, target, seed=self.seed,
                                               on_step=self.recorder.on_step(name, "inversion"))
        except PTILabError as exc:
            return exc

    def record_inversion(self, name: str, target: torch.Tensor, inversion: Inversion, reused: bool) -> torch.Tensor:
        """Write the image's pivot, pictures and inversion row; return the pivot."""
        pivot = inversion.pivot.to(self.device)
        reconstruction = synthesize(self.G, pivot)
        self.recorder.tensor(name, PIVOT_FILE, pivot)
        row = {"image": name, "stage": "inversion", **self.measure(target, reconstruction),
               "steps": inversion.steps, "seconds": round(inversion.seconds, 3), "reused": reused}
        self.recorder.result(row, {"target": target, "inversion": reconstruction.clamp(-1, 1)})
        return pivot

    def tune_each(self, targets: dict[str, torch.Tensor], pivots: dict[str, torch.Tensor]) -> dict[str, Generator]:
        """Single mode: a generator per image (stored by an earlier run, or tuned now, batch_size images per
        pass when the tuner can batch: tune_batch). `pivots` is updated with each image's pivot after
        tuning; an image whose tuning fails is recorded in failed.json and removed from `pivots`."""
        generators, todo = {}, []
        for name in list(pivots):
            try:
                stored = self.stored_tuning([name], [pivots[name]], self.store.image_dir(name) / TUNED_FILE)
            except PTILabError as exc:  # e.g. a damaged delta
                self.recorder.failure(name, "tuning", exc)
                del pivots[name]
                continue
            if stored is None:
                todo.append(name)
            else:
                generators[name], (pivots[name],) = stored
        tune_batch = getattr(self.stages.tuner, "tune_batch", None)
        for chunk in batched(todo, self.batch_size):
            if len(chunk) > 1 and tune_batch is not None:
                results = tune_batch(self.G, [targets[n] for n in chunk], [pivots[n] for n in chunk],
                                     self.stages.perceptual, self.stages.regularizer,
                                     on_steps=[self.recorder.on_step(name, "tuning") for name in chunk])
            else:
                results = [self.tune_one(name, targets[name], pivots[name]) for name in chunk]
            for name, result in zip(chunk, results):
                try:
                    if isinstance(result, PTILabError):
                        raise result
                    generators[name], (pivots[name],) = self.record_tuning(
                        [name], [targets[name]], result, self.store.image_dir(name) / TUNED_FILE)
                except PTILabError as exc:
                    self.recorder.failure(name, "tuning", exc)
                    del pivots[name]
        return generators

    def tune_one(self, name: str, target: torch.Tensor, pivot: torch.Tensor) -> Tuning | PTILabError:
        try:
            return self.stages.tuner.tune(self.G, target, pivot, self.stages.perceptual, self.stages.regularizer,
                                          on_step=self.recorder.on_step(name, "tuning"))
        except PTILabError as exc:
            return exc

    def tune_group(self, targets: dict[str, torch.Tensor],
                   pivots: dict[str, torch.Tensor]) -> tuple[Optional[Generator], dict[str, Generator]]:
        """Multi-ID: one generator tuned for every image of `pivots` (updated with their pivots after
        tuning). An image whose own loss turns non-finite is recorded in failed.json and the group is
        tuned again without it; any other failure fails the group."""
        names = list(pivots)
        while names:
            try:
                shared, moved = self.tune(names, [targets[n] for n in names], [pivots[n] for n in names],
                                          self.store.run_dir / TUNED_FILE)
            except PTILabError as exc:
                culprits = [names[i] for i in getattr(exc, "images", ())] or names
                for name in culprits:
                    self.recorder.failure(name, "tuning", exc)
                    del pivots[name]
                names = [name for name in names if name not in culprits]
                if names:
                    log.info("multi-ID tuning again without %s", ", ".join(culprits))
                continue
            pivots.update(zip(names, moved))
            return shared, dict.fromkeys(names, shared)
        return None, {}

    def tune(self, names: list[str], targets: list[torch.Tensor], pivots: list[torch.Tensor],
             delta_file: Path) -> tuple[Generator, list[torch.Tensor]]:
        """One generator tuned for all of `names` (multi-ID; stored by an earlier run when every image
        has its row), and each image's pivot after tuning (joint tuning moves them)."""
        stored = self.stored_tuning(names, pivots, delta_file)
        if stored is not None:
            if len(names) > 1:
                log.info("all %d images already tuned together, skipped", len(names))
            return stored
        label = names[0] if len(names) == 1 else f"multi-ID ({len(names)} images)"
        tuning = self.stages.tuner.tune(self.G, torch.cat(targets), torch.cat(pivots), self.stages.perceptual,
                                        self.stages.regularizer, on_step=self.recorder.on_step(label, "tuning"))
        return self.record_tuning(names, targets, tuning, delta_file)

    def stored_tuning(self, names: list[str], pivots: list[torch.Tensor],
                      delta_file: Path) -> Optional[tuple[Generator, list[torch.Tensor]]]:
        """The generator an earlier run tuned for `names` and their pivots after it, when every image has
        its tuning row; else None."""
        if not (delta_file.is_file() and all(self.store.done(name, "tuning") for name in names)):
            return None
        moved = [self.stored_tuned_pivot(name, pivot) for name, pivot in zip(names, pivots)]
        return load_tuned(delta_file, self.G), moved

    def record_tuning(self, names: list[str], targets: list[torch.Tensor], tuning: Tuning,
                      delta_file: Path) -> tuple[Generator, list[torch.Tensor]]:
        """Write the tuned generator (a delta against the base), each image's pivot after tuning, picture and
        row; return the generator and those pivots."""
        save_tuned(tuning.generator, self.G, delta_file, latents=tuning.pivots, base_sha256=self.base_sha256)
        moved = list(tuning.pivots.split(1))
        for name, target, pivot in zip(names, targets, moved):
            self.recorder.tensor(name, TUNED_PIVOT_FILE, pivot)
            reconstruction = synthesize(tuning.generator, pivot)
            row = {"image": name, "stage": "tuning", **self.measure(target, reconstruction),
                   "steps": tuning.steps, "stopped_early": tuning.stopped_early,
                   "seconds": round(tuning.seconds / len(names), 3)}
            self.recorder.result(row, {"tuned": reconstruction.clamp(-1, 1)})
        return tuning.generator, moved

    def stored_tuned_pivot(self, name: str, pivot: torch.Tensor) -> torch.Tensor:
        """The pivot stored after tuning (runs older than that file: the inversion's)."""
        file = self.store.image_dir(name) / TUNED_PIVOT_FILE
        return torch.load(file, weights_only=True).to(self.device) if file.is_file() else pivot

    def edit(self, name: str, target: torch.Tensor, pivot: torch.Tensor, tuned: Generator) -> None:
        """Edit the pivot; score each edit rendered with `tuned` and, for comparison, the original G."""
        start = time.perf_counter()
        editing = self.stages.editor.edits(tuned, pivot, on_step=self.recorder.on_step(name, "edit"))
        scores = self.stages.metrics.edits
        compare = tuned is not self.G
        reconstruction = synthesize(tuned, pivot).clamp(-1, 1)
        original_reconstruction = synthesize(self.G, pivot).clamp(-1, 1) if compare else None
        rows, top, bottom = [], [target, reconstruction], [target, original_reconstruction]
        for edit in editing.edits:
            image = synthesize(tuned, edit.ws, edit.transform).clamp(-1, 1)
            row = {"image": name, "stage": "edit", "edit": edit.name, "strength": edit.strength,
                   **scores.measure(target, reconstruction, image, self.stages.identity, edit.attributes)}
            pictures = {"edit": image}
            if compare:
                original = synthesize(self.G, edit.ws, edit.transform).clamp(-1, 1)
                measured = scores.measure(target, original_reconstruction, original, self.stages.identity,
                                          edit.attributes)
                reasons = {f"original_{key}": why for key, why in measured.pop("reasons", {}).items()}
                row.update({f"original_{key}": value for key, value in measured.items()})
                if reasons:
                    row["reasons"] = {**row.get("reasons", {}), **reasons}
                pictures["original"] = original
                bottom.append(original)
            top.append(image)
            rows.append((row, pictures))
        seconds = (time.perf_counter() - start) / max(len(rows), 1)
        for row, pictures in rows:
            row["seconds"] = round(seconds, 3)
            self.recorder.result(row, pictures, save=False)
        self.recorder.grid(name, EDITS_FILE, image_grid(torch.cat(top + bottom if compare else top), columns=len(top)))
