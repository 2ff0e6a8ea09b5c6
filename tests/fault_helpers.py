"""Helpers of the fault-injection tests: start run.py, kill it with SIGKILL when a file shows it has
reached a given point, and check that a run directory lost nothing and holds no damaged file."""

import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Optional

import torch
from PIL import Image

from pti_lab.tracking.store import RunStore
from pti_lab.tracking.wandb_logger import WandbLogger
from tests.conftest import REPO

class Run:
    """`python run.py ARGS` in the background (W&B disabled, one torch thread) on a pseudo-terminal,
    so that the progress bars of the inversion and the tuning show where it is (`output`)."""

    def __init__(self, *args: str, env: Optional[dict] = None):
        environment = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", **(env or {})}
        master, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # tqdm: 0 columns = no bar
        self.process = subprocess.Popen([sys.executable, "run.py", *args], cwd=REPO, env=environment,
                                        stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal)
        os.close(terminal)
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self.read, args=(master,), daemon=True)
        self.reader.start()

    def read(self, master: int) -> None:
        try:
            while chunk := os.read(master, 65536):
                self.chunks.append(chunk)
        except OSError:  # EIO: the process closed the terminal
            pass
        finally:
            os.close(master)

    @property
    def output(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")

    def shows(self, pattern: str) -> bool:
        return re.search(pattern, self.output) is not None

    def wait(self, timeout: float = 600) -> int:
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code

    def kill_when(self, reached: Callable[[], bool], timeout: float = 300) -> None:
        """SIGKILL the run as soon as `reached()` is true (polled every 20 ms); fail if it ends first."""
        deadline = time.monotonic() + timeout
        while not reached():
            if self.process.poll() is not None:
                raise AssertionError(f"the run ended (exit {self.process.returncode}) before the kill point:\n"
                                     + self.output[-3000:])
            if time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError("the kill point was not reached in time:\n" + self.output[-3000:])
            time.sleep(0.02)
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.wait() == -signal.SIGKILL


def rows_of(run_dir: Path) -> list[dict]:
    return RunStore(run_dir).results() if (run_dir / "results.jsonl").is_file() else []


def has_row(run_dir: Path, image: str, stage: str) -> bool:
    return any(row["image"] == image and row["stage"] == stage for row in rows_of(run_dir))


def step_shown(run: Run, bar: str, at_least: int) -> bool:
    """Whether the progress bar `bar` (WInverter, PivotalTuner, ...) has shown step `at_least` or later."""
    return any(int(step) >= at_least for step in re.findall(rf"{bar}[^\r\n]*?\| *(\d+)/\d+", run.output))


def check_files_load(run_dir: Path) -> int:
    """Every .pt, .png and .json under run_dir loads (none truncated); no temporary file of an atomic
    write is left over. Returns how many files were checked."""
    count = 0
    for path in run_dir.rglob("*"):
        if not path.is_file() or "replaced" in path.relative_to(run_dir).parts:
            continue
        assert not path.name.endswith(".tmp"), f"leftover temporary file {path}"
        if path.suffix == ".pt":
            torch.load(path, weights_only=True)
        elif path.suffix == ".png":
            with Image.open(path) as image:
                image.load()
        elif path.suffix == ".json":
            json.loads(path.read_text())
        else:
            continue
        count += 1
    return count


def check_complete(run_dir: Path, images: list[str], stages: tuple = ("inversion", "tuning"),
                   rows_per_image: Optional[int] = None) -> list[dict]:
    """Every image has one row per stage (edits: `rows_per_image` rows in all), no row is duplicated,
    no image failed, the summary counts them all, and every file loads. Returns the rows."""
    rows = rows_of(run_dir)
    keys = Counter((r["image"], r["stage"], r.get("edit"), r.get("strength")) for r in rows)
    assert max(keys.values()) == 1, f"duplicated rows: {[k for k, n in keys.items() if n > 1]}"
    assert sorted({r["image"] for r in rows}) == sorted(images)
    for image in images:
        got = [r["stage"] for r in rows if r["image"] == image]
        assert set(got) == set(stages), (image, got)
        if rows_per_image is not None:
            assert len(got) == rows_per_image, (image, got)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["images"] == len(images) and summary["failed"] == []
    assert check_files_load(run_dir) > 0
    return rows


class MidRunFailingWandb(WandbLogger):
    """A W&B logger whose connection breaks in the middle of the run: from the second results row on,
    every call of the wandb run raises, as calls to a W&B service that died do
    (logger._target_=tests.fault_helpers.MidRunFailingWandb)."""

    def log_result(self, row: dict, pictures: dict) -> None:
        self.results_logged = getattr(self, "results_logged", 0) + 1
        if self.results_logged == 2 and self.run is not None:
            def broken(*args, **kwargs):
                raise ConnectionError("W&B connection lost")
            for method in ("log", "define_metric", "summary"):
                setattr(self.run, method, broken)
        super().log_result(row, pictures)
