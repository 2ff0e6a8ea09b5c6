"""What each stage writes per image, and what an earlier run into the same directory already wrote.

  inversion  images/<name>/{target,inversion}.png and pivot.pt, then its results row (an inversion taken
             from the pivot cache is written the same way: `reused` in the row, `seconds` what it cost then)
  tuning     the tuned generator (images/<name>/tuned_G.pt, or tuned_G.pt of the run in multi-ID mode),
             images/<name>/tuned_pivot.pt and tuned.png, then the rows
  edit       one row per edit, then images/<name>/edits.png (written last: it marks the image done)

A stage's row is written after its files, so a row means the stage is done; a re-run into the same
directory takes what is done and redoes a stage that was interrupted, whole.
"""

import time
from pathlib import Path
from typing import Optional

import torch

from pti_lab.editing.editor import Editing
from pti_lab.inversion.inverter import Inversion
from pti_lab.metrics.run_metrics import RunMetrics
from pti_lab.models.delta import load_tuned, save_tuned
from pti_lab.models.stylegan2 import Generator
from pti_lab.safe_pickle import load_weights_only
from pti_lab.tracking.recorder import Recorder
from pti_lab.tracking.store import image_grid
from pti_lab.tuning.pivotal import Tuning

PIVOT_FILE = "pivot.pt"               # per image: the inverted latent
TUNED_FILE = "tuned_G.pt"             # the tuned generator as a delta against the base
TUNED_PIVOT_FILE = "tuned_pivot.pt"   # per image: the pivot after tuning (moved by joint tuning)
EDITS_FILE = "edits.png"              # per image: the grid of edits, written after all its edit rows


def synthesize(G: Generator, ws: torch.Tensor, transform: Optional[torch.Tensor] = None) -> torch.Tensor:
    """G's image of ws; transform: a StyleGAN3 input transform for this image (an edit's), None = G's own."""
    with torch.no_grad():
        return G.synthesis(ws, noise_mode="const", **({} if transform is None else {"transform": transform}))


class StageFiles:
    def __init__(
        self,
        recorder: Recorder,                 # where rows, pictures and tensors go
        G: Generator,                       # the base generator
        metrics: RunMetrics,                # reconstruction and edit metrics of the rows
        identity: Optional[torch.nn.Module],  # face identity of id_sim; None = not measured
        base_sha256: str,                   # the base generator's fingerprint, stored with every delta
    ):
        self.recorder, self.store, self.G = recorder, recorder.store, G
        self.metrics, self.identity, self.base_sha256 = metrics, identity, base_sha256
        self.device = next(G.parameters()).device

    def delta_file(self, name: Optional[str]) -> Path:
        """Where the generator tuned for image `name` is kept (None: the run's multi-ID generator)."""
        return (self.store.run_dir if name is None else self.store.image_dir(name)) / TUNED_FILE

    # -- what an earlier run wrote ----------------------------------------------------------------

    def stored_pivot(self, name: str) -> Optional[torch.Tensor]:
        """The image's pivot when an earlier run finished its inversion, else None."""
        pivot_file = self.store.image_dir(name) / PIVOT_FILE
        if self.store.done(name, "inversion") and pivot_file.is_file():
            return load_weights_only(pivot_file, map_location=None).to(self.device)
        return None

    def stored_tuning(self, names: list[str], pivots: list[torch.Tensor],
                      delta_file: Path) -> Optional[tuple[Generator, list[torch.Tensor]]]:
        """The generator an earlier run tuned for `names` and their pivots after it, when every image has
        its tuning row; else None."""
        if not (delta_file.is_file() and all(self.store.done(name, "tuning") for name in names)):
            return None
        return load_tuned(delta_file, self.G), [self.stored_tuned_pivot(name, pivot) for name, pivot in zip(names, pivots)]

    def stored_tuned_pivot(self, name: str, pivot: torch.Tensor) -> torch.Tensor:
        """The pivot stored after tuning (runs older than that file: the inversion's)."""
        file = self.store.image_dir(name) / TUNED_PIVOT_FILE
        return load_weights_only(file, map_location=None).to(self.device) if file.is_file() else pivot

    def edited(self, name: str) -> bool:
        """Whether the image's edits are done (edits.png is written after all its edit rows)."""
        return (self.store.image_dir(name) / EDITS_FILE).is_file()

    # -- what this run writes ---------------------------------------------------------------------

    def measure(self, target: torch.Tensor, reconstruction: torch.Tensor) -> dict:
        return self.metrics.reconstruction(target, reconstruction.clamp(-1, 1), self.identity)

    def inversion(self, name: str, target: torch.Tensor, inversion: Inversion, reused: bool) -> torch.Tensor:
        """Write the image's pivot, pictures and inversion row; return the pivot."""
        pivot = inversion.pivot.to(self.device)
        reconstruction = synthesize(self.G, pivot)
        self.recorder.tensor(name, PIVOT_FILE, pivot)
        row = {"image": name, "stage": "inversion", **self.measure(target, reconstruction),
               "steps": inversion.steps, "seconds": round(inversion.seconds, 3), "reused": reused}
        self.recorder.result(row, {"target": target, "inversion": reconstruction.clamp(-1, 1)})
        return pivot

    def tuning(self, names: list[str], targets: list[torch.Tensor], tuning: Tuning,
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

    def edits(self, name: str, target: torch.Tensor, pivot: torch.Tensor, tuned: Generator, editing: Editing,
              started: float) -> None:
        """Score each edit rendered with `tuned` and, for comparison, the original G; write the rows, then the
        grid (targets and reconstructions first). `started`: perf_counter when the editing began."""
        scores = self.metrics.edits
        compare = tuned is not self.G
        reconstruction = synthesize(tuned, pivot).clamp(-1, 1)
        original_reconstruction = synthesize(self.G, pivot).clamp(-1, 1) if compare else None
        rows, top, bottom = [], [target, reconstruction], [target, original_reconstruction]
        for edit in editing.edits:
            image = synthesize(tuned, edit.ws, edit.transform).clamp(-1, 1)
            row = {"image": name, "stage": "edit", "edit": edit.name, "strength": edit.strength,
                   **scores.measure(target, reconstruction, image, self.identity, edit.attributes)}
            pictures = {"edit": image}
            if compare:
                original = synthesize(self.G, edit.ws, edit.transform).clamp(-1, 1)
                measured = scores.measure(target, original_reconstruction, original, self.identity, edit.attributes)
                reasons = {f"original_{key}": why for key, why in measured.pop("reasons", {}).items()}
                row.update({f"original_{key}": value for key, value in measured.items()})
                if reasons:
                    row["reasons"] = {**row.get("reasons", {}), **reasons}
                pictures["original"] = original
                bottom.append(original)
            top.append(image)
            rows.append((row, pictures))
        seconds = (time.perf_counter() - started) / max(len(rows), 1)
        for row, pictures in rows:
            row["seconds"] = round(seconds, 3)
            self.recorder.result(row, pictures, save=False)
        self.recorder.grid(name, EDITS_FILE, image_grid(torch.cat(top + bottom if compare else top), columns=len(top)))
