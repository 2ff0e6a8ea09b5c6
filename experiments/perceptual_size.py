"""At what size should PTI's perceptual losses see a small generator's images?

    python experiments/perceptual_size.py [--images 3] [--photos DIR] [--inversions native,256]
                                          [--out outputs/perceptual_size]

PTI's losses are LPIPS distances: VGG16 in the W inversion (the StyleGAN2 projector: images over 256 px
are downsampled to 256) and AlexNet in the pivotal tuning (at the generator's resolution). At 64 px
AlexNet's first layer (11x11, stride 4) leaves a 15x15 map and misses fine errors that the field's
256 px metric sees. For each image (synthfaces out-of-domain, then every photo in --photos, e.g.
faces aligned by `python -m pti_lab.align`) this inverts with the projector's VGG16 at the native
size and on images upsampled to 256 (`inverter.distance_upsample`), then tunes each pivot with the
AlexNet loss at the native size, 128 and 256 (`perceptual.min_size`), and reports what the run's metrics
report: LPIPS, PSNR at 256 px (`metrics.eval_size`), id_sim, and seconds of inversion and tuning.
Settings run image by image, interleaved, so a busy machine slows all of them alike. The upsampled
inversion costs about ten times the native one; `--inversions native` or `256` runs one kind only
(two such runs side by side on two cores, each with OMP_NUM_THREADS=1).

Writes OUT/results.csv (one row per image and setting) and OUT/table.md (means per setting).
"""

import argparse
import csv
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pti_lab.data import ImageFolder
from pti_lab.generators import make_generator
from pti_lab.inversion import WInverter
from pti_lab.metrics.run_metrics import RunMetrics
from pti_lab.models import LPIPS
from pti_lab.runtime import keep_freed_memory
from pti_lab.synthfaces.predictor import SynthfacesIdentity
from pti_lab.tuning import PivotalTuner

REPO = Path(__file__).resolve().parents[1]
INVERSIONS = {"native": False, "256": True}                    # inverter.distance_upsample
TUNINGS = {"native": [None, 128, 256], "256": [None, 256]}      # perceptual.min_size after each inversion


def samples(generator, images: int, photos: Path | None):
    data = instantiate(OmegaConf.merge(OmegaConf.load(REPO / "conf/data/synthfaces_ood.yaml"), {"limit": images}))
    yield from ((sample, "synthfaces_ood") for sample in data.samples(generator.img_resolution))
    if photos is not None:
        yield from ((sample, "photo") for sample in ImageFolder(str(photos)).samples(generator.img_resolution))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3, help="synthfaces out-of-domain images")
    parser.add_argument("--photos", type=Path, default=None, help="a folder of aligned photos")
    parser.add_argument("--generator", default=None, help="checkpoint (default: the shipped synthfaces generator)")
    parser.add_argument("--inversions", default="native,256", help="inversion losses to run: native, 256")
    parser.add_argument("--out", type=Path, default=Path("outputs/perceptual_size"))
    args = parser.parse_args()
    keep_freed_memory()

    G = make_generator(args.generator)
    metrics, identity = RunMetrics(eval_size=256), SynthfacesIdentity()
    losses = {size: LPIPS("alex", min_size=size) for size in {None, 128, 256}}
    rows = []
    for sample, kind in samples(G, args.images, args.photos):
        for inversion_size in args.inversions.split(","):
            upsample = INVERSIONS[inversion_size]
            start = time.perf_counter()
            pivot = WInverter(distance_upsample=upsample, progress=False).invert(G, sample.image).pivot
            inversion_seconds = time.perf_counter() - start
            for size in TUNINGS[inversion_size]:
                start = time.perf_counter()
                tuned = PivotalTuner(lpips_threshold=None, progress=False).tune(G, sample.image, pivot, losses[size])
                tuning_seconds = time.perf_counter() - start
                with torch.no_grad():
                    render = tuned.generator.synthesis(pivot, noise_mode="const").clamp(-1, 1)
                row = metrics.reconstruction(sample.image, render, identity)
                rows.append({"image": sample.name, "kind": kind, "inversion_loss": inversion_size,
                             "tuning_loss": "native" if size is None else str(size),
                             "lpips_256": row["lpips"], "psnr_256": row["psnr"], "id_sim": row["id_sim"],
                             "inversion_s": round(inversion_seconds, 1), "tuning_s": round(tuning_seconds, 1)})
                print(", ".join(f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
                                for key, value in rows[-1].items()), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| inversion loss (VGG16) | tuning loss (AlexNet) | images | LPIPS@256 | PSNR@256 | id_sim | "
             "inversion s | tuning s |", "|---|---|---|---|---|---|---|---|"]
    for kind in dict.fromkeys(row["kind"] for row in rows):
        for setting in dict.fromkeys((row["inversion_loss"], row["tuning_loss"]) for row in rows):
            group = [row for row in rows if row["kind"] == kind and (row["inversion_loss"], row["tuning_loss"]) == setting]
            mean = lambda key: sum(row[key] for row in group) / len(group)  # noqa: E731
            lines.append(f"| {setting[0]} | {setting[1]} | {len(group)} {kind} | {mean('lpips_256'):.4f} | "
                         f"{mean('psnr_256'):.2f} | {mean('id_sim'):.3f} | {mean('inversion_s'):.1f} | "
                         f"{mean('tuning_s'):.1f} |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
