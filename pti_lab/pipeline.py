"""The one place that reads the global config: build the components, hand them to the driver.

Everything below this module gets objects and numbers, never the config. The stages and what a run
writes are described in pti_lab/driver.py; this module adds the run's metadata: the generator
preview, the summary (with the generator's fingerprint and, per edit, the mean scores), and what
the logger is told (resolved config, group choices as tags, the group of an ablation, experiment or
sweep).
"""

import json
import logging
import time
from pathlib import Path
from typing import Optional

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pti_lab.config import check_config, resolve_device
from pti_lab.driver import Driver
from pti_lab.errors import PTILabError
from pti_lab.inversion.pivot_cache import PivotCache
from pti_lab.metrics.edit_scores import edit_summary
from pti_lab.models.fingerprint import generator_fingerprint
from pti_lab.models.stylegan2 import Generator
from pti_lab.run_record import prepare_run_dir, result_settings
from pti_lab.stages import Inverter, Stages
from pti_lab.tracking.recorder import Recorder
from pti_lab.tracking.store import RunStore, image_grid, save_png
from pti_lab.tracking.wandb_logger import sweep_group

log = logging.getLogger(__name__)

NOT_TAGS = ("logger", "paths")  # group choices that say nothing about the experiment


def group_choices() -> dict:
    """{group: option} of this run, without Hydra's own groups."""
    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {group: option for group, option in choices.items() if not group.startswith("hydra")}


def run_identity(out_dir: Path, choices: dict) -> tuple[str, Optional[str], list[str]]:
    """(name, group, tags) of the run for the logger. All jobs of a sweep share one group, named
    after the sweep and its experiment (its summary run joins it); a single run is grouped by its
    experiment or ablation."""
    tags = [f"{group}={option}" for group, option in choices.items()
            if option is not None and group not in NOT_TAGS]
    group = choices.get("experiment") or choices.get("ablation")
    name = out_dir.name
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        hydra = HydraConfig.get()
        group = sweep_group(choices.get("experiment"), hydra.sweep.dir)  # not the ablation: jobs may sweep it
        name = f"{group.split(':', 1)[1]}#{hydra.job.num}"
    return name, group, tags


def overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


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


def build_stages(cfg: DictConfig, device: torch.device) -> Stages:
    stages = Stages(
        generator=build(cfg.generator, device=device),
        inverter=build(cfg.inverter),
        perceptual=build(cfg.perceptual).to(device),
        identity=build(cfg.identity),
        tuner=build(cfg.tuner),
        regularizer=build(cfg.regularizer),
        editor=build(cfg.editor),
        metrics=build(cfg.metrics),
    )
    stages.inverter.prepare(stages.generator)  # e.g. an encoder's num_ws and w_dim, before any image
    if stages.editor is not None:  # directions, PCA and attribute names are checked before any image
        stages.metrics.edits.check_attributes(stages.editor.attributes)
        stages.editor.prepare(stages.generator)
    return stages


def pivot_cache(cfg: DictConfig, generator_sha256: str, device: torch.device, inverter: Inverter) -> PivotCache:
    """The cache of inversions made with this run's generator, inverter settings (and weights, for an
    encoder: the same `path` may hold another file tomorrow) and seed."""
    settings = {key: value for key, value in OmegaConf.to_container(cfg.inverter, resolve=True).items()
                if key != "progress"}  # what changes the pivot
    if inverter.weights_fingerprint is not None:
        settings["weights_fingerprint"] = inverter.weights_fingerprint
    return PivotCache(Path(cfg.paths.cache_dir) / "pivots", generator_sha256, json.dumps(settings, sort_keys=True),
                      cfg.seed, device.type)


def run(cfg: DictConfig) -> dict:
    check_config(cfg)
    device = resolve_device(cfg.device)
    out_dir = Path(cfg.paths.output_dir)
    prepare_run_dir(out_dir, result_settings(cfg), cfg.resume)  # refuses results of other settings
    torch.manual_seed(cfg.seed)

    start = time.perf_counter()
    stages = build_stages(cfg, device)
    dataset = build(cfg.data)
    recorder = Recorder(RunStore(out_dir), build(cfg.logger))
    base_sha256 = generator_fingerprint(stages.generator)
    cache = pivot_cache(cfg, base_sha256, device, stages.inverter) if cfg.reuse_inversions else None
    driver = Driver(stages, recorder, mode=cfg.mode, batch_size=cfg.batch_size, seed=cfg.seed,
                    pivot_cache=cache, base_sha256=base_sha256)
    choices = group_choices()
    name, group, tags = run_identity(out_dir, choices)
    config = {**OmegaConf.to_container(cfg, resolve=True), "choices": choices, "overrides": overrides()}
    recorder.start(config, name=name, group=group, tags=tags,
                   job_type="pti" if stages.tuner is not None else "inversion")
    G = stages.generator
    generator = {"resolution": G.img_resolution, "num_ws": G.num_ws, "w_dim": G.w_dim,
                 "parameters": sum(p.numel() for p in G.parameters()), "sha256": base_sha256}
    if cfg.preview is not None:
        preview = render_preview(G, cfg.preview.count, cfg.preview.truncation_psi, cfg.preview.noise_mode, cfg.seed)
        save_png(image_grid(preview), out_dir / "preview.png")

    extra = driver.run(dataset.samples(G.img_resolution), total=len(dataset))
    if cfg.report:
        extra["report"] = OmegaConf.to_container(cfg.report, resolve=True)
    if stages.editor is not None:
        extra["edits"] = edit_summary(recorder.store.results())
    summary = recorder.summary(choices, {"generator": generator, "eval_size": stages.metrics.size_at(G.img_resolution),
                                         **extra,
                                         "wall_seconds": round(time.perf_counter() - start, 1)})
    recorder.finish()
    log.info("results in %s", out_dir.resolve())
    print(f"results: {out_dir.resolve()}")
    return summary
