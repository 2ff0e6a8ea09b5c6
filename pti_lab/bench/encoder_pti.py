"""PTI from an encoder's pivot against PTI from the W projector's, side by side in one process.

    python -m pti_lab.bench.encoder_pti [--images 4] [--data ood|indomain] [--encoder e4e|psp]
        [--encoder-path FILE] [--inversion-steps 450] [--tuning-steps 350] [--encoder-refine-steps N]
        [--encoder-tuning-steps N] [--threads 2]

Baseline: PTI as the paper runs it, the W projector (450 steps) then pivotal tuning. Against it:
the encoder's pivot (one forward pass; the shipped synthfaces e4e by default; optionally refined
by `--encoder-refine-steps` W+ projector steps), then the same tuner (`--encoder-tuning-steps`,
default the same steps). Tuning never stops early (the synthfaces
generator's setting). The two arms alternate per image, each going first on every other image, so
both see the same machine load. Printed per arm: seconds per image, inversion and tuned LPIPS(alex)
(of G_tuned(pivot) against the target), and the ratio of seconds per image. Then the comparison
at equal quality: the first tuning step at which the encoder arm reaches the baseline's mean tuned
LPIPS (from its per-step losses), and the seconds to get there, as a ratio of the baseline's.
"""

import argparse
import time
from statistics import mean
from typing import Optional

import torch

from pti_lab.data import SynthfacesTestSet
from pti_lab.generators import make_generator
from pti_lab.inversion import EncoderInverter, WInverter, cached_w_stats
from pti_lab.models import LPIPS
from pti_lab.runtime import keep_freed_memory
from pti_lab.tuning import PivotalTuner


def tuned_lpips(tuning, target: torch.Tensor, lpips: LPIPS) -> float:
    with torch.no_grad():
        return lpips(tuning.generator.synthesis(tuning.pivots, noise_mode="const").clamp(-1, 1), target).item()


def first_step_at(losses: list[dict], level: float) -> Optional[int]:
    """Steps taken when the tuning LPIPS (measured before each step) first reached `level`; None if never."""
    return next((step for step, record in enumerate(losses) if record["lpips"] <= level), None)


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--data", default="ood", choices=("ood", "indomain"), help="synthfaces test set")
    parser.add_argument("--encoder", default="e4e", choices=("e4e", "psp"), help="encoder kind")
    parser.add_argument("--encoder-path", default=None, help="encoder checkpoint (default: the shipped synthfaces one)")
    parser.add_argument("--inversion-steps", type=int, default=450, help="W projector steps of the baseline")
    parser.add_argument("--tuning-steps", type=int, default=350, help="tuning steps of the baseline")
    parser.add_argument("--encoder-refine-steps", type=int, default=0, help="W+ projector steps from the encoder's latent")
    parser.add_argument("--encoder-tuning-steps", type=int, default=None, help="tuning steps from the encoder pivot")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    keep_freed_memory()
    torch.set_num_threads(args.threads)

    G = make_generator(None)
    lpips = LPIPS(net="alex")
    projector = WInverter(steps=args.inversion_steps, progress=False, w_stats_disk_cache=False)
    encoder = EncoderInverter(kind=args.encoder, path=args.encoder_path, refine_steps=args.encoder_refine_steps,
                              progress=False)
    tuners = {"w": PivotalTuner(steps=args.tuning_steps, lpips_threshold=None, progress=False),
              args.encoder: PivotalTuner(steps=args.encoder_tuning_steps or args.tuning_steps, lpips_threshold=None,
                                         progress=False)}
    inverters = {"w": projector, args.encoder: encoder}
    samples = list(SynthfacesTestSet(kind=args.data, limit=args.images).samples(G.img_resolution))
    # One-off costs outside the timings: W statistics, VGG16, first calls.
    cached_w_stats(G, projector.w_avg_samples, projector.w_stats_seed, disk_cache=False)
    projector.projector_distance(torch.device("cpu"))
    encoder.invert(G, samples[0].image)

    rows: dict[str, list[dict]] = {arm: [] for arm in inverters}
    for index, sample in enumerate(samples):
        order = list(inverters) if index % 2 == 0 else list(inverters)[::-1]
        for arm in order:
            start = time.perf_counter()
            inversion = inverters[arm].invert(G, sample.image)
            tuning = tuners[arm].tune(G, sample.image, inversion.pivot, lpips)
            seconds = time.perf_counter() - start
            with torch.no_grad():
                inverted = lpips(G.synthesis(inversion.pivot, noise_mode="const").clamp(-1, 1), sample.image).item()
            rows[arm].append({"seconds": seconds, "inversion_seconds": inversion.seconds, "inverted": inverted,
                              "tuned": tuned_lpips(tuning, sample.image, lpips), "losses": tuning.losses,
                              "tuning_ms": 1000 * tuning.seconds / max(tuning.steps, 1)})

    print(f"synthfaces {args.data}, {len(samples)} images; torch {torch.__version__}, {args.threads} threads; "
          f"baseline W: {args.inversion_steps} projector + {args.tuning_steps} tuning steps; "
          f"{args.encoder}: encoder + {args.encoder_refine_steps} refine + {tuners[args.encoder].steps} tuning steps")
    for arm, arm_rows in rows.items():
        print(f"{arm:>4}: {mean(r['seconds'] for r in arm_rows):7.1f} s/image (inversion "
              f"{mean(r['inversion_seconds'] for r in arm_rows):6.2f} s)   inversion LPIPS "
              f"{mean(r['inverted'] for r in arm_rows):.4f}   tuned LPIPS {mean(r['tuned'] for r in arm_rows):.4f}")
    baseline, other = rows["w"], rows[args.encoder]
    baseline_seconds = mean(r["seconds"] for r in baseline)
    print(f"ratio {args.encoder}/W seconds per image: {mean(r['seconds'] for r in other) / baseline_seconds:.3f}")
    level = mean(r["tuned"] for r in baseline)
    reached = [first_step_at(r["losses"], level) for r in other]
    if any(step is None for step in reached):
        print(f"at equal quality: the {args.encoder} arm did not reach the baseline's tuned LPIPS {level:.4f} "
              f"on {sum(step is None for step in reached)} of {len(reached)} images")
        return
    seconds = mean(r["inversion_seconds"] + step * r["tuning_ms"] / 1000 for r, step in zip(other, reached))
    print(f"at equal quality (tuned LPIPS {level:.4f}): {args.encoder} arm after {mean(reached):.0f} tuning steps, "
          f"{seconds:.1f} s/image, ratio {seconds / baseline_seconds:.3f}")


if __name__ == "__main__":
    main()
