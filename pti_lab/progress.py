"""Progress of an optimisation loop: a tqdm bar on a terminal, a few log lines anywhere else.

Outside a terminal (a SLURM job's log, `python run.py > run.log 2>&1`) every tqdm refresh is kept in
the file: ~46 KB of bars per 64 px image. There a `StepProgress` writes instead, through the logger
`pti_lab.progress` at INFO, one line such as

    WInverter: step 225/450 (50 %), dist 0.1234, 12.3 s

when the loop has gone at least EVERY_PERCENT % of its steps AND at least MIN_SECONDS since its last
line (or its start), whichever comes later: at most 100 // EVERY_PERCENT = 4 lines per loop, none for
a loop done in under MIN_SECONDS (the driver's line per image then says enough).

Byte budget (issue 22: a 32-image run's log under 100 KB). A line is ~55 bytes of message after
Hydra's 52-byte prefix "[2026-12-06 18:43:20,620][pti_lab.progress][INFO] - ": ~106 bytes in all.
An image runs two loops (inversion, 450 steps by default; tuning, 350), at most 3 lines each at 25 %
(a line needs ceil(450 / 4) = 113 or ceil(350 / 4) = 88 steps after the last), so at most 6 lines,
~0.64 KB an image however slow the machine (tests/test_progress.py): ~20 KB for 32 images, beside
the driver's ~80-byte line per image (~2.6 KB) and a few KB of start-up and W&B lines. A batch of
images, or multi-ID tuning, shares one loop and so writes less per image.

Usage (pti_lab/inversion/projector.py, pti_lab/tuning/pivotal.py):

    from pti_lab.progress import StepProgress

    with StepProgress(self.steps, type(self).__name__, enabled=self.progress) as steps:
        for step in steps:                  # step = 0 .. self.steps - 1
            ...
            steps.show(dist=dist.mean())    # float, str or 0-d tensor: read (a GPU sync) only when shown
            if converged:
                break                       # leaving the `with` closes the bar
"""

import logging
import sys
from time import monotonic
from typing import Iterator, SupportsFloat, Union

import torch
from tqdm import tqdm

log = logging.getLogger(__name__)

EVERY_PERCENT = 25  # off a terminal: a line after at least this share of the steps since the last...
MIN_SECONDS = 60.0  # ...and at least this long since the last (or the start)

Value = Union[SupportsFloat, str]  # a value shown beside the step: numbers as 4 significant digits


class StepProgress:
    """range(total) to iterate over, with its progress shown as the module docstring says."""

    def __init__(self,
                 total: int,            # steps of the loop: iterating yields 0 .. total - 1
                 desc: str,             # what runs: the bar's label and each line's first word
                 enabled: bool = True,  # False: no bar, no lines
                 ):
        self.total, self.desc = total, desc
        self.values: dict[str, Value] = {}  # the latest show(), formatted only when displayed
        self.started = self.last_shown = monotonic()  # last_shown: the last line or bar postfix
        self.last_line_step = 0
        on_terminal = enabled and sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=desc, leave=False) if on_terminal else None
        self.log_lines = enabled and not on_terminal

    def __iter__(self) -> Iterator[int]:
        for step in range(self.total):
            yield step
            self.advance(step + 1)

    def show(self, **values: Value) -> None:
        """Values to display beside the step (they replace the last ones); tensors are kept detached,
        so that their autograd graph is freed with the step."""
        self.values = {name: value.detach() if isinstance(value, torch.Tensor) else value
                       for name, value in values.items()}

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "StepProgress":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def advance(self, done: int) -> None:
        """`done` steps are finished: move the bar, or log a line if one is due."""
        now = monotonic()
        if self.bar is not None:
            if self.values and now - self.last_shown >= self.bar.mininterval:  # tqdm redraws no faster
                self.bar.set_postfix(self.formatted(), refresh=False)
                self.last_shown = now
            self.bar.update()
        elif (self.log_lines and (done - self.last_line_step) * 100 >= EVERY_PERCENT * self.total
              and now - self.last_shown >= MIN_SECONDS):
            values = "".join(f", {name} {text}" for name, text in self.formatted().items())
            log.info("%s: step %d/%d (%d %%)%s, %.1f s", self.desc, done, self.total, 100 * done // self.total,
                     values, now - self.started)
            self.last_shown, self.last_line_step = now, done

    def formatted(self) -> dict[str, str]:
        return {name: value if isinstance(value, str) else f"{float(value):.4g}" for name, value in self.values.items()}
