"""GANSpace editing: principal components of W, applied on a range of ws rows.

The PCA is computed from `num_samples` mapped z (seeded), in batches: the mean and the second-moment
matrix are accumulated in float64, so memory does not grow with the sample count and the result is
the exact PCA of all samples. It is cached per generator like the W statistics
(<cache_dir>/ganspace/<fingerprint>.pt, in the official file layout). An official GANSpace /
PTI / e4e `ffhq_pca.pt` loads with `editor.pca=path`.

Strength semantics (`mode`):
  relative  ws + s * std_k * v_k                          (the GANSpace paper; s = 0 changes nothing)
  absolute  the coordinate of ws[0] along v_k is set to s * std_k, as PTI's and e4e's code do
            (`delta = (s - coord) * v_k * std_k`)

    python -m pti_lab.editing.ganspace --out pca.pt [--generator CKPT] [--samples 100000]
"""

import argparse
import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from pti_lab.atomic import save_torch
from pti_lab.editing.directions import PCA, load_pca
from pti_lab.editing.editor import Edit, Editing, Editor, check_layers, check_pivot, check_strengths, layer_mask
from pti_lab.errors import BadInputError
from pti_lab.inversion.w_stats import fingerprint
from pti_lab.generators import make_generator
from pti_lab.models.stylegan2 import Generator
from pti_lab.steps import StepCallback
from pti_lab.runtime import keep_freed_memory
from pti_lab.weights import cache_dir

log = logging.getLogger(__name__)

VERSION = "ganspace-v1"  # part of the cache fingerprint: bump when the computation changes
MODES = ("relative", "absolute")


def fit_pca(G: Generator, num_samples: int = 100_000, seed: int = 0, batch: int = 10_000,
            components: int = 80) -> PCA:
    """PCA of G's W from `num_samples` mapped z ~ N(0, I) (RandomState(seed)), accumulated in batches."""
    if G.c_dim > 0:
        raise BadInputError(f"ganspace: the generator is conditional (c_dim={G.c_dim}); the PCA needs unconditional samples")
    device = next(G.parameters()).device
    rng = np.random.RandomState(seed)
    total = torch.zeros(G.w_dim, dtype=torch.float64)
    second = torch.zeros(G.w_dim, G.w_dim, dtype=torch.float64)
    done = 0
    while done < num_samples:
        count = min(batch, num_samples - done)
        z = torch.from_numpy(rng.randn(count, G.z_dim)).float().to(device)
        with torch.no_grad():
            w = G.mapping(z, None, skip_w_avg_update=True)[:, 0].double().cpu()  # [count, w_dim]
        total += w.sum(dim=0)
        second += w.T @ w
        done += count
    mean = total / num_samples
    covariance = second / num_samples - torch.outer(mean, mean)
    variances, vectors = torch.linalg.eigh(covariance)              # ascending
    order = torch.argsort(variances, descending=True)[:min(components, G.w_dim)]
    vectors = vectors[:, order].T                                    # [K, w_dim]
    # A component's sign is arbitrary; fix it so that the largest entry is positive (reproducible).
    signs = torch.sign(vectors.gather(1, vectors.abs().argmax(dim=1, keepdim=True)))
    return PCA(mean=mean.float(), components=(vectors * signs).float(),
               std=variances[order].clamp(min=0).sqrt().float())


def cached_pca(G: Generator, num_samples: int, seed: int) -> PCA:
    """fit_pca of G, from <cache_dir>/ganspace when computed before."""
    path = cache_dir() / "ganspace" / f"{fingerprint(G, num_samples, seed, VERSION)}.pt"
    if path.is_file():
        try:
            return load_pca(str(path), G.w_dim)
        except Exception as error:  # a damaged cache file is recomputed, never fatal
            log.warning("ganspace: ignoring unreadable cache file %s (%s)", path, error)
    pca = fit_pca(G, num_samples, seed)
    save_torch(pca.to_official(), path)
    return pca


class GANSpaceEditor(Editor):
    def __init__(
        self,
        component: int,                        # principal component index (0 = largest variance)
        strengths: list[float],                # s, in standard deviations along the component
        layers: Optional[list[int]] = None,    # [start, end) ws rows to edit; null = all
        mode: str = "relative",                # relative: ws + s*std*v; absolute: coordinate set to s*std (PTI/e4e)
        pca: Optional[str] = None,             # official-format PCA file or URL; null = fit on the generator
        num_samples: int = 100_000,            # mapped samples of the fitted PCA
        seed: int = 0,                         # RandomState seed of the fitted PCA's samples
        attribute: Optional[str] = None,       # attribute scored as target_delta; null = none
    ):
        if not isinstance(component, int) or isinstance(component, bool) or component < 0:
            raise BadInputError(f"editor.component={component!r}: expected a component index >= 0")
        if mode not in MODES:
            raise BadInputError(f"editor.mode={mode!r}: expected one of {', '.join(MODES)}")
        if num_samples < 2:
            raise BadInputError(f"editor.num_samples={num_samples}: the PCA needs at least 2 samples")
        self.component, self.mode, self.pca_file = component, mode, pca
        self.strengths = check_strengths(strengths, "editor")
        self.layers = check_layers(layers, "editor")
        self.num_samples, self.seed = num_samples, seed
        self.attributes = (attribute,) if attribute else ()
        self.pca: Optional[PCA] = None
        self.mask: Optional[torch.Tensor] = None  # [1, num_ws, 1]

    def prepare(self, G: Generator) -> None:
        pca = load_pca(self.pca_file, G.w_dim) if self.pca_file else cached_pca(G, self.num_samples, self.seed)
        if self.component >= len(pca.components):
            raise BadInputError(f"editor.component={self.component}: the PCA has {len(pca.components)} components")
        self.pca = pca
        self.mask = layer_mask(self.layers, G.num_ws, "editor")

    def edits(self, G: Generator, ws: torch.Tensor, on_step: Optional[StepCallback] = None) -> Editing:
        check_pivot(G, ws)
        if self.pca is None:
            self.prepare(G)
        vector = self.pca.components[self.component].to(ws)  # [w_dim]
        std = self.pca.std[self.component].item()
        coordinate = ((ws[0, 0] - self.pca.mean.to(ws)) @ vector).item() / std  # of ws[0], in std units
        mask = self.mask.to(ws)
        edits = []
        for s in self.strengths:
            amount = s if self.mode == "relative" else s - coordinate
            edits.append(Edit(name=f"pc{self.component}", strength=s, ws=ws + mask * (amount * std) * vector,
                              attributes=self.attributes))
        return Editing(edits)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pti_lab.editing.ganspace", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the PCA (official ffhq_pca.pt layout)")
    parser.add_argument("--generator", default=None, help="checkpoint (default: shipped synthfaces)")
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--components", type=int, default=80)
    args = parser.parse_args(argv)
    keep_freed_memory()
    G = make_generator(args.generator)
    pca = fit_pca(G, args.samples, args.seed, components=args.components)
    save_torch(pca.to_official(), args.out)
    explained = (pca.std[:10] ** 2 / (pca.std ** 2).sum()).tolist()
    print(f"wrote {args.out}: {len(pca.components)} components of W ({G.w_dim}-d); "
          f"variance shares (among those kept) of the first 10: {', '.join(f'{v:.3f}' for v in explained)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
