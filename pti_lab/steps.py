"""The per-step callback of every optimisation (inversion, tuning, StyleCLIP editing).

Inverters, tuners and editors call `on_step(step, losses, renders)` after each optimisation step:
the step index, the losses of that step as floats, and the images rendered at that step
([N, C, R, R], detached; a generator's raw output, so not necessarily in [-1, 1]). The run's
recorder passes them on live (W&B curves and previews); the optimisers know nothing about it.
"""

from typing import Callable, Optional

import torch

StepCallback = Callable[[int, dict[str, float], Optional[torch.Tensor]], None]
