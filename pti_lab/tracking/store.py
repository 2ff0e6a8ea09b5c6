"""The local results store: images, JSON and JSON-lines in the run directory, written atomically."""

import json
import logging
import math
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image

from pti_lab.atomic import atomic_path, save_torch, write_text

log = logging.getLogger(__name__)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] images [N, C, H, W] -> uint8 [N, H, W, C] (grey images keep one channel)."""
    assert images.ndim == 4, f"expected [N, C, H, W], got {list(images.shape)}"  # [NCHW]
    pixels = ((images.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).numpy()


def image_grid(images: torch.Tensor, columns: int = 8) -> np.ndarray:
    """Tile [-1, 1] images [N, C, H, W] into one uint8 image, `columns` per row."""
    tiles = to_uint8(images)
    n, h, w, c = tiles.shape
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    grid = np.zeros([rows * h, columns * w, c], dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, k = divmod(i, columns)
        grid[r * h:(r + 1) * h, k * w:(k + 1) * w] = tile
    return grid


def save_png(pixels: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 [H, W, C] array as PNG atomically."""
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


# Row keys that describe a row rather than measure the image; every other numeric key is a metric
# averaged into summary.json.
NON_METRIC_KEYS = frozenset({"image", "stage", "seconds", "edit", "strength", "reasons", "step", "steps",
                             "stopped_early", "seed", "reused", "eval_size"})


def _check_finite(value: Any, where: str) -> None:
    """Refuse NaN/inf anywhere in a row: JSON cannot hold them and a made-up number must not."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"results row: {where} is {value}; record None with a reason instead")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_finite(item, f"{where}[{i}]")


def _is_metric(key: str, value: Any) -> bool:
    return key not in NON_METRIC_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool)


def _mean(values: list) -> Optional[float]:
    return sum(values) / len(values) if values else None


class RunStore:
    """Everything a run writes locally, under one run directory; what lets a re-run resume.

    results.jsonl  one JSON object per image and stage (DESIGN §4)
    failed.json    [{"image", "reason"}] of images that failed, kept across resumed runs
    summary.json   means per stage, written by write_summary
    images/<name>/ PNGs and tensors of each image
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.results_path = self.run_dir / "results.jsonl"
        self.failed_path = self.run_dir / "failed.json"
        self.summary_path = self.run_dir / "summary.json"

    # -- results.jsonl ----------------------------------------------------------------------------

    def results(self) -> list[dict]:
        """The rows of results.jsonl; a truncated last line (a crash mid-write) is dropped with a warning."""
        if not self.results_path.is_file():
            return []
        lines = self.results_path.read_text().splitlines()
        rows = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                if number < len(lines):
                    raise ValueError(f"{self.results_path}:{number}: not a JSON object") from None
                log.warning("%s: ignoring truncated last line %d", self.results_path, number)
        return rows

    def done(self, image: str, stage: str) -> Optional[dict]:
        """The finished row of `image` at `stage` (the latest, for stages with several rows), or None."""
        rows = [row for row in self.results() if row.get("image") == image and row.get("stage") == stage]
        return rows[-1] if rows else None

    def append(self, row: dict) -> None:
        """Add one row; a row with the same image, stage, edit and strength replaces the earlier one,
        so an image re-done after an interruption is counted once, and an earlier failure of the
        image is forgotten. The whole file is rewritten under a temporary name and renamed, so an
        interrupted run never leaves half a line."""
        for key in ("image", "stage"):
            if key not in row:
                raise ValueError(f"results row lacks {key!r}: {sorted(row)}")
        _check_finite(row, "row")

        def identity(r: dict) -> tuple:
            return tuple(r.get(k) for k in ("image", "stage", "edit", "strength"))

        rows = [r for r in self.results() if identity(r) != identity(row)] + [row]
        text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows)
        write_text(self.results_path, text)
        failures = self.failed()
        if any(e["image"] == row["image"] for e in failures):
            write_json(self.failed_path, [e for e in failures if e["image"] != row["image"]])

    # -- failed.json --------------------------------------------------------------------------------

    def failed(self) -> list[dict]:
        if not self.failed_path.is_file():
            return []
        return json.loads(self.failed_path.read_text())

    def record_failure(self, image: str, reason: str) -> None:
        """Record why `image` failed, replacing an earlier reason for it."""
        entries = [e for e in self.failed() if e["image"] != image] + [{"image": image, "reason": reason}]
        write_json(self.failed_path, entries)

    # -- per-image files ------------------------------------------------------------------------------

    def image_dir(self, name: str) -> Path:
        path = self.run_dir / "images" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def save_png(self, name: str, filename: str, image: torch.Tensor) -> Path:
        """Write one [1, C, R, R] image in [-1, 1] as images/<name>/<filename>."""
        assert image.ndim == 4 and image.shape[0] == 1, f"expected [1, C, R, R], got {list(image.shape)}"
        return save_png(to_uint8(image)[0], self.image_dir(name) / filename)

    def save_tensor(self, name: str, filename: str, tensor: torch.Tensor) -> Path:
        path = self.image_dir(name) / filename
        return save_torch(tensor.detach().cpu(), path)

    # -- summary.json ---------------------------------------------------------------------------------

    def write_summary(self, choices: dict, extra: Optional[dict] = None) -> dict:
        """Build summary.json (DESIGN §4) from results.jsonl and failed.json, write it, return it.

        choices: {config group: option} of the run.
        extra:   further top-level keys (e.g. "locality", "generator").
        """
        rows = self.results()
        values: dict[str, dict[str, list]] = {}   # stage -> metric -> values (None skipped)
        seconds: dict[str, float] = {}            # image -> seconds over all its rows
        for row in rows:
            metrics = values.setdefault(row["stage"], {})
            for key, value in row.items():
                if _is_metric(key, value):
                    metrics.setdefault(key, []).append(value)
                elif value is None and key not in NON_METRIC_KEYS:
                    metrics.setdefault(key, [])  # the metric exists, it just could not be computed here
            seconds[row["image"]] = seconds.get(row["image"], 0.0) + (row.get("seconds") or 0.0)
        summary = {
            "choices": dict(choices),
            "images": len(seconds),
            "failed": self.failed(),
            "stages": {stage: {key: _mean(v) for key, v in metrics.items()} for stage, metrics in values.items()},
            "seconds_per_image": _mean(list(seconds.values())),
            **(extra or {}),
        }
        write_json(self.summary_path, summary)
        return summary
