"""The commands a user types, timed end to end against the official PTI code on the same images.

    python -m pti_lab.bench.recipe --official DIR --stylegan2-ada DIR [--images 8]
        [--arms official,fast,fast_pkl] [--work DIR] [--smoke]

--official is a local checkout of danielroich/PTI, the paper's code, run by `pti_lab.bench.official_pti`
(which supplies what it needs and this machine lacks; nothing of it is part of pti-lab);
--stylegan2-ada one of NVlabs/stylegan2-ada-pytorch, whose code writes the official network pickle
of the shipped synthfaces generator that the official code reads. Every arm is one
command, run in a fresh process with a fresh cache (pivots, W statistics) and timed from the moment
it is started to the moment it exits: imports, loading the models, every image, the metrics, the
files and the report, everything the user waits for. The arms run one after the other, each on
the whole machine, on the first --images faces of the synthfaces
out-of-domain test set, with the torch threads each command chooses itself (all cores; one per
process for fast_2p):
  official   the official code: W projector 450 steps, tuning 350 steps, no early stop (its 0.06 was
             calibrated at 1024 px), on an official-format network pickle of the shipped generator
  pti        `python run.py`: pti-lab's defaults (the same steps; the 256 px tuning loss)
  fast       `python run.py +recipe=fast` (conf/recipe/fast.yaml)
  fast_pkl   `python run.py +recipe=fast data=folder data.path=IMAGES generator.path=PKL`: the same
             recipe from the official-format pickle and the image files the official code read
  fast_nolog `python run.py +recipe=fast logger=none`: without W&B, as the official code runs
  fast_2p    `python run.py -m +recipe=fast data.shard=0,1 data.shards=2 data.split=balanced
             hydra/launcher=joblib`: two processes of one thread on 4 images each
pti-lab's runs log to W&B in offline mode (the default logger, as it runs without a network).

Beside each wall time, the in-process compute: the seconds its inversions and tunings took as the
run itself measured them (what `pti_lab.bench.pti` reports); the rest is start-up, loading, metrics,
files and the report.

Every arm is scored alike, from the files it wrote: each image's reconstruction after tuning
(PNG) against the target PNG the official code read, as a run scores it: LPIPS(alex) at 256 px
and id_sim (the synthfaces identity network). Printed per arm: wall seconds, seconds per image,
the ratio of its time to the official code's, the mean LPIPS@256 and id_sim, and whether it
reaches the official code's quality: its mean LPIPS is not above the official one by more than
the 95 % interval of the paired per-image differences, nor its mean id_sim below by more (8
images cannot tell smaller differences apart).
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from statistics import mean, stdev

import numpy as np
import PIL.Image
from scipy.stats import t as student_t

from pti_lab.bench.official_pti import write_generator, write_images
from pti_lab.data import to_tensor
from pti_lab.metrics.run_metrics import RunMetrics
from pti_lab.runtime import keep_freed_memory
from pti_lab.synthfaces.predictor import SynthfacesIdentity

REPO = Path(__file__).resolve().parents[2]
ARMS = ("official", "pti", "fast", "fast_pkl", "fast_nolog", "fast_2p")


SMOKE_STEPS = 2  # --smoke: inversion and tuning steps of every arm (a check that the bench runs, not a timing)


def command(arm: str, args: argparse.Namespace, work: Path) -> list[str]:
    """The arm's command line (run in the repository root)."""
    if arm == "official":
        steps = ["--inversion-steps", str(SMOKE_STEPS), "--tuning-steps", str(SMOKE_STEPS)] if args.smoke else []
        return [sys.executable, "-m", "pti_lab.bench.official_pti", "--official", str(args.official),
                "--generator", str(work / "generator.pkl"), "--images", str(work / "targets"),
                "--out", str(work / arm)] + steps
    run = [sys.executable, "run.py"]
    settings = ["reuse_inversions=false"]
    if args.smoke:
        settings += [f"tuner.steps={SMOKE_STEPS}"] + ([f"inverter.steps={SMOKE_STEPS}"] if arm == "pti" else [])
    data = [f"data.limit={args.images}"]
    run_dir = [f"hydra.run.dir={work / arm}"]
    if arm == "pti":
        return run + data + settings + run_dir
    if arm == "fast":
        return run + ["+recipe=fast"] + data + settings + run_dir
    if arm == "fast_nolog":
        return run + ["+recipe=fast", "logger=none"] + data + settings + run_dir
    if arm == "fast_pkl":
        return run + ["+recipe=fast", "data=folder", f"data.path={work / 'targets'}",
                      f"generator.path={work / 'generator.pkl'}"] + settings + run_dir
    if arm == "fast_2p":
        return run + ["-m", "+recipe=fast", "data.shard=0,1", "data.shards=2", "data.split=balanced",
                      "hydra/launcher=joblib", f"hydra.sweep.dir={work / arm}"] + data + settings
    raise ValueError(arm)


def run_dirs(arm: str, work: Path) -> list[Path]:
    """The run directories a pti-lab arm wrote: one, or fast_2p's two jobs (its sweep dir's 0/ and 1/)."""
    if arm == "fast_2p":
        return sorted(job for job in (work / arm).iterdir() if (job / "results.jsonl").is_file())
    return [work / arm]


def reconstructions(arm: str, work: Path, names: list[str]) -> list[Path]:
    """Where the arm wrote each image's reconstruction after tuning."""
    if arm == "official":
        return [work / arm / f"{name}.png" for name in names]
    return [next(run / "images" / name / "tuned.png" for run in run_dirs(arm, work)
                 if (run / "images" / name / "tuned.png").is_file()) for name in names]


def run_timed(arm: str, argv: list[str], work: Path) -> float:
    """Wall seconds of the command, from its start to its exit, in an empty output directory with an
    empty cache (an earlier bench's run would otherwise be resumed, its images skipped); its output
    goes to WORK/ARM.log."""
    cache = work / f"cache_{arm}"
    for folder in (work / arm, cache):
        shutil.rmtree(folder, ignore_errors=True)
    env = dict(os.environ, PTI_LAB_CACHE=str(cache), WANDB_MODE="offline")
    with open(work / f"{arm}.log", "w") as log:
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"error: {arm} failed (exit {done.returncode}); see {work / f'{arm}.log'}")
    return seconds


def compute_seconds(arm: str, work: Path) -> float:
    """Seconds the arm spent inverting and tuning (in-process, as bench.pti measures), over all images:
    the official runner's per-image times; the inversion and tuning rows of pti-lab's results."""
    if arm == "official":
        return sum(image["seconds"] for image in json.loads((work / arm / "timing.json").read_text())["images"].values())
    rows = [json.loads(line) for run in run_dirs(arm, work) for line in (run / "results.jsonl").read_text().splitlines()]
    return sum(row["seconds"] for row in rows if row["stage"] in ("inversion", "tuning"))


def read_png(path: Path):
    with PIL.Image.open(path) as image:
        return to_tensor(np.asarray(image.convert("RGB")))


def score(paths: list[Path], targets: list[Path], metrics: RunMetrics, identity) -> list[dict]:
    """LPIPS@256 and id_sim of each reconstruction against its target, as a run's metrics compute them."""
    return [metrics.reconstruction(read_png(target), read_png(path), identity) for path, target in zip(paths, targets)]


def interval(differences: list[float]) -> float:
    """Half-width of the 95 % interval of the mean of paired differences (Student's t)."""
    n = len(differences)
    return student_t.ppf(0.975, n - 1) * stdev(differences) / math.sqrt(n) if n > 1 else math.inf


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", type=Path, required=True, help="a local checkout of danielroich/PTI")
    parser.add_argument("--stylegan2-ada", type=Path, required=True, help="a local NVlabs/stylegan2-ada-pytorch checkout")
    parser.add_argument("--images", type=int, default=8, help="first faces of the synthfaces ood test set")
    parser.add_argument("--arms", default="official,fast,fast_pkl", help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--work", type=Path, default=Path("outputs/bench_recipe"), help="where the arms write")
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_STEPS} steps per stage: checks the bench, times nothing")
    args = parser.parse_args()
    arms = args.arms.split(",")
    unknown = [arm for arm in arms if arm not in ARMS]
    if unknown or "official" not in arms:
        sys.exit(f"error: --arms {args.arms}: needs official, and only {', '.join(ARMS)}")
    keep_freed_memory()

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    write_generator(work / "generator.pkl", args.stylegan2_ada)  # what the official code reads
    shutil.rmtree(work / "targets", ignore_errors=True)  # the official code reads every image in the folder
    names = write_images(work / "targets", args.images, None)
    targets = [work / "targets" / f"{name}.png" for name in names]

    seconds = {}
    for arm in arms:
        seconds[arm] = run_timed(arm, command(arm, args, work), work)
        print(f"{arm}: {seconds[arm]:.1f} s", flush=True)

    metrics, identity = RunMetrics(eval_size=256), SynthfacesIdentity()
    rows = {arm: score(reconstructions(arm, work, names), targets, metrics, identity) for arm in arms}
    official = rows["official"]
    compute = {arm: compute_seconds(arm, work) for arm in arms}
    print(f"\n{len(names)} images, {os.cpu_count()} cores, one arm at a time; quality from the PNGs each wrote")
    print(f"{'arm':10s} {'wall s':>7s} {'compute s':>9s} {'s/image':>8s} {'time ratio':>10s} {'LPIPS@256':>9s} "
          f"{'id_sim':>7s}  reaches official")
    for arm in arms:
        lpips = [row["lpips"] for row in rows[arm]]
        ids = [row["id_sim"] for row in rows[arm]]
        lpips_diff = [a - b["lpips"] for a, b in zip(lpips, official)]
        id_diff = [a - b["id_sim"] for a, b in zip(ids, official)]
        reaches = mean(lpips_diff) <= interval(lpips_diff) and mean(id_diff) >= -interval(id_diff)
        verdict = "-" if arm == "official" else (
            f"{'yes' if reaches else 'NO'} (LPIPS {mean(lpips_diff):+.4f} ±{interval(lpips_diff):.4f}, "
            f"id_sim {mean(id_diff):+.3f} ±{interval(id_diff):.3f})")
        print(f"{arm:10s} {seconds[arm]:7.1f} {compute[arm]:9.1f} {seconds[arm] / len(names):8.2f} "
              f"{seconds[arm] / seconds['official']:10.3f} {mean(lpips):9.4f} {mean(ids):7.3f}  {verdict}")
    (work / "bench.json").write_text(json.dumps({"seconds": seconds, "compute_seconds": compute, "rows": rows,
                                                 "names": names}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
