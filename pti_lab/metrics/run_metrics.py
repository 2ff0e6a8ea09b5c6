"""What a run measures (config group `metrics`): its reconstructions, at one evaluation size, and its edits."""

from typing import Optional

import torch

from pti_lab.errors import BadInputError
from pti_lab.metrics.edit_scores import EditMetrics
from pti_lab.metrics.image import MS_SSIM_MIN_COARSEST, reconstruction_row


class RunMetrics:
    def __init__(
        self,
        eval_size: Optional[int] = 256,  # reconstruction metrics on both images resized to this (px); None: as rendered
        attributes=None,                 # attribute scorer of the edits (predict(images) -> {name: [N]}); None: none
    ):
        if eval_size is not None and (isinstance(eval_size, bool) or not isinstance(eval_size, int)
                                      or eval_size < MS_SSIM_MIN_COARSEST):
            raise BadInputError(f"metrics.eval_size must be null or an integer >= {MS_SSIM_MIN_COARSEST} "
                                f"(pixels), got {eval_size!r}")
        self.eval_size = eval_size
        self.edits = EditMetrics(attributes)

    def size_at(self, resolution: int) -> int:
        """The size reconstructions of a generator of this resolution are measured at."""
        return resolution if self.eval_size is None else self.eval_size

    def reconstruction(self, target: torch.Tensor, reconstruction: torch.Tensor, identity=None) -> dict:
        """The results-row metrics of one reconstruction [1, 3, R, R] (pti_lab.metrics.image.reconstruction_row)."""
        return reconstruction_row(target, reconstruction, identity, self.eval_size)
