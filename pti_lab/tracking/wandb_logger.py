"""Weights & Biases logging that never fails a run.

The local results store (results.jsonl, summary.json, PNGs) is always written; W&B is an extra view
of the same numbers. If W&B cannot start online (no API key, no network, a misconfiguration) the run
falls back to offline, then to nothing, with a warning; if a later W&B call raises, that is logged
once and W&B logging stops. wandb is imported only when a run starts: importing it costs most of a
second.
"""

import json
import logging
import os
import socket
from typing import Any, Optional
from urllib.parse import urlparse

import numpy as np
import torch

from pti_lab.tracking.store import to_uint8

log = logging.getLogger(__name__)

MODES = ("online", "offline", "disabled")


def server_reachable(base_url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the W&B server opens; wandb itself retries for tens of seconds."""
    url = urlparse(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
        return True
    except (OSError, TypeError, ValueError):
        return False


class NullLogger:
    """logger=none: logs nothing."""

    def start(self, config: dict, run_dir: str, name: str, group: Optional[str] = None, job_type: str = "pti") -> None:
        pass

    def log_losses(self, image: str, stage: str, step: int, losses: dict) -> None:
        pass

    def log_result(self, row: dict, images: dict[str, torch.Tensor]) -> None:
        pass

    def log_image(self, key: str, pixels: np.ndarray) -> None:
        pass

    def log_summary(self, summary: dict) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbLogger(NullLogger):
    def __init__(
        self,
        project: str = "pti-lab",      # W&B project
        entity: Optional[str] = None,  # W&B user or team; None = the API key's default
        mode: Optional[str] = None,    # online | offline | disabled; None = $WANDB_MODE, else online
        tags: Any = (),                # run tags
        log_every: int = 10,           # log losses every this many optimisation steps
    ):
        mode = mode or os.environ.get("WANDB_MODE") or "online"
        if mode not in MODES:
            raise ValueError(f"logger.mode={mode!r}: expected one of {MODES}")
        self.project, self.entity, self.mode = project, entity, mode
        self.tags, self.log_every = list(tags), max(1, int(log_every))
        self.run = None                          # the wandb run; None while none is open
        self.stopped = False                     # a W&B call failed: log nothing more
        self.rows: list[tuple[dict, dict]] = []  # (results row, {column: wandb.Image}) for the table
        self.stage_steps: dict[str, int] = {}    # stage -> steps seen so far, over all images

    def start(self, config: dict, run_dir: str, name: str, group: Optional[str] = None, job_type: str = "pti") -> None:
        """Start the W&B run in `mode`, else offline, else not at all. Offline runs live in run_dir/wandb."""
        if self.mode == "disabled":
            return
        try:
            import wandb
        except ImportError as exc:
            log.warning("W&B logging off: cannot import wandb (%s)", exc)
            return
        modes = list(MODES[MODES.index(self.mode):-1])  # the configured mode, then offline
        base_url = wandb.Settings().base_url
        if modes[0] == "online" and not server_reachable(base_url):
            log.warning("W&B server %s unreachable; logging offline to %s", base_url, os.path.join(run_dir, "wandb"))
            modes.pop(0)
        os.makedirs(run_dir, exist_ok=True)
        for mode in modes:
            try:
                self.run = wandb.init(project=self.project, entity=self.entity, mode=mode, dir=run_dir,
                                      config=config, name=name, group=group, job_type=job_type, tags=self.tags,
                                      reinit="finish_previous", settings=wandb.Settings(console="off"))
                self.mode = mode
                break
            except Exception as exc:  # no failure to start W&B may stop the run
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning("W&B %s init failed (%s: %s); falling back to %s", mode, type(exc).__name__, first,
                            "offline" if mode == "online" else "no W&B logging")
        self.wandb = wandb
        self._guard("define_metric", self._define_stage_metrics)

    def _define_stage_metrics(self) -> None:
        # Each stage's losses plot against that stage's own step count.
        for stage in ("inversion", "tuning", "edit"):
            self.run.define_metric(f"{stage}/step")
            self.run.define_metric(f"{stage}/*", step_metric=f"{stage}/step")

    def _guard(self, what: str, fn, *args) -> None:
        """fn(*args) while a run is open; on any W&B error warn once and stop logging, so the run goes on."""
        if self.run is None or self.stopped:
            return
        try:
            fn(*args)
        except Exception as exc:
            log.warning("W&B %s failed (%s: %s); W&B logging stops, local results continue",
                        what, type(exc).__name__, exc)
            self.stopped = True

    def log_losses(self, image: str, stage: str, step: int, losses: dict) -> None:
        """Every `log_every` steps: losses as `<stage>/<name>` against `<stage>/step`, counted over all images."""
        self.stage_steps[stage] = self.stage_steps.get(stage, 0) + 1
        if self.run is None or self.stopped or step % self.log_every:
            return
        data = {f"{stage}/{key}": float(value) for key, value in losses.items()}
        data.update({f"{stage}/step": self.stage_steps[stage], f"{stage}/image_step": step})
        self._guard("log", lambda: self.run.log(data))

    def log_result(self, row: dict, images: dict[str, torch.Tensor]) -> None:
        """Keep one results row and its images ([1, C, R, R] in [-1, 1]) for the table logged at finish."""
        def keep() -> None:
            pictures = {key: self.wandb.Image(to_uint8(image)[0]) for key, image in images.items()}
            self.rows.append((dict(row), pictures))

        self._guard("image", keep)

    def results_table(self):
        """A wandb.Table of the kept rows: identity columns, the other row keys, then images (missing = None)."""
        row_keys, picture_keys = [], []
        for row, pictures in self.rows:
            row_keys += [key for key in row if key not in row_keys]
            picture_keys += [key for key in pictures if key not in picture_keys]
        first = [key for key in ("image", "stage", "edit", "strength") if key in row_keys]
        columns = first + [key for key in row_keys if key not in first] + picture_keys
        table = self.wandb.Table(columns=columns)
        for row, pictures in self.rows:
            cells = {**row, **pictures}
            # Tables hold scalars and media; nested values such as `reasons` go in as JSON text.
            table.add_data(*[json.dumps(cells.get(key)) if isinstance(cells.get(key), (dict, list)) else cells.get(key)
                             for key in columns])
        return table

    def log_image(self, key: str, pixels: np.ndarray) -> None:
        """Log one uint8 [H, W, C] picture (e.g. an image's grid of edits) under `key`."""
        self._guard("image", lambda: self.run.log({key: self.wandb.Image(pixels)}))

    def log_summary(self, summary: dict) -> None:
        self._guard("summary", lambda: self.run.summary.update(summary))

    def finish(self) -> None:
        """Log the results table and close the run (an offline run is complete on disk afterwards)."""
        if self.rows:
            self._guard("table", lambda: self.run.log({"results": self.results_table()}))
        run, self.run, self.rows = self.run, None, []
        if run is None:
            return
        try:
            run.finish()
        except Exception as exc:
            log.warning("W&B finish failed (%s: %s)", type(exc).__name__, exc)
