"""The one loop of a run: groups of images through inversion, tuning and editing.

image -> inverter -> pivot -> tuner -> tuned generator -> editor -> metrics -> recorder.

Images come in groups: one image per group in single mode (each image tunes a generator of its
own), K per group with batch_size=K, all images in one group in multi-ID mode (one generator tuned
for all). Within a group every stage runs for every image before the next stage starts; the images a
stage still has to do go through it K at a time (`invert_batch`, `tune_batch`: each image as if alone,
pti_lab/stages.py). Each stage writes an image's files and then its row (pti_lab/tracking/stage_files.py),
so a re-run into the same directory redoes nothing that was finished, and an interrupted stage is
redone whole. An inversion made before by any run (same generator, image, settings and seed) is taken
from the pivot cache.

Failures: a stage that fails for one image (bad input, a NaN loss) records the image in failed.json and
the other images go on; in multi-ID mode an image whose own loss turns non-finite is left out and the
group tuned again without it, any other failed tuning fails the whole group.
"""

import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional, TypeVar

import torch

from pti_lab.batching.memory import check_batch_memory
from pti_lab.batching.stacked import batched
from pti_lab.config import MODES
from pti_lab.data import Sample
from pti_lab.errors import NonFiniteLossError, PTILabError
from pti_lab.inversion.pivot_cache import PivotCache
from pti_lab.metrics.drift import locality_drift
from pti_lab.models.fingerprint import generator_fingerprint
from pti_lab.models.stylegan2 import Generator
from pti_lab.stages import Stages
from pti_lab.tracking.recorder import Recorder
from pti_lab.tracking.stage_files import StageFiles

log = logging.getLogger(__name__)

Result = TypeVar("Result")


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
        self.stages, self.recorder, self.G = stages, recorder, stages.generator
        self.device = next(self.G.parameters()).device
        self.mode, self.batch_size, self.seed = mode, batch_size, seed
        self.pivot_cache = pivot_cache
        self.files = StageFiles(recorder, self.G, stages.metrics, stages.identity,
                                base_sha256 or generator_fingerprint(self.G))  # names the base of every stored delta
        self.memory_checked = mode == "multi" or batch_size == 1  # a batch's memory is checked before the first

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, samples: Iterable[Sample], total: Optional[int] = None) -> dict:
        """Every sample through every stage; returns what the summary adds (multi-ID: the drift)."""
        readable = self.readable(samples)
        groups = [list(readable)] if self.mode == "multi" else batched(readable, self.batch_size)
        progress, extra = Progress(total), {}
        for group in groups:
            if self.mode == "single":
                group = self.unfinished(group, progress)
            if not group:
                continue
            self.recorder.start_group(self.device)  # rows of this group carry its peak memory
            start = time.perf_counter()
            tuned = self.process(group)
            if tuned is not None:
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
            return self.files.edited(name)
        return self.recorder.store.done(name, "tuning" if self.stages.tuner is not None else "inversion") is not None

    def process(self, group: list[Sample]) -> Optional[Generator]:
        """All stages for one group; returns the generator tuned for the whole group in multi-ID mode."""
        if not self.memory_checked:
            s = self.stages
            check_batch_memory(self.G, s.inverter, s.tuner, s.perceptual, s.regularizer, self.batch_size, self.seed)
            self.memory_checked = True
        targets = {sample.name: sample.image.to(self.device) for sample in group}
        pivots = self.invert(targets)
        shared, generators = None, {}
        if self.stages.tuner is not None and pivots:
            if self.mode == "single":
                generators = self.tune_each(targets, pivots)
            else:
                shared, generators = self.tune_together(targets, pivots)
        if self.stages.editor is not None:
            for name, pivot in pivots.items():
                if not self.files.edited(name):
                    self.edit(name, targets[name], pivot, generators.get(name, self.G))
        return shared

    def recorded(self, name: str, stage: str, result: object | PTILabError,
                 record: Callable[[object], Result]) -> Optional[Result]:
        """record(result), unless the stage failed the image (its error in place of its result) or the
        recording does: then the image goes to failed.json, the others go on, and None is returned."""
        if not isinstance(result, PTILabError):
            try:
                return record(result)
            except PTILabError as error:
                result = error
        self.recorder.failure(name, stage, result)
        return None

    # -- the stages -------------------------------------------------------------------------------

    def invert(self, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each image's pivot [1, num_ws, w_dim]: stored by an earlier run, taken from the pivot cache, or
        inverted now, batch_size images at a time. An image whose inversion fails is left out."""
        pivots, todo = {}, []
        for name, target in targets.items():
            stored = self.files.stored_pivot(name)
            cached = self.pivot_cache.get(target) if stored is None and self.pivot_cache is not None else None
            if stored is not None:
                pivots[name] = stored
            elif cached is not None:
                pivots[name] = self.recorded(name, "inversion", cached,
                                             lambda inversion: self.files.inversion(name, target, inversion, reused=True))
            else:
                todo.append(name)
        for chunk in batched(todo, self.batch_size):
            results = self.stages.inverter.invert_batch(self.G, [targets[name] for name in chunk], self.seed,
                                                        [self.recorder.on_step(name, "inversion") for name in chunk])
            for name, result in zip(chunk, results):
                pivots[name] = self.recorded(name, "inversion", result, lambda inversion: self.new_inversion(
                    name, targets[name], inversion))
        return {name: pivots[name] for name in targets if pivots.get(name) is not None}

    def new_inversion(self, name: str, target: torch.Tensor, inversion) -> torch.Tensor:
        if self.pivot_cache is not None:
            self.pivot_cache.put(target, inversion)
        return self.files.inversion(name, target, inversion, reused=False)

    def tune_each(self, targets: dict[str, torch.Tensor], pivots: dict[str, torch.Tensor]) -> dict[str, Generator]:
        """Single mode: a generator per image, stored by an earlier run or tuned now, batch_size images at a
        time. `pivots` is updated with each image's pivot after tuning; an image whose tuning fails is
        removed from it."""
        generators, todo = {}, []
        for name in list(pivots):
            try:
                stored = self.files.stored_tuning([name], [pivots[name]], self.files.delta_file(name))
            except PTILabError as error:  # e.g. a damaged delta
                self.recorder.failure(name, "tuning", error)
                del pivots[name]
                continue
            if stored is None:
                todo.append(name)
            else:
                generators[name], (pivots[name],) = stored
        for chunk in batched(todo, self.batch_size):
            results = self.stages.tuner.tune_batch(
                self.G, [targets[name] for name in chunk], [pivots[name] for name in chunk], self.stages.perceptual,
                self.stages.regularizer, [self.recorder.on_step(name, "tuning") for name in chunk])
            for name, result in zip(chunk, results):
                tuned = self.recorded(name, "tuning", result, lambda tuning: self.files.tuning(
                    [name], [targets[name]], tuning, self.files.delta_file(name)))
                if tuned is None:
                    del pivots[name]
                else:
                    generators[name], (pivots[name],) = tuned
        return generators

    def tune_together(self, targets: dict[str, torch.Tensor],
                      pivots: dict[str, torch.Tensor]) -> tuple[Optional[Generator], dict[str, Generator]]:
        """Multi-ID: one generator tuned for every image of `pivots` (updated with their pivots after
        tuning). An image whose own loss turns non-finite is recorded in failed.json and the group is
        tuned again without it; any other failure fails the group."""
        names, delta_file = list(pivots), self.files.delta_file(None)
        while names:
            group_targets, group_pivots = [targets[n] for n in names], [pivots[n] for n in names]
            try:
                stored = self.files.stored_tuning(names, group_pivots, delta_file)
                if stored is not None:
                    log.info("all %d images already tuned together, skipped", len(names))
                    shared, moved = stored
                else:
                    label = names[0] if len(names) == 1 else f"multi-ID ({len(names)} images)"
                    tuning = self.stages.tuner.tune(self.G, torch.cat(group_targets), torch.cat(group_pivots),
                                                    self.stages.perceptual, self.stages.regularizer,
                                                    on_step=self.recorder.on_step(label, "tuning"))
                    shared, moved = self.files.tuning(names, group_targets, tuning, delta_file)
            except PTILabError as error:
                culprits = [names[i] for i in error.images] if isinstance(error, NonFiniteLossError) else []
                for name in culprits or names:
                    self.recorder.failure(name, "tuning", error)
                    del pivots[name]
                names = [name for name in names if name in pivots]
                if names:
                    log.info("multi-ID tuning again without %s", ", ".join(culprits))
                continue
            pivots.update(zip(names, moved))
            return shared, dict.fromkeys(names, shared)
        return None, {}

    def edit(self, name: str, target: torch.Tensor, pivot: torch.Tensor, tuned: Generator) -> None:
        """Edit the pivot; score each edit rendered with `tuned` and, for comparison, the original G."""
        start = time.perf_counter()
        try:
            editing = self.stages.editor.edits(tuned, pivot, on_step=self.recorder.on_step(name, "edit"))
            self.files.edits(name, target, pivot, tuned, editing, start)
        except PTILabError as error:
            self.recorder.failure(name, "edit", error)
