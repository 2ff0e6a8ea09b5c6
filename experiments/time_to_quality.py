"""Time to quality: how soon each recipe reaches the final quality of PTI's official settings.

    python experiments/time_to_quality.py [--images 4] [--data synthfaces_ood] [--generator FILE]
                                          [--every 10] [--tuning-steps 350] [--arms official,w256,e4e,e4e_refine50]

Arms, each image on its own (one process, the threads torch has):
  official      W projector 450 steps, pivotal tuning 350 steps with LPIPS at the rendered size
                (perceptual.min_size=null): the official code's settings, which pti-lab reproduces
  w256          W projector 450 steps, tuning with the 256 px loss (pti-lab's default)
  e4e           the shipped e4e's pivot (one forward pass), tuning with the 256 px loss
  e4e_refine50  e4e, then 50 W+ projector steps from its latent, tuning with the 256 px loss
  e4e_lr1e-3    e4e, tuning with the 256 px loss at 1e-3 (official 3e-4); e4e_lr3e-3 at 3e-3
Every `--every` tuning steps the tuned render is scored as a run scores it (LPIPS(alex) at 256 px, id_sim
to the target); the seconds to a step are the inversion's plus that many tuning steps (the scoring is
timed and left out). Printed per arm: its curve, and the first step whose mean LPIPS@256 and mean id_sim
are both at least as good as the official arm's final ones, with its seconds per image and their ratio to
the official arm's. The official code itself is not run here: its final quality equals these settings'
(README, Benchmarks) and its time per image was 1.3x pti-lab's one-image path on the same machine.
"""

import argparse
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pti_lab.generators import make_generator
from pti_lab.inversion import EncoderInverter, WInverter
from pti_lab.metrics.run_metrics import RunMetrics
from pti_lab.models import LPIPS
from pti_lab.runtime import keep_freed_memory
from pti_lab.synthfaces.predictor import SynthfacesIdentity
from pti_lab.tuning import PivotalTuner

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_LR = 3e-4
ARMS = {  # name -> (inverter, perceptual min_size of the tuning loss, tuning learning rate)
    "official": (lambda: WInverter(progress=False), None, OFFICIAL_LR),
    "w256": (lambda: WInverter(progress=False), 256, OFFICIAL_LR),
    "e4e": (lambda: EncoderInverter(kind="e4e", progress=False), 256, OFFICIAL_LR),
    "e4e_refine50": (lambda: EncoderInverter(kind="e4e", refine_steps=50, progress=False), 256, OFFICIAL_LR),
    "e4e_lr1e-3": (lambda: EncoderInverter(kind="e4e", progress=False), 256, 1e-3),
    "e4e_lr3e-3": (lambda: EncoderInverter(kind="e4e", progress=False), 256, 3e-3),
}


def curve(G, target, inverter, lpips, metrics, identity, steps: int, every: int, lr: float) -> list[tuple[int, float, float, float]]:
    """(step, seconds to reach it, LPIPS@256, id_sim) of one image: step 0 is the pivot untuned."""
    start = time.perf_counter()
    pivot = inverter.invert(G, target).pivot
    inversion_seconds = time.perf_counter() - start
    points, scoring = [], [0.0]

    def score(step: int, renders: torch.Tensor, seconds: float) -> None:
        began = time.perf_counter()
        row = metrics.reconstruction(target, renders.clamp(-1, 1), identity)
        points.append((step, seconds, row["lpips"], row["id_sim"]))
        scoring[0] += time.perf_counter() - began

    with torch.no_grad():
        score(0, G.synthesis(pivot, noise_mode="const"), inversion_seconds)
    tuning_start = time.perf_counter()

    def on_step(step: int, losses: dict, renders: torch.Tensor) -> None:
        if step > 0 and step % every == 0:  # the render of step k is the generator after k updates
            score(step, renders, inversion_seconds + time.perf_counter() - tuning_start - scoring[0])

    tuned = PivotalTuner(steps=steps, lr=lr, lpips_threshold=None, progress=False).tune(G, target, pivot, lpips, on_step=on_step)
    seconds = inversion_seconds + time.perf_counter() - tuning_start - scoring[0]
    with torch.no_grad():
        score(steps, tuned.generator.synthesis(pivot, noise_mode="const"), seconds)
    return points


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4, help="images of the data set")
    parser.add_argument("--tuning-steps", type=int, default=350, help="tuning steps of every arm (PTI: 350)")
    parser.add_argument("--every", type=int, default=10, help="score the tuned render every this many steps")
    parser.add_argument("--generator", default=None, help="checkpoint (default: the shipped synthfaces generator)")
    parser.add_argument("--data", default="synthfaces_ood", help="a conf/data option")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    args = parser.parse_args()
    keep_freed_memory()

    G = make_generator(args.generator)
    data = instantiate(OmegaConf.merge(OmegaConf.load(REPO / "conf/data" / f"{args.data}.yaml"), {"limit": args.images}))
    samples = list(data.samples(G.img_resolution))
    metrics, identity = RunMetrics(eval_size=256), SynthfacesIdentity()
    means = {}
    for arm in args.arms.split(","):
        make_inverter, min_size, lr = ARMS[arm]
        inverter, lpips = make_inverter(), LPIPS("alex", min_size=min_size)
        curves = [curve(G, s.image, inverter, lpips, metrics, identity, args.tuning_steps, args.every, lr) for s in samples]
        means[arm] = [tuple(sum(c[i][j] for c in curves) / len(curves) for j in range(4)) for i in range(len(curves[0]))]
        print(f"\n{arm}: step, seconds per image, LPIPS@256, id_sim (means of {len(samples)} images)")
        for step, seconds, lpips_256, id_sim in means[arm]:
            print(f"  {step:4.0f} {seconds:7.1f} {lpips_256:.4f} {id_sim:.3f}", flush=True)

    if "official" in means:
        _, official_seconds, official_lpips, official_id = means["official"][-1]
        print(f"\nofficial settings' final quality: LPIPS@256 {official_lpips:.4f}, id_sim {official_id:.3f}, "
              f"{official_seconds:.1f} s per image")
        for arm, points in means.items():
            reached = next((p for p in points if p[2] <= official_lpips and p[3] >= official_id), None)
            if reached is None:
                print(f"  {arm:14s} does not reach it in {args.tuning_steps} tuning steps")
            else:
                print(f"  {arm:14s} reaches it at tuning step {reached[0]:.0f}: {reached[1]:.1f} s per image, "
                      f"{reached[1] / official_seconds:.2f}x the official settings' time "
                      f"(LPIPS@256 {reached[2]:.4f}, id_sim {reached[3]:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
