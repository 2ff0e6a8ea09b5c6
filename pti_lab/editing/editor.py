"""What every editor shares: the Edit record, strength and layer-range checks, sequential edits.

An editor turns a pivot (ws [1, num_ws, w_dim]) into edited latents; the pipeline renders them with
the tuned generator and, for comparison, the original one. `prepare(G)` loads and checks what the
editor needs against the generator once, before any image; `edits(G, ws)` returns the edits of one
pivot, in order, with the losses of the optimisation behind them (StyleCLIP), as inverters and
tuners return theirs.
"""

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from pti_lab.errors import BadInputError
from pti_lab.models.stylegan2 import Generator
from pti_lab.steps import StepCallback


@dataclass(frozen=True)
class Edit:
    name: str                 # what was done, e.g. 'smile' or 'yaw+2>smile'
    strength: float           # the strength of the last step
    ws: torch.Tensor          # [1, num_ws, w_dim] edited latents
    attributes: tuple = ()    # attributes the edit aims at, last = the one it is measured on
    transform: Optional[torch.Tensor] = None  # [3, 3] StyleGAN3 input transform to render with; None = G's own


def chained_transform(first: Optional[torch.Tensor], then: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """The input transform of two edits applied in turn. Input transforms are inverse motions of the
    image: motion M1 then M2 is M2 @ M1, whose inverse is inv(M1) @ inv(M2) = first @ then."""
    if first is None or then is None:
        return then if first is None else first
    return first @ then


@dataclass
class Editing:
    edits: list[Edit]                                 # the edits of one pivot, in order
    losses: list[dict] = field(default_factory=list)  # per optimisation step (StyleCLIP); empty otherwise


def check_strengths(strengths: Sequence, where: str) -> list[float]:
    """A non-empty list of finite numbers, as floats; anything else is a one-line error."""
    values = list(strengths) if isinstance(strengths, Sequence) and not isinstance(strengths, str) else None
    if not values or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in values):
        raise BadInputError(f"{where}.strengths={strengths!r}: expected a non-empty list of numbers, e.g. [-3,3]")
    values = [float(s) for s in values]
    if not all(s == s and abs(s) != float("inf") for s in values):
        raise BadInputError(f"{where}.strengths={strengths!r}: strengths must be finite")
    return values


def check_layers(layers: Optional[Sequence], where: str) -> Optional[tuple[int, int]]:
    """None (all layers) or [start, end): the ws rows an edit changes."""
    if layers is None:
        return None
    values = list(layers)
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values) \
            or not 0 <= values[0] < values[1]:
        raise BadInputError(f"{where}.layers={layers!r}: expected [start, end) with 0 <= start < end")
    return values[0], values[1]


def layer_mask(layers: Optional[tuple[int, int]], num_ws: int, where: str) -> torch.Tensor:
    """[1, num_ws, 1] float mask of the edited ws rows."""
    mask = torch.zeros(1, num_ws, 1)
    if layers is None:
        return mask + 1
    if layers[1] > num_ws:
        raise BadInputError(f"{where}.layers={list(layers)}: the generator has only {num_ws} ws rows")
    mask[:, layers[0]:layers[1]] = 1
    return mask


def check_pivot(G: Generator, ws: torch.Tensor) -> None:
    assert ws.ndim == 3 and ws.shape[0] == 1 and ws.shape[1:] == (G.num_ws, G.w_dim), \
        f"pivot must be [1, {G.num_ws}, {G.w_dim}], got {list(ws.shape)}"  # [1, num_ws, w_dim]


def format_strength(strength: float) -> str:
    return f"{strength:+g}"


class Editor:
    """Base class of the editors."""

    attributes: tuple = ()  # attributes the edits aim at (checked against the scorer before any work)

    def prepare(self, G: Generator) -> None:
        """Load and check against G what the edits need (directions, PCA); called once per generator."""

    def edits(self, G: Generator, ws: torch.Tensor, on_step: Optional[StepCallback] = None) -> Editing:
        """The edits of pivot `ws` [1, num_ws, w_dim]; `on_step` is called after each optimisation step."""
        raise NotImplementedError


class EditorGroup(Editor):
    """Several editors: their attributes and preparation; how their edits combine is the subclass's."""

    def __init__(
        self,
        editors: list,   # the editors, in order
    ):
        if not editors:
            raise BadInputError(f"editor.editors: {type(self).__name__} needs at least one editor")
        self.editors = list(editors)
        self.attributes = tuple(name for editor in self.editors for name in editor.attributes)

    def prepare(self, G: Generator) -> None:
        for editor in self.editors:
            editor.prepare(G)


class CombinedEditor(EditorGroup):
    """Every edit of every editor, each applied to the pivot itself: one run gives the paper's
    editing table (several directions, GANSpace, StyleCLIP) from the same pivots."""

    def edits(self, G: Generator, ws: torch.Tensor, on_step: Optional[StepCallback] = None) -> Editing:
        editings = [editor.edits(G, ws, on_step) for editor in self.editors]
        return Editing([edit for e in editings for edit in e.edits], [loss for e in editings for loss in e.losses])


class SequentialEditor(EditorGroup):
    """Edits applied one after another, as in the paper's Fig. 12 (rotation, then smile): every edit
    of the first editor, then every edit of the next one applied to each of those, and so on. Each
    prefix of the chain is an output, so the grid shows the steps."""

    def edits(self, G: Generator, ws: torch.Tensor, on_step: Optional[StepCallback] = None) -> Editing:
        results, losses, frontier = [], [], [Edit(name="", strength=0.0, ws=ws)]
        for editor in self.editors:
            chained = []
            for previous in frontier:
                editing = editor.edits(G, previous.ws, on_step)
                losses += editing.losses
                for edit in editing.edits:
                    prefix = f"{previous.name}{format_strength(previous.strength)}>" if previous.name else ""
                    chained.append(Edit(name=prefix + edit.name, strength=edit.strength, ws=edit.ws,
                                        attributes=previous.attributes + edit.attributes,
                                        transform=chained_transform(previous.transform, edit.transform)))
            results += chained
            frontier = chained
        return Editing(results, losses)
