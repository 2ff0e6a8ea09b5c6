"""The bookkeeping of one batched optimisation: which of its K problems are still optimised, what each
recorded per step, and what each ended with; so that the loop itself shows only the method.

A problem that turns bad fails alone: a refused input before the loop, a non-finite loss during it;
its error takes the place of its result and the other problems go on as if it had never been there.
"""

import math
from typing import Any, Callable, Optional, Sequence

import torch

from pti_lab.batching.stacked import accepted
from pti_lab.errors import PTILabError
from pti_lab.steps import StepCallback


class Problems:
    def __init__(
        self,
        items: Sequence[Any],                 # the K problems' inputs
        check: Callable[[Any], None],         # raises BadInputError for an input that cannot be optimised
        on_steps: Optional[Sequence[Optional[StepCallback]]] = None,  # per problem, called after each step
    ):
        self.results, self.live = accepted(items, check)  # live: the problems still optimised, in row order
        self.on_steps = list(on_steps) if on_steps is not None else [None] * len(items)
        self.losses: dict[int, list[dict]] = {k: [] for k in self.live}  # per problem, its steps' losses

    def __len__(self) -> int:
        return len(self.live)

    def report(self, step: int, losses: dict[str, torch.Tensor], renders: torch.Tensor,
               failure: Callable[[int, dict], PTILabError], skip: Sequence[int] = ()) -> list[int]:
        """Record each live row's losses of this step ({name: [K]}, "loss" among them) and pass them with its
        renders[row] to its callback; a row whose loss is not finite gets failure(row, its losses) as its
        result instead. Rows in `skip` record nothing. Returns the rows that failed."""
        names = list(losses)
        failed = []
        for row, values in enumerate(torch.stack([losses[name].float() for name in names], 1).tolist()):
            if row in skip:
                continue
            k, record = self.live[row], dict(zip(names, values))
            if not math.isfinite(record["loss"]):
                self.results[k] = failure(row, record)
                failed.append(row)
                continue
            self.losses[k].append(record)
            if self.on_steps[k] is not None:
                self.on_steps[k](step, record, renders[row].detach())
        return failed

    def keep(self, rows: list[int], device: torch.device) -> torch.Tensor:
        """Go on with these rows only; returns them as an index tensor for the caller's stacked tensors."""
        self.live = [self.live[row] for row in rows]
        return torch.tensor(rows, dtype=torch.long, device=device)
