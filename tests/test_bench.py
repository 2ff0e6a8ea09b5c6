"""The batched-PTI benchmark (python -m pti_lab.bench.pti): every configuration, one process or several,
inverts and tunes the same images to the same result; only the time may differ."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO


def bench(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pti_lab.bench.pti", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


ROW = re.compile(r"^\s+(\d+)\s+(\d+)\s+(fp32|bf16|bf16-inv)\s+([\d.]+)\s+([\d.]+)\s+[\d.]+\s+[\d.]+x\s+[\d.]+x\s+([\d.]+)"
                 r"\s+([\d.]+)$", re.MULTILINE)


def table(done: subprocess.CompletedProcess) -> list[tuple]:
    """(P, K, precision, s/image, images/s, LPIPS inverted, LPIPS tuned) per row of the printed table."""
    assert done.returncode == 0, done.stderr[-3000:]
    assert "speed-ups are against P=1 K=1 fp32 (the one-image path) in this run" in done.stdout
    return [(int(P), int(K), precision, *map(float, rest)) for P, K, precision, *rest in ROW.findall(done.stdout)]


SHORT = ["--images", "2", "--inversion-steps", "4", "--tuning-steps", "3", "--threads", "2"]


def test_processes_and_batches_reach_the_lpips_of_one_image_at_a_time():
    rows = table(bench("--batch", "1,2", "--processes", "1,2", *SHORT))
    assert [row[:3] for row in rows] == [(1, 1, "fp32"), (1, 2, "fp32"), (2, 1, "fp32"), (2, 2, "fp32")]
    baseline = rows[0]
    for P, K, precision, seconds, images_per_second, inverted, tuned in rows:
        # Both printed rounded: s/image to 0.01, images/s to 0.0001, whose inverse is then off by up to
        # 0.00005 / images_per_second ** 2 (0.06 s at 34 s per image, on a busy machine).
        rounding = 0.006 + 0.00005 / images_per_second ** 2
        assert seconds > 0 and seconds == pytest.approx(1 / images_per_second, abs=rounding)
        # the same two images, one at a time, in a batch or in two processes: the same result
        assert inverted == pytest.approx(baseline[5], abs=1e-3) and tuned == pytest.approx(baseline[6], abs=1e-3)
        assert tuned < inverted  # tuning improved on the inversion


def test_bf16_configurations_are_measured_against_the_float32_one_image_path():
    rows = table(bench("--batch", "2", "--processes", "2", "--autocast", "bf16,bf16-inv", *SHORT))
    assert [row[:3] for row in rows] == [(1, 1, "fp32"), (2, 2, "bf16"), (2, 2, "bf16-inv")]
    (*_, inverted32, tuned32), *low = rows
    for *_, inverted16, tuned16 in low:
        assert inverted16 == pytest.approx(inverted32, rel=0.05) and tuned16 == pytest.approx(tuned32, rel=0.05)


def test_bad_batch_or_process_counts_are_one_line_errors():
    for flag, value in (("--processes", "0"), ("--batch", "two")):
        done = bench(flag, value, "--images", "1")
        assert done.returncode != 0
        assert done.stderr.strip().splitlines() == [f"error: {flag} {value}: expected whole numbers >= 1, "
                                                    f"e.g. {flag} 1,4,8"], done.stderr
