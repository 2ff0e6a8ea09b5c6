"""StyleGAN3's input transform as an edit: rotate or translate the rendered image, pivot unchanged.

A StyleGAN3 generator draws its image from Fourier features whose coordinates pass through a 3x3
matrix, the inverse of the transform the image undergoes (`G.synthesis.input.transform`). Setting it
moves and turns the whole picture with no change of latent, which stylegan3-editing uses to render
unaligned images from aligned inversions. Each edit here is one such matrix, carried by the Edit
and used when it is rendered; the latents are the pivot's.

    editor=transform 'editor.rotate=[-20,20]' 'editor.translate_x=[0.1]'

Angles are degrees, counter-clockwise as displayed; translations are fractions of the image width
(x to the right, y downwards).
"""

import math
from typing import Optional, Sequence

import torch

from pti_lab.editing.editor import Edit, Editing, Editor, check_pivot, check_strengths
from pti_lab.errors import BadInputError
from pti_lab.steps import StepCallback


def image_transform(angle: float = 0.0, tx: float = 0.0, ty: float = 0.0) -> torch.Tensor:
    """The input transform [3, 3] that renders the image rotated by `angle` degrees (counter-clockwise
    as displayed) about its centre, then translated by (tx, ty) image widths: the inverse of that motion."""
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    motion = torch.tensor([[c, s, tx], [-s, c, ty], [0.0, 0.0, 1.0]], dtype=torch.float64)  # y points down
    return torch.linalg.inv(motion).float()


def has_input_transform(G: torch.nn.Module) -> bool:
    transform = getattr(getattr(getattr(G, "synthesis", None), "input", None), "transform", None)
    return isinstance(transform, torch.Tensor) and transform.shape == (3, 3)


class TransformEditor(Editor):
    def __init__(
        self,
        rotate: Sequence[float] = (),        # angles in degrees, one edit each
        translate_x: Sequence[float] = (),   # horizontal shifts in image widths, one edit each
        translate_y: Sequence[float] = (),   # vertical shifts in image widths, one edit each
    ):
        kinds = {"rotate": rotate, "translate_x": translate_x, "translate_y": translate_y}
        given = {name: values for name, values in kinds.items() if values is not None and len(values)}
        if not given:
            raise BadInputError("editor: editor=transform needs at least one of rotate, translate_x, translate_y")
        self.strengths = {name: check_strengths(values, f"editor.{name}") for name, values in given.items()}

    def prepare(self, G: torch.nn.Module) -> None:
        if not has_input_transform(G):
            raise BadInputError(f"editor=transform needs a StyleGAN3 generator (an input transform); "
                                f"this one is {type(G).__module__.rpartition('.')[2]}")

    def edits(self, G: torch.nn.Module, ws: torch.Tensor, on_step: Optional[StepCallback] = None) -> Editing:
        check_pivot(G, ws)
        self.prepare(G)
        base = G.synthesis.input.transform.detach().float().cpu()  # the generator's own (usually identity)
        motions = {"rotate": lambda t: image_transform(angle=t), "translate_x": lambda t: image_transform(tx=t),
                   "translate_y": lambda t: image_transform(ty=t)}
        return Editing([Edit(name=name, strength=t, ws=ws, transform=base @ motions[name](t))
                        for name, strengths in self.strengths.items() for t in strengths])
