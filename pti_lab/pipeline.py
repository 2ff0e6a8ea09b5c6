"""The one place that reads the global config: build components, run the stages, write results.

Data flows one way: image -> inverter -> pivot -> tuner -> tuned generator -> editor -> metrics ->
tracking. Per image the run directory gets images/<name>/{target,inversion,tuned}.png, pivot.pt,
(one generator per image) tuned_G.pt, a delta against the base generator, and with an editor
edits.png: target, reconstruction and every edit rendered with the tuned generator (top row) and
the original one (bottom row). results.jsonl gets one row per image and stage (and per edit and
strength), summary.json the means. A re-run into the same directory skips finished work; a failing
image is recorded in summary.json `failed` and the others go on.
"""

import logging
import time
from pathlib import Path
from typing import Optional

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pti_lab.config import check_components, check_top_level, resolve_device
from pti_lab.data import Sample
from pti_lab.errors import PTILabError
from pti_lab.metrics.edit_scores import EditMetrics, edit_summary
from pti_lab.metrics.image import reconstruction_metrics
from pti_lab.metrics.drift import locality_drift
from pti_lab.models.delta import generator_fingerprint, load_tuned, save_tuned
from pti_lab.models.stylegan2 import Generator
from pti_lab.tracking.store import RunStore, image_grid, save_png

log = logging.getLogger(__name__)

EDITS_FILE = "edits.png"              # per image: the grid of edits, written after all its edit rows
TUNED_PIVOT_FILE = "tuned_pivot.pt"   # per image: the pivot after tuning (moved by joint tuning)


def group_choices() -> dict:
    """{group: option} of this run, without Hydra's own groups."""
    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {group: option for group, option in choices.items() if not group.startswith("hydra")}


def build(node: Optional[DictConfig], **kwargs):
    """instantiate(node) (None for a null node), letting pti-lab's own one-line errors through."""
    if node is None:
        return None
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, PTILabError):
            raise exc.__cause__ from None
        raise


def render_preview(G: Generator, count: int, truncation_psi: float, noise_mode: str, seed: int) -> torch.Tensor:
    """`count` samples of G from seeded z, [count, C, R, R] in [-1, 1]."""
    device = next(G.parameters()).device
    z = torch.randn([count, G.z_dim], generator=torch.Generator().manual_seed(seed)).to(device)
    c = torch.zeros([count, G.c_dim], device=device)
    with torch.no_grad():
        return G(z, c, truncation_psi=truncation_psi, noise_mode=noise_mode).clamp(-1, 1)


def measure(target: torch.Tensor, reconstruction: torch.Tensor, identity) -> dict:
    """Reconstruction metrics of one image; a metric that cannot be computed is None with a reason."""
    reconstruction = reconstruction.clamp(-1, 1)
    row, reasons = {}, {}
    for key, values in reconstruction_metrics(target, reconstruction).items():
        value = values.item()
        row[key] = value if value == value and abs(value) != float("inf") else None
        if row[key] is None:
            reasons[key] = f"{key} is {value} (identical images give infinite PSNR)"
    if identity is None:
        row["id_sim"], reasons["id_sim"] = None, "no identity network configured"
    else:
        (similarity,), (reason,) = identity.compare(target, reconstruction)
        row["id_sim"] = similarity
        if reason:
            reasons["id_sim"] = reason
    if reasons:
        row["reasons"] = reasons
    return row


def synthesize(G: Generator, pivots: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return G.synthesis(pivots, noise_mode="const")


class Run:
    """The components of one run and the stages over its images."""

    def __init__(self, cfg: DictConfig, out_dir: Path, device: torch.device):
        self.cfg, self.device = cfg, device
        self.G = build(cfg.generator, device=device)
        self.perceptual = build(cfg.perceptual).to(device)
        self.inverter = build(cfg.inverter)
        self.tuner = build(cfg.tuner)
        self.regularizer = build(cfg.regularizer)
        self.identity = build(cfg.identity)
        self.dataset = build(cfg.data)
        self.logger = build(cfg.logger)
        self.editor = build(cfg.editor)
        self.metrics = build(cfg.metrics) or EditMetrics()
        if self.editor is not None:  # directions, PCA and attribute names are checked before any image
            self.metrics.check_attributes(self.editor.attributes)
            self.editor.prepare(self.G)
        self.store = RunStore(out_dir)
        self.final_stage = "tuning" if self.tuner is not None else "inversion"
        self.base_sha256 = generator_fingerprint(self.G)  # names the base of every stored delta

    def finished(self, name: str) -> bool:
        """Whether an earlier run did all of this image's work (edits.png is written last)."""
        if self.editor is not None:
            return (self.store.image_dir(name) / EDITS_FILE).is_file()
        return self.store.done(name, self.final_stage) is not None

    def invert(self, sample: Sample, target: torch.Tensor) -> torch.Tensor:
        """The image's pivot: saved by an earlier run, or inverted now (row + images written)."""
        pivot_file = self.store.image_dir(sample.name) / "pivot.pt"
        if self.store.done(sample.name, "inversion") and pivot_file.is_file():
            return torch.load(pivot_file, weights_only=True).to(self.device)
        inversion = self.inverter.invert(self.G, target, seed=self.cfg.seed)
        for step, losses in enumerate(inversion.losses):
            self.logger.log_losses(sample.name, "inversion", step, losses)
        reconstruction = synthesize(self.G, inversion.pivot)
        self.store.save_png(sample.name, "target.png", target)
        self.store.save_png(sample.name, "inversion.png", reconstruction)
        self.store.save_tensor(sample.name, "pivot.pt", inversion.pivot.cpu())
        row = {"image": sample.name, "stage": "inversion", **measure(target, reconstruction, self.identity),
               "steps": inversion.steps, "seconds": round(inversion.seconds, 3)}
        self.store.append(row)
        self.logger.log_result(row, {"target": target, "inversion": reconstruction})
        return inversion.pivot.to(self.device)

    def record_tuning(self, name: str, target: torch.Tensor, tuned: Generator, pivot: torch.Tensor,
                      steps: int, stopped_early: bool, seconds: float) -> None:
        reconstruction = synthesize(tuned, pivot)
        self.store.save_png(name, "tuned.png", reconstruction)
        row = {"image": name, "stage": "tuning", **measure(target, reconstruction, self.identity),
               "steps": steps, "stopped_early": stopped_early, "seconds": round(seconds, 3)}
        self.store.append(row)
        self.logger.log_result(row, {"target": target, "tuned": reconstruction})

    def tune(self, names: list[str], targets: torch.Tensor, pivots: torch.Tensor,
             delta_file: Path) -> tuple[Generator, torch.Tensor]:
        """Tune, store the tuned generator and pivots, then record the rows: a row means its delta
        exists. Returns the tuned generator and the pivots after tuning (joint tuning moves them)."""
        tuning = self.tuner.tune(self.G, targets, pivots, self.perceptual, self.regularizer)
        for step, losses in enumerate(tuning.losses):
            self.logger.log_losses("+".join(names), "tuning", step, losses)
        save_tuned(tuning.generator, self.G, delta_file, latents=tuning.pivots, base_sha256=self.base_sha256)
        seconds = tuning.seconds / len(names)
        for i, name in enumerate(names):
            self.store.save_tensor(name, TUNED_PIVOT_FILE, tuning.pivots[i:i + 1])
            self.record_tuning(name, targets[i:i + 1], tuning.generator, tuning.pivots[i:i + 1],
                               tuning.steps, tuning.stopped_early, seconds)
        return tuning.generator, tuning.pivots

    def tuned_pivot(self, name: str, pivot: torch.Tensor) -> torch.Tensor:
        """The pivot stored after tuning (runs older than that file: the inversion's)."""
        file = self.store.image_dir(name) / TUNED_PIVOT_FILE
        return torch.load(file, weights_only=True).to(self.device) if file.is_file() else pivot

    def tuned_single(self, name: str, target: torch.Tensor, pivot: torch.Tensor) -> tuple[Generator, torch.Tensor]:
        """The image's own tuned generator and pivot: stored by an earlier run, or tuned now."""
        delta_file = self.store.image_dir(name) / "tuned_G.pt"
        if self.store.done(name, "tuning") and delta_file.is_file():
            return load_tuned(delta_file, self.G), self.tuned_pivot(name, pivot)
        return self.tune([name], target, pivot, delta_file)

    def edit(self, name: str, target: torch.Tensor, pivot: torch.Tensor, tuned: Generator) -> None:
        """Edit the pivot; score each edit rendered with `tuned` and, for comparison, the original G."""
        start = time.perf_counter()
        edits = self.editor.edits(tuned, pivot)
        for step, losses in enumerate(self.editor.losses):
            self.logger.log_losses(name, "edit", step, losses)
        compare = tuned is not self.G
        reconstruction = synthesize(tuned, pivot)
        original_reconstruction = synthesize(self.G, pivot) if compare else None
        rows, top, bottom = [], [target, reconstruction], [target, original_reconstruction]
        for edit in edits:
            image = synthesize(tuned, edit.ws)
            row = {"image": name, "stage": "edit", "edit": edit.name, "strength": edit.strength,
                   **self.metrics.measure(target, reconstruction, image, self.identity, edit.attributes)}
            pictures = {"edit": image}
            if compare:
                original = synthesize(self.G, edit.ws)
                measured = self.metrics.measure(target, original_reconstruction, original, self.identity, edit.attributes)
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
            self.store.append(row)
            self.logger.log_result(row, pictures)
        grid = image_grid(torch.cat(top + bottom if compare else top), columns=len(top))
        save_png(grid, self.store.image_dir(name) / EDITS_FILE)
        self.logger.log_image(f"edits/{name}", grid)

    def readable(self):
        """(sample, target) of every readable image; unreadable ones are recorded as failed."""
        for sample in self.dataset.samples(self.G.img_resolution):
            if sample.image is None:
                self.store.record_failure(sample.name, sample.error)
                continue
            yield sample, sample.image.to(self.device)

    def run_single(self) -> None:
        """Each image: invert, then tune a generator of its own. Finished images are skipped."""
        for sample, target in self.readable():
            if self.finished(sample.name):
                log.info("%s: already done, skipped", sample.name)
                continue
            stage = "inversion"
            try:
                pivot = self.invert(sample, target)
                generator = self.G
                if self.tuner is not None:
                    stage = "tuning"
                    generator, pivot = self.tuned_single(sample.name, target, pivot)
                if self.editor is not None:
                    stage = "edit"
                    self.edit(sample.name, target, pivot, generator)
            except PTILabError as exc:
                log.warning("%s: %s failed: %s", sample.name, stage, exc)
                self.store.record_failure(sample.name, f"{stage}: {exc}")

    def run_multi(self) -> dict:
        """Invert every image, then tune one generator for all of them (multi-ID).

        A re-run reuses finished inversions; the generator is tuned again on all images unless
        every image already has its tuning row (then the stored one is measured).
        """
        names, targets, pivots = [], [], []
        for sample, target in self.readable():
            try:
                pivots.append(self.invert(sample, target))
            except PTILabError as exc:
                log.warning("%s: inversion failed: %s", sample.name, exc)
                self.store.record_failure(sample.name, f"inversion: {exc}")
                continue
            names.append(sample.name)
            targets.append(target)
        if not names:
            return {}
        tuned_file = self.store.run_dir / "tuned_G.pt"
        if tuned_file.is_file() and all(self.store.done(name, "tuning") for name in names):
            log.info("all %d images already tuned together, skipped", len(names))
            tuned = load_tuned(tuned_file, self.G)
            pivots = [self.tuned_pivot(name, pivot) for name, pivot in zip(names, pivots)]
        else:
            try:
                tuned, tuned_pivots = self.tune(names, torch.cat(targets), torch.cat(pivots), tuned_file)
                pivots = list(tuned_pivots.split(1))
            except PTILabError as exc:
                log.warning("multi-ID tuning failed: %s", exc)
                for name in names:
                    self.store.record_failure(name, f"tuning: {exc}")
                return {}
        if self.editor is not None:
            for name, target, pivot in zip(names, targets, pivots):
                if self.finished(name):
                    continue
                try:
                    self.edit(name, target, pivot, tuned)
                except PTILabError as exc:
                    log.warning("%s: edit failed: %s", name, exc)
                    self.store.record_failure(name, f"edit: {exc}")
        return {"locality": locality_drift(self.G, tuned, self.perceptual, seed=self.cfg.seed)}


def run(cfg: DictConfig) -> dict:
    check_top_level(cfg)
    check_components(cfg)
    device = resolve_device(cfg.device)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)

    start = time.perf_counter()
    job = Run(cfg, out_dir, device)
    choices = group_choices()
    job.logger.start(config=OmegaConf.to_container(cfg, resolve=True), run_dir=str(out_dir),
                     name=out_dir.name, group=choices.get("ablation") or choices.get("experiment"),
                     job_type="pti" if job.tuner is not None else "inversion")
    G = job.G
    generator = {"resolution": G.img_resolution, "num_ws": G.num_ws, "w_dim": G.w_dim,
                 "parameters": sum(p.numel() for p in G.parameters()), "sha256": job.base_sha256}
    if cfg.preview.count > 0:
        preview = render_preview(G, cfg.preview.count, cfg.preview.truncation_psi, cfg.preview.noise_mode, cfg.seed)
        save_png(image_grid(preview), out_dir / "preview.png")

    multi = job.tuner is not None and job.tuner.mode == "multi"
    extra = job.run_multi() if multi else (job.run_single() or {})
    if job.editor is not None:
        extra["edits"] = edit_summary(job.store.results())
    summary = job.store.write_summary(choices, {"generator": generator, **extra,
                                                "wall_seconds": round(time.perf_counter() - start, 1)})
    job.logger.log_summary(summary)
    job.logger.finish()
    log.info("results in %s", out_dir.resolve())
    print(f"results: {out_dir.resolve()}")
    return summary
