"""Several latent directions at once, each at its own strength: one edit.

    ws + t_1 n_1 + t_2 n_2 + ... + s_1 σ_k1 v_k1 + ...

n_i are unit directions (shipped InterfaceGAN boundaries by name, or .pt/.npy files, as
editor=interfacegan takes them), v_k GANSpace principal components with their standard deviations
σ_k (strengths in standard deviations, GANSpace's relative mode). This is what the studio's sliders
compose, and a saved studio recipe replays as exactly this editor:

    editor=mix 'editor.directions=[smile,age]' 'editor.strengths=[2.0,-1.0]' 'editor.components=[0]' \
        'editor.component_strengths=[1.5]'

Terms are added one after another in the order given, so the same terms give the same latent bit for bit.
"""

from pathlib import Path
from typing import Optional

import torch

from pti_lab.editing.directions import PCA, is_file_reference, load_direction, load_pca
from pti_lab.editing.editor import Edit, Editing, Editor, check_layers, check_pivot, format_strength, layer_mask
from pti_lab.editing.ganspace import cached_pca
from pti_lab.errors import BadInputError
from pti_lab.models.stylegan2 import Generator
from pti_lab.steps import StepCallback


def _numbers(values, where: str) -> list[float]:
    values = list(values or [])
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) != float("inf") and v == v
               for v in values):
        raise BadInputError(f"{where}={values!r}: expected a list of finite numbers")
    return [float(v) for v in values]


class MixEditor(Editor):
    def __init__(
        self,
        directions: Optional[list[str]] = None,           # boundary names or .pt/.npy files (unit-normalised)
        strengths: Optional[list[float]] = None,          # one per direction, in W units
        components: Optional[list[int]] = None,           # GANSpace component indices
        component_strengths: Optional[list[float]] = None,  # one per component, in standard deviations
        pca: Optional[str] = None,                        # official-format PCA file; null = fit on the generator
        num_samples: int = 100_000,                       # mapped samples of the fitted PCA
        seed: int = 0,                                    # their seed
        boundaries: Optional[str] = None,                 # boundaries file for names; null = shipped synthfaces
        layers: Optional[list[int]] = None,               # [start, end) ws rows to edit; null = all
    ):
        self.directions = [str(d) for d in (directions or [])]
        self.strengths = _numbers(strengths, "editor.strengths")
        self.components = list(components or [])
        self.component_strengths = _numbers(component_strengths, "editor.component_strengths")
        if len(self.directions) != len(self.strengths):
            raise BadInputError(f"editor: {len(self.directions)} directions but {len(self.strengths)} strengths")
        if len(self.components) != len(self.component_strengths):
            raise BadInputError(f"editor: {len(self.components)} components but {len(self.component_strengths)} "
                                f"component_strengths")
        if not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in self.components):
            raise BadInputError(f"editor.components={self.components!r}: expected component indices >= 0")
        if not self.directions and not self.components:
            raise BadInputError("editor: a mix needs at least one direction or component")
        self.pca_file, self.num_samples, self.seed, self.boundaries = pca, num_samples, seed, boundaries
        self.layers = check_layers(layers, "editor")
        self.steps: Optional[list[torch.Tensor]] = None  # [w_dim] per term, set by prepare
        self.mask: Optional[torch.Tensor] = None         # [1, num_ws, 1]

    def prepare(self, G: Generator) -> None:
        steps = [load_direction(d, G.w_dim, self.boundaries) for d in self.directions]
        if self.components:
            pca: PCA = load_pca(self.pca_file, G.w_dim) if self.pca_file else cached_pca(G, self.num_samples, self.seed)
            for k in self.components:
                if k >= len(pca.components):
                    raise BadInputError(f"editor.components: {k} is not one of the PCA's {len(pca.components)}")
                steps.append(pca.components[k] * pca.std[k])
        self.steps = steps
        self.mask = layer_mask(self.layers, G.num_ws, "editor")

    def mix(self, ws: torch.Tensor, strengths: list[float]) -> torch.Tensor:
        """ws plus each prepared term times its strength (directions first, then components)."""
        mask = self.mask.to(ws)
        for step, t in zip(self.steps, strengths):
            if t != 0:
                ws = ws + t * (mask * step.to(ws))
        return ws

    def name(self) -> str:
        terms = [Path(d).stem if is_file_reference(d) else d for d in self.directions] + \
            [f"pc{k}" for k in self.components]
        return ",".join(f"{term}{format_strength(t)}" for term, t in
                        zip(terms, self.strengths + self.component_strengths))

    def edits(self, G: Generator, ws: torch.Tensor, on_step: Optional[StepCallback] = None) -> Editing:
        check_pivot(G, ws)
        if self.steps is None:
            self.prepare(G)
        strengths = self.strengths + self.component_strengths
        return Editing([Edit(name=self.name(), strength=max(strengths, key=abs), ws=self.mix(ws, strengths))])
