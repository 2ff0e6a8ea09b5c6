"""The one object through which a run records anything: each row, picture, tensor and loss goes to
the local results store and to the logger (W&B or none) together, so neither can miss what the
other got. The store is always written; the logger is an extra view of the same numbers.
"""

import json
import logging
from typing import Optional, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from pti_lab.config import check_contract
from pti_lab.errors import DiskFullError
from pti_lab.steps import StepCallback
from pti_lab.tracking.memory import PEAK_MEMORY_KEY, PeakMemory, peak_memory_summary
from pti_lab.tracking.store import RunStore, save_png

log = logging.getLogger(__name__)


@runtime_checkable
class Logger(Protocol):
    """The contract of a logger (conf/logger; pti_lab/tracking/wandb_logger.py): an extra view of what the
    store gets. A logger problem never stops a run: the logger handles its own failures."""

    def start(self, config: dict, run_dir: str, name: str, group: Optional[str] = None, tags: Sequence[str] = (),
              job_type: str = "pti") -> None: ...

    def log_step(self, image: str, stage: str, step: int, losses: dict[str, float],
                 renders: Optional[torch.Tensor] = None) -> None: ...

    def log_result(self, row: dict, pictures: dict[str, torch.Tensor]) -> None: ...

    def log_image(self, key: str, pixels: np.ndarray) -> None: ...

    def log_summary(self, summary: dict) -> None: ...

    def finish(self, run_dir: str) -> None: ...


class Recorder:
    def __init__(
        self,
        store: RunStore,                  # results.jsonl, failed.json, summary.json, images/<name>/
        logger: Optional[Logger] = None,  # W&B; None: logger=none
    ):
        if logger is not None:
            check_contract("logger", logger, Logger)
        self.store = store
        self.logger = logger
        self.memory: Optional[PeakMemory] = None  # the peak memory of the group of images being processed

    def start(self, config: dict, name: str, group: Optional[str], tags: list[str], job_type: str) -> None:
        if self.logger is not None:
            self.logger.start(config=config, run_dir=str(self.store.run_dir), name=name, group=group, tags=tags,
                              job_type=job_type)

    def on_step(self, image: str, stage: str) -> StepCallback:
        """The callback an optimisation of `image` at `stage` reports each step to (live curves)."""
        def report(step: int, losses: dict[str, float], renders: Optional[torch.Tensor]) -> None:
            if self.logger is not None:
                self.logger.log_step(image, stage, step, losses, renders)
        return report

    def start_group(self, device: torch.device) -> None:
        """A group of images starts on `device`: every row recorded until the next group carries the
        peak memory from now (`peak_memory_mb`; pti_lab/tracking/memory.py says what it includes)."""
        if self.memory is None:
            self.memory = PeakMemory(device)
        self.memory.start()

    def with_peak_memory(self, row: dict) -> dict:
        """The row with its group's peak memory so far; an inversion taken from the pivot cache did not
        run here, so its memory is unknown (None with a reason)."""
        if self.memory is None or PEAK_MEMORY_KEY in row:
            return row
        if row.get("reused"):
            reasons = {**row.get("reasons", {}), PEAK_MEMORY_KEY: "inversion taken from the pivot cache: its memory "
                                                                  "was not measured"}
            return {**row, PEAK_MEMORY_KEY: None, "reasons": reasons}
        return {**row, PEAK_MEMORY_KEY: self.memory.peak_mb()}

    def result(self, row: dict, pictures: dict[str, torch.Tensor], save: bool = True) -> None:
        """One results row and its pictures ([1, C, R, R] in [-1, 1]); with `save`, each picture is
        written first as images/<image>/<key>.png, so that a row on disk means its pictures are too.
        Rows of a group (start_group) get its peak memory."""
        row = self.with_peak_memory(row)
        if save:
            for key, picture in pictures.items():
                self.store.save_png(row["image"], f"{key}.png", picture)
        self.store.append(row)
        if self.logger is not None:
            self.logger.log_result(row, pictures)

    def grid(self, image: str, filename: str, pixels: np.ndarray) -> None:
        """A uint8 [H, W, C] picture of one image (e.g. its grid of edits) as images/<image>/<filename>."""
        save_png(pixels, self.store.image_dir(image) / filename)
        if self.logger is not None:
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
        """Write summary.json: the store's means, `extra`, and the peak memory per image (`peak_memory`;
        a resumed run that measured nothing new keeps what its earlier summary said was measured)."""
        earlier = self.store.summary_path.is_file() and json.loads(self.store.summary_path.read_text())
        measure = self.memory.measure if self.memory else ((earlier or {}).get("peak_memory") or {}).get("measure")
        peak = peak_memory_summary(self.store.results(), measure)
        summary = self.store.write_summary(choices, {**extra, **({"peak_memory": peak} if peak else {})})
        if self.logger is not None:
            self.logger.log_summary(summary)
        return summary

    def finish(self) -> None:
        if self.logger is not None:
            self.logger.finish(str(self.store.run_dir))
