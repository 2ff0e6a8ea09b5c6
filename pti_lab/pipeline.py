"""The one place that reads the global config: build components, run the stages, write results.

Data flows one way: image -> inverter -> pivot -> tuner -> tuned generator -> editor -> metrics.
Stages land here as their issues are built; the generator preview runs in every run.
"""

import logging
import time
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from pti_lab.config import check_components, check_top_level, resolve_device
from pti_lab.errors import PTILabError
from pti_lab.models.stylegan2 import Generator
from pti_lab.tracking.store import image_grid, save_png, write_json

log = logging.getLogger(__name__)


def group_choices() -> dict:
    """{group: option} of this run, without Hydra's own groups."""
    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {group: option for group, option in choices.items() if not group.startswith("hydra")}


def build(node: DictConfig, **kwargs):
    """instantiate(node), letting pti-lab's own one-line errors through unwrapped."""
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


def run(cfg: DictConfig) -> dict:
    check_top_level(cfg)
    check_components(cfg)
    device = resolve_device(cfg.device)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)

    start = time.perf_counter()
    G = build(cfg.generator, device=device)
    summary = {
        "choices": group_choices(),
        "images": 0,
        "failed": [],
        "stages": {},
        "seconds_per_image": None,
        "generator": {"resolution": G.img_resolution, "num_ws": G.num_ws, "w_dim": G.w_dim,
                      "parameters": sum(p.numel() for p in G.parameters()),
                      "load_seconds": round(time.perf_counter() - start, 3)},
    }
    if cfg.preview.count > 0:
        preview = render_preview(G, cfg.preview.count, cfg.preview.truncation_psi, cfg.preview.noise_mode, cfg.seed)
        save_png(image_grid(preview), out_dir / "preview.png")
    write_json(out_dir / "summary.json", summary)
    log.info("results in %s", out_dir.resolve())
    print(f"results: {out_dir.resolve()}")
    return summary
