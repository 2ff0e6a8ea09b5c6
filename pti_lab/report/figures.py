"""The figures of the paper's experiments: Fig. 15 (locality drift) and Fig. 16 (ablation pictures).

Drawn with matplotlib's object API (no pyplot: the process-wide backend is left alone) and written as
PNG and PDF, atomically.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from pti_lab.atomic import atomic_path
from pti_lab.report.numbers import RunNumbers
from pti_lab.report.sweep import Job

FIGURE_FORMATS = ("png", "pdf")


def save_figure(figure: Figure, out_dir: Path, name: str) -> list[Path]:
    """NAME.png and NAME.pdf in `out_dir`."""
    paths = []
    for fmt in FIGURE_FORMATS:
        path = out_dir / f"{name}.{fmt}"
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
        paths.append(path)
    return paths


def locality_figure(runs: list[RunNumbers]) -> Optional[Figure]:
    """Fig. 15: drift LPIPS and reconstruction LPIPS vs identities tuned together, a line per regularizer."""
    runs = [run for run in runs if "drift_lpips" in run.drift]
    if not runs:
        return None
    several_data = len({run.job.data for run in runs}) > 1
    lines: dict[str, list[RunNumbers]] = {}
    for run in runs:
        lines.setdefault(run.regularizer + (f" ({run.job.data})" if several_data else ""), []).append(run)
    figure = Figure(figsize=(9, 3.4), layout="constrained")
    drift_axes, fit_axes = figure.subplots(1, 2)
    for label, members in lines.items():
        members.sort(key=lambda run: run.identities)
        x = [run.identities for run in members]
        drift_axes.plot(x, [run.drift["drift_lpips"].mean for run in members], marker="o", label=label)
        fit = [np.nan if run.reconstruction["lpips"].mean is None else run.reconstruction["lpips"].mean for run in members]
        fit_axes.plot(x, fit, marker="o", label=label)
    counts = sorted({run.identities for run in runs})
    for axes, what in ((drift_axes, "locality drift LPIPS (random latents)"), (fit_axes, "reconstruction LPIPS")):
        axes.set_xscale("log", base=2)  # identity counts double: 1, 2, 4, 8
        axes.set_xticks(counts, [str(count) for count in counts])
        axes.minorticks_off()
        axes.set_xlabel("identities tuned together")
        axes.set_ylabel(what)
        axes.grid(alpha=0.3)
        axes.legend(title="regularizer")
    return figure


@dataclass
class Tile:
    title: str                     # column title, e.g. "smile +3"
    pixels: Optional[np.ndarray]   # uint8 [H, W, C]; None: not there


def edit_tiles(job: Job, image: str) -> dict[str, Tile]:
    """{column: tile} of one image: target, reconstruction and, per edit, its strongest edit (largest
    |strength|, positive first) with the tuned generator, cut from the top row of images/<image>/edits.png
    (target, reconstruction, then the edits in the order of their rows in results.jsonl)."""
    path = job.picture(image, "edits.png")
    edits = [row for row in job.stage_rows("edit") if row["image"] == image]
    if path is None:
        fallback = {"target": job.picture(image, "target.png"),
                    "reconstruction": job.picture(image, "tuned.png") or job.picture(image, "inversion.png")}
        return {name: Tile(name, np.asarray(Image.open(p).convert("RGB")) if p else None) for name, p in fallback.items()}
    grid = np.asarray(Image.open(path).convert("RGB"))
    columns = 2 + len(edits)
    size = grid.shape[1] // columns
    if grid.shape[1] != size * columns or grid.shape[0] not in (size, 2 * size):
        return {}  # the picture does not match the rows: nothing is cut rather than a wrong tile
    tiles = {"target": Tile("target", grid[:size, :size]),
             "reconstruction": Tile("reconstruction", grid[:size, size:2 * size])}
    weakest_first = sorted(range(len(edits)), key=lambda i: (abs(edits[i]["strength"]), edits[i]["strength"]))
    strongest = {edits[i]["edit"]: i for i in weakest_first}  # the last one of each edit wins
    for name in dict.fromkeys(row["edit"] for row in edits):
        index = strongest[name]
        left = (2 + index) * size
        tiles[name] = Tile(f"{name} {edits[index]['strength']:+g}", grid[:size, left:left + size])
    return tiles


def shown_image(jobs: list[Job]) -> dict[int, str]:
    """{job number: image} for a picture grid: the first image every job has edits of, else each job's first."""
    with_edits = [[image for image in job.images if job.picture(image, "edits.png")] for job in jobs]
    common = [image for image in with_edits[0] if all(image in names for names in with_edits)] if with_edits else []
    chosen = {}
    for job, names in zip(jobs, with_edits):
        candidates = common or names or job.images
        if candidates:
            chosen[job.number] = candidates[0]
    return chosen


def ablation_figure(runs: list[RunNumbers]) -> Optional[Figure]:
    """Fig. 16: a row per ablation (by method label), columns target, reconstruction and each edit."""
    jobs = sorted((run.job for run in runs), key=lambda job: (job.method, job.data))
    images = shown_image(jobs)
    rows = [(job, edit_tiles(job, images[job.number])) for job in jobs if job.number in images]
    rows = [(job, tiles) for job, tiles in rows if tiles]
    if not rows:
        return None
    columns = list(dict.fromkeys(name for _, tiles in rows for name in tiles))
    titles = {name: tiles[name].title for _, tiles in reversed(rows) for name in tiles}
    figure = Figure(figsize=(1.3 * len(columns) + 0.4, 1.3 * len(rows)), layout="constrained")
    grid = np.atleast_2d(figure.subplots(len(rows), len(columns), squeeze=False))
    for r, (job, tiles) in enumerate(rows):
        for c, name in enumerate(columns):
            axes = grid[r, c]
            axes.set_xticks([])
            axes.set_yticks([])
            tile = tiles.get(name)
            if tile is not None and tile.pixels is not None:
                axes.imshow(tile.pixels, interpolation="nearest")
            else:
                axes.text(0.5, 0.5, "—", ha="center", va="center", transform=axes.transAxes)
            if r == 0:
                axes.set_title(titles[name], fontsize=9)
            if c == 0:
                axes.set_ylabel(f"{job.method}\n{images[job.number]}", fontsize=9)
    return figure


EXPERIMENT_FIGURES = {  # experiment -> (draw its runs, caption)
    "fig15": (locality_figure, "Fig. 15: drift of the tuned generator on random latents (left) and reconstruction "
                               "LPIPS (right) against the number of identities tuned together"),
    "fig16": (ablation_figure, "Fig. 16: ablations A-F; target, reconstruction and edits with the tuned generator"),
}
