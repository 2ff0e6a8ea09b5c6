"""Weights & Biases logging that never fails a run.

The local results store (results.jsonl, summary.json, PNGs) is always written; W&B is an extra view
of the same numbers. If W&B cannot start online (no API key, no network, a misconfiguration) the run
falls back to offline (under run_dir/wandb), then to nothing, with a warning; if a later W&B call
raises, that is logged once and W&B logging stops. wandb is imported only when a run starts:
importing it costs most of a second.

Keys (README "W&B"):

  <stage>/<image>/<loss>      live losses every `log_every` optimisation steps, against the step
  <stage>/<image>/preview     metric <stage>/<image>/step (the image's own optimisation step); a
                              preview of the reconstruction every `preview_every` steps
  results/<stage>/<metric>    one point per results row, against results/step (rows logged so far);
                              summaries min|max (the better end), mean and last, rewritten at finish
                              from results.jsonl so that a resumed run's summary covers every image
  results_table               the results table, rebuilt from results.jsonl at finish
  edits/<image>               grids passed to log_image
  artifact pti-results-<run id> (type pti-results): results.jsonl, summary.json (+ tuned generators)

A sweep's summary run (job_type "summary", in the sweep's group; pti_lab/report/wandb_summary.py):

  tables/<name>, claims       the report's tables and the paper's claims, as wandb.Table
  figures/<name>, report      its figures (wandb.Image) and report.html (wandb.Html)
  artifact pti-report-<run id> (type pti-report): the report folder's files
"""

import hashlib
import json
import logging
import os
import re
import socket
from pathlib import Path
from typing import Any, Optional, Sequence
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F

from pti_lab.tracking.store import NON_METRIC_KEYS, RunStore, image_grid, to_uint8

log = logging.getLogger(__name__)

MODES = ("online", "offline", "disabled")
STAGES = ("inversion", "tuning", "edit")
ARTIFACT_TYPE = "pti-results"
TABLE_KEY = "results_table"
ROW_ID_KEYS = ("image", "stage", "edit", "strength")  # what names a results row
DISK_PICTURES = {  # results table columns read from run_dir/images/<image>/ for rows of each stage
    "inversion": ("target", "inversion"),
    "tuning": ("target", "tuned"),
}
LOWER_IS_BETTER = frozenset({"mse", "lpips", "other_delta"})
HIGHER_IS_BETTER = frozenset({"psnr", "ssim", "ms_ssim", "id_sim", "id_sim_target"})
PREVIEW_IMAGES = 8   # a preview shows at most this many images of a batch (multi-ID tuning)
PREVIEW_SIZE = 256   # ... each at most this many pixels wide
MAX_TAG = 64         # W&B refuses longer tags
MAX_NAME = 48        # image names in keys longer than this are shortened (with a hash)


def sweep_group(experiment: Optional[str], sweep_dir: str | Path) -> str:
    """The W&B group of every job of a sweep and of its summary run: "<experiment>:<date>/<time>" (the
    last two parts of the sweep directory), or "sweep:<date>/<time>" for a sweep of no experiment."""
    sweep = "/".join(Path(sweep_dir).parts[-2:])
    return f"{experiment}:{sweep}" if experiment else f"sweep:{sweep}"


def server_reachable(base_url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the W&B server opens; wandb itself retries for tens of seconds."""
    url = urlparse(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
        return True
    except (OSError, TypeError, ValueError):
        return False


def key_part(name: str) -> str:
    """An image name as one W&B key segment: no '/', '.', '*' or spaces (W&B reads '.' as nesting,
    '*' as a glob); names of multi-ID groups, which can be long, are shortened and given a hash."""
    clean = re.sub(r"[^A-Za-z0-9_+-]", "_", str(name)) or "_"
    if len(clean) > MAX_NAME:
        clean = f"{clean[:MAX_NAME - 9]}-{hashlib.sha1(str(name).encode()).hexdigest()[:8]}"
    return clean


def metric_summary(metric: str) -> str:
    """define_metric summaries of a results metric: its better end, its mean and its last value."""
    base = metric.removeprefix("original_")
    if base in LOWER_IS_BETTER:
        return "min,mean,last"
    if base in HIGHER_IS_BETTER:
        return "max,mean,last"
    return "mean,last"


def row_id(row: dict) -> str:
    return json.dumps([row.get(key) for key in ROW_ID_KEYS])


def row_metrics(row: dict) -> dict[str, float]:
    """The row's numeric metrics (what summary.json averages); None values (with a reason) left out."""
    return {key: float(value) for key, value in row.items()
            if key not in NON_METRIC_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool)}


def results_summary(rows: list[dict]) -> dict[str, dict[str, float]]:
    """{results/<stage>/<metric>: {min|max, mean, last}} over `rows`, as define_metric summarises them."""
    values: dict[str, list[float]] = {}
    for row in rows:
        for metric, value in row_metrics(row).items():
            values.setdefault(f"results/{row.get('stage')}/{metric}", []).append(value)
    summary = {}
    for key, series in values.items():
        stats = {"mean": sum(series) / len(series), "last": series[-1]}
        for kind in metric_summary(key.rsplit("/", 1)[1]).split(","):
            if kind == "min":
                stats["min"] = min(series)
            elif kind == "max":
                stats["max"] = max(series)
        summary[key] = stats
    return summary


def preview_pixels(renders: torch.Tensor) -> np.ndarray:
    """Renders [N, C, R, R] in any range -> a uint8 grid of at most PREVIEW_IMAGES tiles of <= PREVIEW_SIZE."""
    images = torch.nan_to_num(renders[:PREVIEW_IMAGES].detach().float()).clamp(-1, 1)
    if images.shape[-1] > PREVIEW_SIZE:
        size = [round(images.shape[-2] * PREVIEW_SIZE / images.shape[-1]), PREVIEW_SIZE]
        images = F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)
    return image_grid(images.cpu(), columns=4)


class WandbLogger:
    def __init__(
        self,
        project: str = "pti-lab",      # W&B project
        entity: Optional[str] = None,  # W&B user or team; None = the API key's default
        mode: Optional[str] = None,    # online | offline | disabled; None = $WANDB_MODE, else online
        tags: Any = (),                # tags added to those the run passes (its group choices)
        log_every: int = 10,           # log losses every this many optimisation steps
        preview_every: Optional[int] = 100,  # log a preview of the reconstruction every this many steps; null: never
        log_generators: bool = False,  # add the tuned generators (tuned_G.pt) to the run's artifact
    ):
        mode = mode or os.environ.get("WANDB_MODE") or "online"
        if mode not in MODES:
            raise ValueError(f"logger.mode={mode!r}: expected one of {MODES}")
        self.project, self.entity, self.mode = project, entity, mode
        self.tags, self.log_every = list(tags or ()), max(1, int(log_every))
        if preview_every is not None and preview_every < 1:
            raise ValueError(f"logger.preview_every={preview_every!r}: expected a number of steps >= 1, or null for none")
        self.preview_every, self.log_generators = preview_every, bool(log_generators)
        self.run = None      # the wandb run; None while none is open
        self.stopped = False  # a W&B call failed: log nothing more
        self._reset()

    def _reset(self) -> None:
        self.axes: dict[tuple[str, str], list[int]] = {}  # (stage, image) -> [offset, last step]
        self.results_step = 0                             # results rows logged by this process
        self.defined: set[str] = set()                    # results metrics given a define_metric
        self.pictures: dict[str, dict] = {}               # row id -> {column: wandb.Image}, for the table

    def start(self, config: dict, run_dir: str, name: str, group: Optional[str] = None,
              tags: Sequence[str] = (), job_type: str = "pti") -> None:
        """Start the W&B run in `mode`, else offline, else not at all. Offline runs live in run_dir/wandb."""
        self.run, self.stopped = None, False
        self._reset()
        if self.mode == "disabled":
            return
        try:
            import wandb
        except ImportError as exc:
            log.warning("W&B logging off: cannot import wandb (%s)", exc)
            return
        self.wandb = wandb
        all_tags = []
        for tag in [*tags, *self.tags]:
            tag = str(tag)[:MAX_TAG]
            if tag and tag not in all_tags:
                all_tags.append(tag)
        modes = list(MODES[MODES.index(self.mode):-1])  # the configured mode, then offline
        base_url = wandb.Settings().base_url
        if modes[0] == "online" and not server_reachable(base_url):
            log.warning("W&B server %s unreachable; logging offline to %s", base_url, os.path.join(run_dir, "wandb"))
            modes.pop(0)
        os.makedirs(run_dir, exist_ok=True)
        for mode in modes:
            try:
                self.run = wandb.init(project=self.project, entity=self.entity, mode=mode, dir=run_dir,
                                      config=config, name=name, group=group, job_type=job_type, tags=all_tags,
                                      reinit="finish_previous", settings=wandb.Settings(console="off"))
                self.mode = mode
                break
            except Exception as exc:  # no failure to start W&B may stop the run
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning("W&B %s init failed (%s: %s); falling back to %s", mode, type(exc).__name__, first,
                            "offline" if mode == "online" else "no W&B logging")
        self._guard("define_metric", lambda: self.run.define_metric("results/step", hidden=True))

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

    def log_step(self, image: str, stage: str, step: int, losses: dict[str, float],
                 renders: Optional[torch.Tensor] = None) -> None:
        """Every `log_every` steps the losses as `<stage>/<image>/<loss>`, and every `preview_every` steps
        a preview `<stage>/<image>/preview`, against `<stage>/<image>/step`. That axis is the step of the
        image's optimisation; a new optimisation of the same image and stage (its steps start again, e.g.
        one per StyleCLIP edit) continues it past the last step instead of drawing over it."""
        if self.run is None or self.stopped:
            return
        prefix = f"{stage}/{key_part(image)}"
        axis = self.axes.get((stage, prefix))
        if axis is None:
            axis = self.axes[(stage, prefix)] = [0, -1]
            self._guard("define_metric", self._define_axis, prefix)
        elif step <= axis[1] - axis[0]:
            axis[0] = axis[1] + 1
        axis[1] = axis[0] + step
        preview = renders is not None and self.preview_every is not None and step % self.preview_every == 0
        if step % self.log_every and not preview:
            return

        def send() -> None:
            data: dict[str, Any] = {f"{prefix}/step": axis[1]}
            for key, value in losses.items():
                try:
                    data[f"{prefix}/{key}"] = float(value)
                except (TypeError, ValueError):  # not a number: not a loss curve
                    pass
            if preview:
                data[f"{prefix}/preview"] = self.wandb.Image(preview_pixels(renders), caption=f"{image} step {step}")
            self.run.log(data)

        self._guard("log", send)

    def _define_axis(self, prefix: str) -> None:
        # The step metric is hidden from the auto-plots; per-image losses stay out of the summary (the
        # runs table), where one column per image and loss would bury the results metrics.
        self.run.define_metric(f"{prefix}/step", hidden=True, summary="none")
        self.run.define_metric(f"{prefix}/*", step_metric=f"{prefix}/step", summary="none")

    def log_result(self, row: dict, pictures: dict[str, torch.Tensor]) -> None:
        """Log the row's metrics as `results/<stage>/<metric>` against `results/step`, and keep its
        pictures ([1, C, R, R] in [-1, 1]) for the results table logged at finish."""
        if self.run is None or self.stopped:
            return

        def send() -> None:
            self.pictures[row_id(row)] = {key: self.wandb.Image(to_uint8(image.clamp(-1, 1))[0])
                                          for key, image in pictures.items()}
            self.results_step += 1
            data: dict[str, Any] = {"results/step": self.results_step}
            for metric, value in row_metrics(row).items():
                key = f"results/{row.get('stage')}/{metric}"
                if key not in self.defined:
                    self.run.define_metric(key, step_metric="results/step", summary=metric_summary(metric))
                    self.defined.add(key)
                data[key] = value
            self.run.log(data)

        self._guard("result", send)

    def results_table(self, rows: list[dict], run_dir: Path):
        """A wandb.Table of `rows`: identity columns, the other row keys, then pictures: those this process
        logged, else target/inversion/tuned PNGs from run_dir/images/<image>/ (missing = None)."""
        row_keys, cells_per_row = [], []
        for row in rows:
            row_keys += [key for key in row if key not in row_keys]
            pictures = self.pictures.get(row_id(row))
            if pictures is None:
                folder = run_dir / "images" / str(row.get("image"))
                pictures = {column: self.wandb.Image(str(folder / f"{column}.png"))
                            for column in DISK_PICTURES.get(row.get("stage"), ("target",))
                            if (folder / f"{column}.png").is_file()}
            cells_per_row.append({**row, **pictures})
        picture_keys = []
        for cells in cells_per_row:
            picture_keys += [key for key in cells if key not in row_keys and key not in picture_keys]
        first = [key for key in ROW_ID_KEYS if key in row_keys]
        columns = first + [key for key in row_keys if key not in first] + picture_keys
        table = self.wandb.Table(columns=columns, allow_mixed_types=True)
        for cells in cells_per_row:
            # Tables hold scalars and media; nested values such as `reasons` go in as JSON text.
            table.add_data(*[json.dumps(cells.get(key)) if isinstance(cells.get(key), (dict, list)) else cells.get(key)
                             for key in columns])
        return table

    def log_image(self, key: str, pixels: np.ndarray) -> None:
        """Log one uint8 [H, W, C] picture (e.g. an image's grid of edits) under `key`."""
        self._guard("image", lambda: self.run.log({key: self.wandb.Image(pixels)}))

    def log_summary(self, summary: dict) -> None:
        self._guard("summary", lambda: self.run.summary.update(summary))

    def log_table(self, key: str, columns: list[str], rows: list[list]) -> None:
        """One table under `key`, e.g. a report table (one row per method and data set)."""
        self._guard("table", lambda: self.run.log({key: self.wandb.Table(columns=columns, data=rows,
                                                                          allow_mixed_types=True)}))

    def log_file(self, key: str, path: Path) -> None:
        """A picture file as wandb.Image, or an HTML page (report.html) as wandb.Html, under `key`."""
        def send() -> None:
            if Path(path).suffix == ".html":
                with open(path) as page:
                    self.run.log({key: self.wandb.Html(page, inject=False)})
            else:
                self.run.log({key: self.wandb.Image(str(path))})

        self._guard("file", send)

    def log_files(self, kind: str, paths: list[Path]) -> None:
        """The files as one artifact `<kind>-<run id>` of type `kind`, e.g. a report folder's tables."""
        def send() -> None:
            artifact = self.wandb.Artifact(f"{kind}-{self.run.id}", type=kind)
            for path in paths:
                artifact.add_file(str(path), name=Path(path).name)
            self.run.log_artifact(artifact)

        self._guard("artifact", send)

    def artifact(self, run_dir: Path):
        """The run's pti-results artifact: results.jsonl and summary.json, with `log_generators` the tuned
        generators (images/<image>/tuned_G.pt, and tuned_G.pt of multi-ID tuning); None for a run
        without results (a sweep's summary run)."""
        if not (run_dir / "results.jsonl").is_file():
            return None
        artifact = self.wandb.Artifact(f"{ARTIFACT_TYPE}-{self.run.id}", type=ARTIFACT_TYPE,
                                       metadata={"run_dir": str(run_dir)})
        for name in ("results.jsonl", "summary.json"):
            if (run_dir / name).is_file():
                artifact.add_file(str(run_dir / name), name=name)
        if self.log_generators:
            # immutable: referenced, not copied (they are final by now, and can be large)
            for path in sorted([*run_dir.glob("images/*/tuned_G.pt"), *run_dir.glob("tuned_G.pt")]):
                artifact.add_file(str(path), name=path.relative_to(run_dir).as_posix(), policy="immutable")
        return artifact

    def finish(self, run_dir: str) -> None:
        """Rebuild the results table and the results summaries from run_dir/results.jsonl (so that those
        of a resumed run hold every image, not just this process's), log the artifact and close the run
        (an offline run is complete on disk afterwards)."""
        if self.run is None:
            return
        run_dir = Path(run_dir)
        rows = RunStore(run_dir).results()
        if rows:
            self._guard("table", lambda: self.run.log({TABLE_KEY: self.results_table(rows, run_dir)}))
            self._guard("summary", lambda: self.run.summary.update(results_summary(rows)))
        def send_artifact() -> None:
            artifact = self.artifact(run_dir)
            if artifact is not None:
                self.run.log_artifact(artifact)

        self._guard("artifact", send_artifact)
        run, self.run = self.run, None
        self._reset()
        try:
            run.finish()
            # run.finish() returns once wandb-core has the exit record, but the core buffers run-<id>.wandb
            # in 32 KiB blocks and writes the last one when it closes the file, on a "finish" message that
            # it never answers: until then a small run's file is its 7-byte header alone. teardown waits for
            # the core to exit, which it does after handling that message: the log is complete from here on.
            self.wandb.teardown()
        except Exception as exc:
            log.warning("W&B finish failed (%s: %s)", type(exc).__name__, exc)
