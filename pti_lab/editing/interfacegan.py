"""InterfaceGAN editing: move the pivot along the unit normal n of an attribute's linear boundary,
ws + t * n for each strength t, optionally only on a range of ws rows, and optionally
*conditional*: n with its components along other boundaries removed (InterfaceGAN's
`n - C (C^T C)^-1 C^T n`, renormalised), so that e.g. a smile edit leaves the pose alone.

    editor=interfacegan editor.direction=smile 'editor.strengths=[-3,3]'
    'editor.direction=[smile,age,pose]'      # several directions, each at every strength
    editor.direction=path/to/age.pt          # PTI's [1, 512] tensor, or an InterfaceGAN .npy, or a URL
    'editor.condition=[yaw]'                  # conditional editing
    'editor.layers=[0,6]'                     # coarse layers only
"""

import logging
from pathlib import Path
from typing import Optional, Union

import torch

from pti_lab.editing.directions import boundary_names, is_file_reference, load_direction, read_boundaries
from pti_lab.editing.editor import Edit, Editing, Editor, check_layers, check_pivot, check_strengths, layer_mask
from pti_lab.errors import BadInputError
from pti_lab.models.fingerprint import generator_fingerprint
from pti_lab.models.stylegan2 import Generator
from pti_lab.steps import StepCallback

log = logging.getLogger(__name__)


def conditional_direction(direction: torch.Tensor, conditions: list[torch.Tensor]) -> torch.Tensor:
    """`direction` [D] without its components in the span of `conditions` ([D] each), unit length."""
    if not conditions:
        return direction
    C = torch.stack(conditions, dim=1).double()                     # [D, K]
    n = direction.double()
    projected = n - C @ torch.linalg.solve(C.T @ C, C.T @ n)        # remove the span of C
    if projected.norm() < 1e-6 * n.norm():
        raise BadInputError("editor.condition: the direction lies in the span of the condition boundaries")
    return (projected / projected.norm()).float()


def attribute_of(direction: str) -> tuple:
    """The attribute a named direction edits (its name); a file says nothing about its attribute."""
    return () if is_file_reference(direction) else (direction,)


class InterfaceGANEditor(Editor):
    def __init__(
        self,
        direction: Union[str, list[str]],      # boundary name ('smile', ...) or .pt/.npy file or URL; or a list
        strengths: list[float],                # t in ws + t * n, one edit each (per direction)
        layers: Optional[list[int]] = None,    # [start, end) ws rows to edit; null = all
        condition: Optional[list[str]] = None,  # boundaries to keep unchanged (conditional editing)
        boundaries: Optional[str] = None,      # boundaries file for names; null = shipped synthfaces ones
        attribute: Optional[str] = None,       # attribute scored as target_delta; null = the direction's name
    ):
        directions = [direction] if isinstance(direction, str) else list(direction or [])
        if not directions or not all(isinstance(d, str) and d for d in directions):
            raise BadInputError(f"editor.direction={direction!r}: expected a boundary name or a file, or a list of them")
        if attribute and len(directions) > 1:
            raise BadInputError("editor.attribute: give it for a single direction (each named direction scores its own)")
        self.strengths = check_strengths(strengths, "editor")
        self.layers = check_layers(layers, "editor")
        self.directions, self.boundaries = directions, boundaries
        self.condition = list(condition or [])
        names = [name for name in [*directions, *self.condition] if not is_file_reference(name)]
        if names:  # unknown names fail at config time, listing the known ones
            known = boundary_names(boundaries)
            for name in names:
                if name not in known:
                    raise BadInputError(f"editor: unknown direction {name!r}; available: {', '.join(known)} "
                                        f"(or a .pt/.npy file)")
        self.targets = [(attribute,) if attribute else attribute_of(d) for d in directions]  # per direction
        self.attributes = tuple(name for target in self.targets for name in target)
        self.vectors: Optional[list[torch.Tensor]] = None  # [w_dim] unit normals, set by prepare
        self.mask: Optional[torch.Tensor] = None           # [1, num_ws, 1]

    def prepare(self, G: Generator) -> None:
        if any(not is_file_reference(name) for name in [*self.directions, *self.condition]):
            fitted_on = read_boundaries(self.boundaries).get("generator_fingerprint")
            if fitted_on and fitted_on != generator_fingerprint(G):
                log.warning("editor: the boundaries %s were fitted on another generator (%s...); their edits may "
                            "not mean what their names say", self.boundaries or "shipped with synthfaces", fitted_on[:12])
        conditions = [load_direction(name, G.w_dim, self.boundaries) for name in self.condition]
        self.vectors = [conditional_direction(load_direction(d, G.w_dim, self.boundaries), conditions)
                        for d in self.directions]
        self.mask = layer_mask(self.layers, G.num_ws, "editor")

    def edits(self, G: Generator, ws: torch.Tensor, on_step: Optional[StepCallback] = None) -> Editing:
        check_pivot(G, ws)
        if self.vectors is None:
            self.prepare(G)
        edits = []
        for direction, vector, target in zip(self.directions, self.vectors, self.targets):
            step = (self.mask * vector).to(ws)  # [1, num_ws, w_dim]
            name = Path(direction).stem if is_file_reference(direction) else direction
            edits += [Edit(name=name, strength=t, ws=ws + t * step, attributes=target) for t in self.strengths]
        return Editing(edits)
