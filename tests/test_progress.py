"""StepProgress: a tqdm bar on a terminal; off one, at most a few log lines per loop (issue 22)."""

import functools
import io
import logging
import sys

import pytest
import torch
from tqdm import tqdm

from pti_lab import progress
from pti_lab.progress import StepProgress


class Clock:
    """progress.monotonic, a clock that only the test moves on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.now = 1000.0
        monkeypatch.setattr(progress, "monotonic", lambda: self.now)


class Stderr(io.StringIO):
    """sys.stderr as a terminal or as a file (a log), whatever pytest's own stderr is (-s)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, terminal: bool):
        super().__init__()
        self.terminal = terminal
        monkeypatch.setattr(sys, "stderr", self)

    def isatty(self) -> bool:
        return self.terminal


def run_loop(total: int, seconds_per_step: float, clock: Clock, enabled: bool = True, desc: str = "WInverter") -> None:
    with StepProgress(total, desc, enabled) as steps:
        for step in steps:
            clock.now += seconds_per_step
            steps.show(dist=torch.tensor(1.0 / (step + 1)))


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "pti_lab.progress"]


@pytest.mark.parametrize("seconds_per_step, expected", [
    (0.01, []),  # 4.5 s in all: under MIN_SECONDS, no line
    (0.2, ["WInverter: step 300/450 (66 %), dist 0.003333, 60.0 s"]),  # time is the rarer gate: 60 s
    (1.0, ["WInverter: step 113/450 (25 %), dist 0.00885, 113.0 s",  # the share is the rarer gate: 113 steps apart
           "WInverter: step 226/450 (50 %), dist 0.004425, 226.0 s",
           "WInverter: step 339/450 (75 %), dist 0.00295, 339.0 s"]),
    (100.0, ["WInverter: step 113/450 (25 %), dist 0.00885, 11300.0 s",  # however slow: still 3 lines
             "WInverter: step 226/450 (50 %), dist 0.004425, 22600.0 s",
             "WInverter: step 339/450 (75 %), dist 0.00295, 33900.0 s"]),
])
def test_off_a_terminal_a_450_step_loop_logs_a_few_lines(monkeypatch, caplog, seconds_per_step, expected):
    caplog.set_level(logging.INFO, logger="pti_lab.progress")
    stderr = Stderr(monkeypatch, terminal=False)
    run_loop(450, seconds_per_step, Clock(monkeypatch))
    assert lines(caplog) == expected
    assert stderr.getvalue() == ""  # no bar


def test_log_lines_of_a_32_image_run_fit_the_byte_budget(monkeypatch, caplog):
    """The docstring's budget at the default steps (450 inversion, 350 tuning), one step a second:
    the most lines a loop can write, under Hydra's log format."""
    caplog.set_level(logging.INFO, logger="pti_lab.progress")
    Stderr(monkeypatch, terminal=False)
    clock = Clock(monkeypatch)
    run_loop(450, 1.0, clock, desc="WInverter")
    run_loop(350, 1.0, clock, desc="PivotalTuner")
    hydra_format = logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    per_image = sum(len(hydra_format.format(record)) + 1 for record in caplog.records)
    assert len(caplog.records) == 6
    assert 32 * per_image < 25_000


@pytest.mark.parametrize("terminal", [False, True])
def test_disabled_writes_nothing(monkeypatch, caplog, capsys, terminal):
    caplog.set_level(logging.DEBUG)
    stderr = Stderr(monkeypatch, terminal)
    run_loop(450, 1.0, Clock(monkeypatch), enabled=False)
    assert caplog.records == []
    assert stderr.getvalue() == "" and capsys.readouterr() == ("", "")


def test_on_a_terminal_a_tqdm_bar_and_no_lines(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="pti_lab.progress")
    terminal = Stderr(monkeypatch, terminal=True)
    monkeypatch.setattr(progress, "tqdm", functools.partial(tqdm, mininterval=0))  # redrawn at every step
    run_loop(450, 1.0, Clock(monkeypatch))
    assert lines(caplog) == []
    drawn = terminal.getvalue().split("\r")
    assert "WInverter: 100%" in drawn[-3] and "450/450" in drawn[-3] and "dist=0.002222" in drawn[-3]
    assert drawn[-2].strip() == ""  # leave=False: the bar is wiped when the loop ends


def test_leaving_the_loop_early_closes_the_bar(monkeypatch):
    Stderr(monkeypatch, terminal=True)
    with StepProgress(10, "PivotalTuner") as steps:
        for step in steps:
            if step == 3:
                break
    assert steps.bar.disable  # tqdm's mark of a closed bar


def test_shown_tensors_are_detached(monkeypatch, caplog):
    """A value kept from one step to the next must not keep that step's autograd graph alive."""
    caplog.set_level(logging.INFO, logger="pti_lab.progress")
    Stderr(monkeypatch, terminal=False)
    clock = Clock(monkeypatch)
    weight = torch.ones((), requires_grad=True)
    with StepProgress(4, "JointTuner") as steps:
        for _ in steps:
            clock.now += 60
            steps.show(loss=weight * 2, note="warm-up")
            assert not steps.values["loss"].requires_grad
    assert lines(caplog)[0] == "JointTuner: step 1/4 (25 %), loss 2, note warm-up, 60.0 s"
    assert len(lines(caplog)) == 4  # 100 // EVERY_PERCENT: the most a loop writes
