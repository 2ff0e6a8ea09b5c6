"""The one object through which a run records anything: each row, picture, tensor and loss goes to
the local results store and to the logger (W&B or none) together, so neither can miss what the
other got. The store is always written; the logger is an extra view of the same numbers.
"""

import logging
from typing import Optional

import numpy as np
import torch

from pti_lab.errors import DiskFullError
from pti_lab.steps import StepCallback
from pti_lab.tracking.store import RunStore, save_png
from pti_lab.tracking.wandb_logger import NullLogger

log = logging.getLogger(__name__)


class Recorder:
    def __init__(
        self,
        store: RunStore,                      # results.jsonl, failed.json, summary.json, images/<name>/
        logger: Optional[NullLogger] = None,  # W&B or nothing
    ):
        self.store = store
        self.logger = logger or NullLogger()

    def start(self, config: dict, name: str, group: Optional[str], tags: list[str], job_type: str) -> None:
        self.logger.start(config=config, run_dir=str(self.store.run_dir), name=name, group=group, tags=tags,
                          job_type=job_type)

    def on_step(self, image: str, stage: str) -> StepCallback:
        """The callback an optimisation of `image` at `stage` reports each step to (live curves)."""
        def report(step: int, losses: dict[str, float], renders: Optional[torch.Tensor]) -> None:
            self.logger.log_step(image, stage, step, losses, renders)
        return report

    def result(self, row: dict, pictures: dict[str, torch.Tensor], save: bool = True) -> None:
        """One results row and its pictures ([1, C, R, R] in [-1, 1]); with `save`, each picture is
        written first as images/<image>/<key>.png, so that a row on disk means its pictures are too."""
        if save:
            for key, picture in pictures.items():
                self.store.save_png(row["image"], f"{key}.png", picture)
        self.store.append(row)
        self.logger.log_result(row, pictures)

    def grid(self, image: str, filename: str, pixels: np.ndarray) -> None:
        """A uint8 [H, W, C] picture of one image (e.g. its grid of edits) as images/<image>/<filename>."""
        save_png(pixels, self.store.image_dir(image) / filename)
        self.logger.log_image(f"{filename.rsplit('.', 1)[0]}/{image}", pixels)

    def tensor(self, image: str, filename: str, tensor: torch.Tensor) -> None:
        self.store.save_tensor(image, filename, tensor)

    def failure(self, image: str, stage: str, error: Exception) -> None:
        if isinstance(error, DiskFullError):
            raise error  # not this image's fault, and every later write would fail too: the run stops
        log.warning("%s: %s failed: %s", image, stage, error)
        self.store.record_failure(image, f"{stage}: {error}")

    def unreadable(self, image: str, reason: str) -> None:
        log.warning("%s: skipped: %s", image, reason)
        self.store.record_failure(image, reason)

    def summary(self, choices: dict, extra: dict) -> dict:
        summary = self.store.write_summary(choices, extra)
        self.logger.log_summary(summary)
        return summary

    def finish(self) -> None:
        self.logger.finish(str(self.store.run_dir))
