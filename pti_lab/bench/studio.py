"""The studio's slider latency: milliseconds per slider move, against the 100 ms budget.

    python -m pti_lab.bench.studio [RUN_DIR] [--moves 40] [--threads 1]

One slider move is what the page's handler does: the mix of every slider applied to the pivot, the
edit rendered with the tuned and with the original generator (noise const) and both turned into
uint8 pictures; "+ PNG" adds encoding both as PNG, which the web page does before sending them.
Measured side by side in one process with the baseline of two bare G.synthesis calls on the same
latent. Without RUN_DIR a PTI run of one synthfaces image (5 + 5 steps) is made in a temporary
directory first. Median and 90th percentile of the moves, after warm-up moves.
"""

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from pti_lab.runtime import keep_freed_memory
from pti_lab.studio.session import Studio

BUDGET_MS = 100.0
REPO = Path(__file__).resolve().parents[2]


def quick_run(out: Path) -> Path:
    command = [sys.executable, "run.py", "+ablation=A", "data.limit=1", "inverter.steps=5", "tuner.steps=5",
               "logger=none", "metrics=reconstruction", "preview=null", f"hydra.run.dir={out}"]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", type=Path, help="a finished run (default: a quick one in a temp dir)")
    parser.add_argument("--moves", type=int, default=40, help="timed slider moves")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir or quick_run(Path(tmp) / "run")
        studio = Studio(run_dir, components=0)  # GANSpace sliders cost the same per move; no PCA fit here
        label = studio.labels[0]
        image = studio.image(label)
        keys = [s.key for s in studio.sliders()]
        fixed = {key: 0.5 for key in keys[1:3]}  # a mix of three directions, one of them moving
        values = [-3 + 6 * i / max(1, args.moves - 1) for i in range(args.moves)]

        def move(value: float, png: bool) -> float:
            start = time.perf_counter()
            shot = studio.render(label, {**fixed, keys[0]: value})
            if png:
                for picture in (shot.tuned, shot.original):
                    Image.fromarray(picture).save(io.BytesIO(), format="PNG")
            return (time.perf_counter() - start) * 1000

        def bare(value: float) -> float:
            ws = image.pivot + value * 0.01
            start = time.perf_counter()
            with torch.no_grad():
                image.tuned.synthesis(ws, noise_mode="const")
                image.base.synthesis(ws, noise_mode="const")
            return (time.perf_counter() - start) * 1000

        for value in values[:args.warmup]:
            move(value, True), bare(value)
        timings = {"slider move": [], "slider move + PNG": [], "baseline: 2 x G.synthesis": []}
        for value in values:  # interleaved, so that all three see the same machine load
            timings["slider move"].append(move(value, False))
            timings["slider move + PNG"].append(move(value, True))
            timings["baseline: 2 x G.synthesis"].append(bare(value))

    G = image.tuned
    print(f"torch {torch.__version__}, {args.threads} thread(s), {G.img_resolution} px generator, "
          f"{args.moves} moves of '{keys[0]}' with {len(fixed)} other sliders set")
    baseline = statistics.median(timings["baseline: 2 x G.synthesis"])
    print(f"{'':28s} {'median ms':>10s} {'p90 ms':>8s} {'/ 100 ms budget':>16s} {'/ baseline':>11s}")
    for name, ms in timings.items():
        median = statistics.median(ms)
        print(f"{name:28s} {median:10.1f} {percentile(ms, 0.9):8.1f} {median / BUDGET_MS:16.2f} {median / baseline:11.2f}")


if __name__ == "__main__":
    main()
