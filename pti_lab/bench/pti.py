"""PTI cost per image on the shipped synthfaces generator (or any checkpoint).

    python -m pti_lab.bench.pti [--images 2] [--inversion-steps 450] [--tuning-steps 350]

Prints seconds per image for the official step counts (tuning without early stop: the worst
case), milliseconds per inversion and per tuning step, and what the official code's structure
adds per image: it reloads the generator twice (the tuned copy and the original) and recomputes
the W statistics for every image, where pti-lab loads once and caches the statistics.
"""

import argparse
import time
from statistics import mean

import torch

from pti_lab.data import SynthfacesTestSet
from pti_lab.inversion import WInverter
from pti_lab.inversion.w_stats import compute_w_stats
from pti_lab.generators import make_generator
from pti_lab.models import LPIPS, load_generator
from pti_lab.runtime import keep_freed_memory
from pti_lab.tuning import PivotalTuner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", default=None, help="checkpoint (default: shipped synthfaces)")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--inversion-steps", type=int, default=450)
    parser.add_argument("--tuning-steps", type=int, default=350)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    G = make_generator(args.generator)
    load_seconds = time.perf_counter() - start
    lpips = LPIPS(net="alex")
    inverter = WInverter(steps=args.inversion_steps, progress=False)
    tuner = PivotalTuner(steps=args.tuning_steps, lpips_threshold=0, progress=False)
    samples = list(SynthfacesTestSet(kind="ood", limit=args.images).samples(G.img_resolution))

    per_image, inversion_ms, tuning_ms = [], [], []
    for sample in samples:
        start = time.perf_counter()
        inversion = inverter.invert(G, sample.image)
        tuning = tuner.tune(G, sample.image, inversion.pivot, lpips)
        per_image.append(time.perf_counter() - start)
        inversion_ms.append(1000 * inversion.seconds / max(inversion.steps, 1))
        tuning_ms.append(1000 * tuning.seconds / max(tuning.steps, 1))

    start = time.perf_counter()
    compute_w_stats(G, 600, 123)
    w_stats_seconds = time.perf_counter() - start
    path = args.generator
    if path:
        start = time.perf_counter()
        load_generator(path)
        load_seconds = time.perf_counter() - start
    official_overhead = 2 * load_seconds + w_stats_seconds

    print(f"generator: {G.img_resolution} px, {sum(p.numel() for p in G.parameters()):,} parameters; "
          f"torch {torch.__version__}, {args.threads} threads, {len(samples)} images")
    print(f"seconds per image ({args.inversion_steps} inversion + {args.tuning_steps} tuning steps): {mean(per_image):.1f}")
    print(f"inversion: {mean(inversion_ms):.1f} ms/step   tuning: {mean(tuning_ms):.1f} ms/step")
    print(f"official structure adds per image: 2 generator loads ({load_seconds:.2f} s each) + "
          f"W statistics ({w_stats_seconds:.2f} s) = {official_overhead:.2f} s "
          f"({100 * official_overhead / mean(per_image):.1f}% of an image)")


if __name__ == "__main__":
    main()
