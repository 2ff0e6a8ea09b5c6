"""Where should pivotal tuning stop on a generator? Tuned LPIPS and identity against tuning steps.

    python experiments/early_stop_curve.py [--images 4] [--steps 350] [--out outputs/early_stop]
                                           [--generator FILE] [--data synthfaces_ood]
                                           [--perceptual-size 256|0]

For each image: W inversion (PTI's 450 projector steps), then pivotal tuning with no early stop;
every `--every` steps the tuned render is scored: the tuning loss's LPIPS(alex), what an early stop
sees (images under `--perceptual-size` upsampled, as `perceptual.min_size` does), and the run's
metrics, LPIPS(alex) at 256 px (`metrics.eval_size`) and id_sim to the target. Writes curve.csv
(step, mean and per-image values) and curve.png, and prints, for each threshold of the official kind
on the loss LPIPS (stop once every image is at or below it), the step where tuning would stop and the
metrics reached there. The official PTI stop (LPIPS <= 0.06) was calibrated on 1024 px FFHQ; this is
how to check what a threshold means on another generator.
"""

import argparse
import csv
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pti_lab.generators import make_generator
from pti_lab.inversion import WInverter
from pti_lab.metrics.run_metrics import RunMetrics
from pti_lab.models import LPIPS
from pti_lab.runtime import keep_freed_memory
from pti_lab.synthfaces.predictor import SynthfacesIdentity
from pti_lab.tuning import PivotalTuner

REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.06, 0.04, 0.02, 0.01, 0.005)


def tuning_curve(G, target, pivot, lpips, metrics, identity, steps: int, every: int) -> list[tuple[int, float, float, float]]:
    """(step, loss LPIPS, LPIPS at the evaluation size, id_sim) of the tuned render every `every`
    steps (step 0 = the pivot, untuned)."""
    points = []

    def score(step: int, renders: torch.Tensor) -> None:
        image = renders.clamp(-1, 1)
        row = metrics.reconstruction(target, image, identity)
        points.append((step, lpips(image, target).item(), row["lpips"], row["id_sim"]))

    with torch.no_grad():
        score(0, G.synthesis(pivot, noise_mode="const"))

    def on_step(step: int, losses: dict, renders: torch.Tensor) -> None:
        if (step + 1) % every == 0:  # renders of step k are the generator before its (k+1)-th update
            score(step + 1, renders)

    tuned = PivotalTuner(steps=steps, lpips_threshold=None, progress=False).tune(G, target, pivot, lpips, on_step=on_step)
    with torch.no_grad():
        final = tuned.generator.synthesis(pivot, noise_mode="const")
    if points[-1][0] != steps:
        score(steps, final)
    return points


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4, help="images of the data set")
    parser.add_argument("--steps", type=int, default=350, help="tuning steps (PTI: 350)")
    parser.add_argument("--inversion-steps", type=int, default=450, help="W projector steps (PTI: 450)")
    parser.add_argument("--every", type=int, default=10, help="score the tuned render every this many steps")
    parser.add_argument("--generator", default=None, help="checkpoint (default: the shipped synthfaces generator)")
    parser.add_argument("--data", default="synthfaces_ood", help="a conf/data option")
    parser.add_argument("--perceptual-size", type=int, default=256,
                        help="images under this size are upsampled for the tuning loss (perceptual.min_size; "
                             "default 256, as a run's; 0: as rendered)")
    parser.add_argument("--out", type=Path, default=Path("outputs/early_stop"))
    args = parser.parse_args()
    keep_freed_memory()

    G = make_generator(args.generator)
    data = instantiate(OmegaConf.merge(OmegaConf.load(REPO / "conf/data" / f"{args.data}.yaml"), {"limit": args.images}))
    lpips, identity = LPIPS("alex", min_size=args.perceptual_size or None), SynthfacesIdentity()
    inverter = WInverter(steps=args.inversion_steps, progress=False)
    metrics = RunMetrics(eval_size=256)
    curves = []
    for sample in data.samples(G.img_resolution):
        pivot = inverter.invert(G, sample.image).pivot
        curves.append(tuning_curve(G, sample.image, pivot, lpips, metrics, identity, args.steps, args.every))
        print(f"{sample.name}: loss LPIPS {curves[-1][0][1]:.3f} -> {curves[-1][-1][1]:.3f}, "
              f"LPIPS@256 {curves[-1][0][2]:.3f} -> {curves[-1][-1][2]:.3f}, "
              f"id_sim {curves[-1][0][3]:.2f} -> {curves[-1][-1][3]:.2f}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    steps = [point[0] for point in curves[0]]
    mean = lambda column, i: sum(curve[i][column] for curve in curves) / len(curves)  # noqa: E731
    with open(args.out / "curve.csv", "w", newline="") as file:
        writer = csv.writer(file)
        columns = ("loss_lpips", "lpips_256", "id_sim")
        writer.writerow(["step", *[f"{name}_mean" for name in columns],
                         *[f"{name}_{k}" for name in columns for k in range(len(curves))]])
        for i, step in enumerate(steps):
            writer.writerow([step, *[mean(column, i) for column in (1, 2, 3)],
                             *[c[i][column] for column in (1, 2, 3) for c in curves]])

    print(f"\n{'stop at loss LPIPS <=':>21} {'step':>6} {'mean LPIPS@256':>15} {'mean id_sim':>12}")
    for threshold in THRESHOLDS:
        stop = next((i for i, _ in enumerate(steps) if all(c[i][1] <= threshold for c in curves)), None)
        where = (f"{steps[stop]:>6} {mean(2, stop):>15.3f} {mean(3, stop):>12.2f}" if stop is not None
                 else f"{'never':>6} {'':>15} {'':>12}")
        print(f"{threshold:>21} {where}")
    last = len(steps) - 1
    print(f"{'no early stop':>21} {steps[-1]:>6} {mean(2, last):>15.3f} {mean(3, last):>12.2f}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for curve in curves:
        left.plot(steps, [p[1] for p in curve], color="C0", alpha=0.25, linewidth=0.8)
        left.plot(steps, [p[2] for p in curve], color="C2", alpha=0.25, linewidth=0.8)
        right.plot(steps, [p[3] for p in curve], color="0.8", linewidth=0.8)
    left.plot(steps, [mean(1, i) for i in range(len(steps))], color="C0", label="tuning loss LPIPS (mean)")
    left.plot(steps, [mean(2, i) for i in range(len(steps))], color="C2", label="LPIPS at 256 px (mean)")
    right.plot(steps, [mean(3, i) for i in range(len(steps))], color="C1", label="mean")
    left.axhline(0.06, color="C3", linestyle="--", label="official stop (loss LPIPS 0.06)")
    left.set(xlabel="tuning step", ylabel="LPIPS (alex) to the target", yscale="log")
    right.set(xlabel="tuning step", ylabel="id_sim to the target", ylim=(-0.2, 1.0))
    left.legend(fontsize=7), right.legend()
    figure.tight_layout()
    figure.savefig(args.out / "curve.png", dpi=120)
    print(f"\n{args.out / 'curve.csv'}, {args.out / 'curve.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
