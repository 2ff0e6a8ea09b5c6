"""Inversion speed: milliseconds per projector step in W and W+, and the one-off costs around them.

    python -m pti_lab.bench.inversion [--resolution 64] [--steps 30] [--threads 2] [--device cpu]

Generator: the architecture of conf/generator/default.yaml (z = w = 512, 8 mapping layers,
channel_base 16384, channel_max 256) with fresh seeded weights. One step is what the projector does
per iteration: synthesis forward and backward, VGG16 LPIPS on the (<= 256 px) image, the noise
regulariser, Adam and the noise renormalisation. Per-step time = (time of an inversion of `steps`
steps - time of one of 0 steps) / steps, after a warm-up inversion; the 0-step inversion is the
per-image overhead (cache lookup of the W statistics, target features).
One-off costs: reading VGG16 (first inversion of a process) and the W statistics (first inversion
of a generator; 600 samples as PTI, 10 000 as the stock StyleGAN2 projector).
"""

import argparse
import time

import torch

from pti_lab.inversion import WInverter, WPlusInverter
from pti_lab.inversion.w_stats import OFFICIAL_SEED, compute_w_stats, fingerprint
from pti_lab.models import Generator
from pti_lab.models.lpips import ProjectorDistance
from pti_lab.runtime import keep_freed_memory


def make_generator(resolution: int) -> Generator:
    return Generator(512, 0, 512, resolution, 3, mapping_kwargs=dict(num_layers=8),
                     synthesis_kwargs=dict(channel_base=16384, channel_max=256)).eval().requires_grad_(False)


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=64, help="generator resolution in px")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per inverter")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    torch.manual_seed(0)
    G = make_generator(args.resolution).to(device)
    with torch.no_grad():
        target = G(torch.randn([1, G.z_dim], device=device), None, noise_mode="const").clamp(-1, 1)  # [NCHW]
    print(f"generator {args.resolution} px, num_ws {G.num_ws}, {sum(p.numel() for p in G.parameters()) / 1e6:.1f} M "
          f"parameters; device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}")

    print(f"{'VGG16 LPIPS load (once per process)':<44} {seconds(ProjectorDistance) * 1000:9.0f} ms")
    G.mapping(torch.randn([8, G.z_dim], device=device), None)  # warm-up
    for samples in (600, 10_000):
        cost = seconds(lambda: compute_w_stats(G, samples, OFFICIAL_SEED))
        print(f"{f'W statistics, {samples} samples (once per G)':<44} {cost * 1000:9.0f} ms")
    print(f"{'W statistics cache key (every inversion)':<44} {seconds(lambda: fingerprint(G, 600, OFFICIAL_SEED)) * 1000:9.1f} ms")

    for cls in (WInverter, WPlusInverter):
        options = dict(progress=False, w_stats_disk_cache=False)  # the W statistics stay in memory
        cls(steps=2, **options).invert(G, target)  # warm-up
        overhead = cls(steps=0, **options).invert(G, target).seconds
        timed = cls(steps=args.steps, **options).invert(G, target).seconds
        per_step = (timed - overhead) / args.steps
        print(f"{cls.__name__ + ' per step':<44} {per_step * 1000:9.1f} ms   (per-image overhead "
              f"{overhead * 1000:.0f} ms; 450 steps = {(overhead + 450 * per_step):.1f} s)")


if __name__ == "__main__":
    main()
