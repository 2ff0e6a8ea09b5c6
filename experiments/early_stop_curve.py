"""Where should pivotal tuning stop on a generator? Tuned LPIPS and identity against tuning steps.

    python experiments/early_stop_curve.py [--images 4] [--steps 350] [--out outputs/early_stop]
                                           [--generator FILE] [--data synthfaces_ood]

For each image: W inversion (PTI's 450 projector steps), then pivotal tuning with no early stop;
every `--every` steps the tuned render is scored (LPIPS(alex) and id_sim to the target, the run's
metrics). Writes curve.csv (step, mean and per-image LPIPS and id_sim) and curve.png, and prints,
for each LPIPS threshold of the official kind (stop once every image is at or below it), the step
where tuning would stop and the identity reached there. The official PTI stop (LPIPS <= 0.06) was
calibrated on 1024 px FFHQ; this is how to check what a threshold means on another generator.
"""

import argparse
import csv
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pti_lab.generators import make_generator
from pti_lab.inversion import WInverter
from pti_lab.models import LPIPS
from pti_lab.runtime import keep_freed_memory
from pti_lab.synthfaces.predictor import SynthfacesIdentity
from pti_lab.tuning import PivotalTuner

REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.06, 0.04, 0.02, 0.01, 0.005)


def tuning_curve(G, target, pivot, lpips, identity, steps: int, every: int) -> list[tuple[int, float, float]]:
    """(step, LPIPS, id_sim) of the tuned render every `every` steps (step 0 = the pivot, untuned)."""
    points = []

    def score(step: int, renders: torch.Tensor) -> None:
        image = renders.clamp(-1, 1)
        (similarity,), _ = identity.compare(target, image)
        points.append((step, lpips(image, target).item(), similarity))

    with torch.no_grad():
        score(0, G.synthesis(pivot, noise_mode="const"))

    def on_step(step: int, losses: dict, renders: torch.Tensor) -> None:
        if (step + 1) % every == 0:  # renders of step k are the generator before its (k+1)-th update
            score(step + 1, renders)

    tuned = PivotalTuner(steps=steps, lpips_threshold=0, progress=False).tune(G, target, pivot, lpips, on_step=on_step)
    with torch.no_grad():
        final = tuned.generator.synthesis(pivot, noise_mode="const")
    if points[-1][0] != steps:
        score(steps, final)
    return points


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4, help="images of the data set")
    parser.add_argument("--steps", type=int, default=350, help="tuning steps (PTI: 350)")
    parser.add_argument("--every", type=int, default=10, help="score the tuned render every this many steps")
    parser.add_argument("--generator", default=None, help="checkpoint (default: the shipped synthfaces generator)")
    parser.add_argument("--data", default="synthfaces_ood", help="a conf/data option")
    parser.add_argument("--out", type=Path, default=Path("outputs/early_stop"))
    args = parser.parse_args()
    keep_freed_memory()

    G = make_generator(args.generator)
    data = instantiate(OmegaConf.merge(OmegaConf.load(REPO / "conf/data" / f"{args.data}.yaml"), {"limit": args.images}))
    lpips, identity, inverter = LPIPS("alex"), SynthfacesIdentity(), WInverter(progress=False)
    curves = []
    for sample in data.samples(G.img_resolution):
        pivot = inverter.invert(G, sample.image).pivot
        curves.append(tuning_curve(G, sample.image, pivot, lpips, identity, args.steps, args.every))
        print(f"{sample.name}: LPIPS {curves[-1][0][1]:.3f} -> {curves[-1][-1][1]:.3f}, "
              f"id_sim {curves[-1][0][2]:.2f} -> {curves[-1][-1][2]:.2f}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    steps = [step for step, _, _ in curves[0]]
    mean = lambda column, i: sum(curve[i][column] for curve in curves) / len(curves)  # noqa: E731
    with open(args.out / "curve.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["step", "lpips_mean", "id_sim_mean", *[f"lpips_{k}" for k in range(len(curves))],
                         *[f"id_sim_{k}" for k in range(len(curves))]])
        for i, step in enumerate(steps):
            writer.writerow([step, mean(1, i), mean(2, i), *[c[i][1] for c in curves], *[c[i][2] for c in curves]])

    print(f"\n{'stop at LPIPS <=':>18} {'step':>6} {'mean id_sim there':>18}")
    for threshold in THRESHOLDS:
        stop = next((i for i, _ in enumerate(steps) if all(c[i][1] <= threshold for c in curves)), None)
        where = f"{steps[stop]:>6} {mean(2, stop):>18.2f}" if stop is not None else f"{'never':>6} {'':>18}"
        print(f"{threshold:>18} {where}")
    print(f"{'no early stop':>18} {steps[-1]:>6} {mean(2, len(steps) - 1):>18.2f}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for curve in curves:
        left.plot(steps, [p[1] for p in curve], color="0.8", linewidth=0.8)
        right.plot(steps, [p[2] for p in curve], color="0.8", linewidth=0.8)
    left.plot(steps, [mean(1, i) for i in range(len(steps))], color="C0", label="mean")
    right.plot(steps, [mean(2, i) for i in range(len(steps))], color="C1", label="mean")
    left.axhline(0.06, color="C3", linestyle="--", label="official stop (LPIPS 0.06)")
    left.set(xlabel="tuning step", ylabel="LPIPS (alex) to the target", yscale="log")
    right.set(xlabel="tuning step", ylabel="id_sim to the target", ylim=(-0.2, 1.0))
    left.legend(), right.legend()
    figure.tight_layout()
    figure.savefig(args.out / "curve.png", dpi=120)
    print(f"\n{args.out / 'curve.csv'}, {args.out / 'curve.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
