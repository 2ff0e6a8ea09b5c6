"""The stages a run is made of, and what the driver relies on from each: declared contracts.

    image -> Inverter -> pivot -> Tuner -> tuned generator -> Editor -> metrics -> recorder

Each config group builds one component (conf/<group>/*.yaml, hydra.utils.instantiate); the pipeline
checks it against its contract here when it builds the run (the logger's contract is the recorder's,
pti_lab/tracking/recorder.py), so the driver calls what a contract declares and never asks a component
what it can do. `None` is the one way to say a stage is off
(`tuner: null`, `regularizer: null`, `editor: null`, `identity: null`, `logger: null`).

Batches: `invert_batch` and `tune_batch` take K problems and return one result per problem, each the one
it would give alone, or in its place the error (a PTILabError) that failed it: the others go on.
"""

from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence, runtime_checkable

import torch

from pti_lab.config import check_contract
from pti_lab.editing.editor import Editing
from pti_lab.errors import PTILabError
from pti_lab.inversion.inverter import Inversion
from pti_lab.metrics.run_metrics import RunMetrics
from pti_lab.models.stylegan2 import Generator
from pti_lab.steps import StepCallback
from pti_lab.tuning.pivotal import Tuning


@runtime_checkable
class Inverter(Protocol):
    """image -> pivot (conf/inverter)."""

    weights_fingerprint: Optional[str]  # sha256 of its own weights (an encoder's: part of the pivot cache key); None: none

    def prepare(self, G: Generator) -> None:
        """Check, before any image, that this inverter can invert for G (one-line BadInputError if not)."""

    def invert_batch(self, G: Generator, targets: Sequence[torch.Tensor], seed: int = 0,
                     on_steps: Optional[Sequence[Optional[StepCallback]]] = None) -> list[Inversion | PTILabError]:
        """K targets [1, 3, R, R] in [-1, 1] -> their pivots [1, num_ws, w_dim]."""

    def one_step(self) -> "Inverter":
        """A copy that takes one optimisation step, quietly (what the batch memory probe runs)."""


@runtime_checkable
class Perceptual(Protocol):
    """The LPIPS network of the tuning loss and the locality term (conf/perceptual)."""

    def feature_maps_unchecked(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised feature maps of images [N, 3, R, R] (a generator's renders: any range)."""

    def distance(self, feats_x: Sequence[torch.Tensor], feats_y: Sequence[torch.Tensor]) -> torch.Tensor:
        """LPIPS from two outputs of feature_maps_unchecked -> [N, 1, 1, 1]."""

    def forward_unchecked(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS(x, y) -> [N, 1, 1, 1]."""


@runtime_checkable
class Tuner(Protocol):
    """pivot -> tuned generator (conf/tuner)."""

    def tune_batch(self, G: Generator, targets: Sequence[torch.Tensor], pivots: Sequence[torch.Tensor],
                   perceptual: Perceptual, regularizer: Optional[object] = None,
                   on_steps: Optional[Sequence[Optional[StepCallback]]] = None) -> list[Tuning | PTILabError]:
        """K generators, generator k tuned for targets[k] [N, C, R, R] at pivots[k] [N, num_ws, w_dim]."""

    def tune(self, G: Generator, targets: torch.Tensor, pivots: torch.Tensor, perceptual: Perceptual,
             regularizer: Optional[object] = None, on_step: Optional[StepCallback] = None) -> Tuning:
        """One generator tuned for N images (multi-ID when N > 1); raises the error that failed it."""

    def one_step(self) -> "Tuner":
        """A copy that takes one step, quietly and without early stop (what the batch memory probe runs)."""


@runtime_checkable
class Editor(Protocol):
    """pivot -> edited latents (conf/editor)."""

    attributes: tuple  # the attributes the edits aim at, checked against the metrics' scorer before any work

    def prepare(self, G: Generator) -> None:
        """Load and check against G what the edits need (directions, PCA), before any image."""

    def edits(self, G: Generator, ws: torch.Tensor, on_step: Optional[StepCallback] = None) -> Editing:
        """The edits of pivot ws [1, num_ws, w_dim] rendered by G."""


@runtime_checkable
class Identity(Protocol):
    """Face identity of id_sim (conf/identity)."""

    differentiable: bool  # embeddings pass gradients to the images (usable as an ID loss, e.g. StyleCLIP's)

    def compare(self, images_a: torch.Tensor, images_b: torch.Tensor) -> tuple[list, list]:
        """(similarities, reasons): per pair, a cosine similarity or None with the reason it has none."""


CONTRACTS = {"inverter": Inverter, "perceptual": Perceptual, "tuner": Tuner, "editor": Editor, "identity": Identity}


@dataclass
class Stages:
    """The components a run is made of, built from the config (pti_lab/pipeline.py)."""
    generator: Generator                 # the base generator (never modified)
    inverter: Inverter                   # image -> pivot
    perceptual: Perceptual               # LPIPS of the tuning loss
    identity: Optional[Identity]         # face identity for id_sim; None = not measured
    tuner: Optional[Tuner] = None        # pivot -> tuned generator; None = no tuning
    regularizer: Optional[object] = None  # locality regulariser of the tuning; None = none
    editor: Optional[Editor] = None      # latent edits of the pivots; None = no editing
    metrics: RunMetrics = field(default_factory=RunMetrics)  # reconstruction and edit metrics

    def __post_init__(self):
        for name, contract in CONTRACTS.items():
            component = getattr(self, name)
            if component is not None:
                check_contract(name, component, contract)
