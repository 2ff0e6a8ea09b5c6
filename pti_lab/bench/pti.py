"""Batched PTI throughput: images per second for each batch size K, measured side by side in one run.

    python -m pti_lab.bench.pti --batch 1,4,8 [--images 8] [--inversion-steps 450] [--tuning-steps 350]
        [--generator FILE | ffhq1024 | small64] [--device cpu|cuda] [--threads 2] [--autocast bf16] [--tf32]

Every K inverts (W projector) and tunes (pivotal tuning, no early stop: the worst case) the same
images, the first --images faces of the synthfaces out-of-domain test set at the generator's
resolution. K = 1 is the one-image path (invert, tune); K > 1 the batched one (invert_batch,
tune_batch), as `batch_size=K` runs them. The K's take turns group by group, each K's groups spread
over the whole run (K=1's eight images around K=8's one batch), so that other load on a shared
machine slows them alike; speed-ups are ratios to the smallest K in the same run. Printed per K: wall seconds per image,
images/s, CPU seconds per image (process time, which other processes on a shared machine disturb
less than wall time), the mean final LPIPS(alex) of the inversions and of the tuned generators (the
reconstructions clamped to [-1, 1], as the run's metrics), and on CUDA the peak memory per image.

Memory: one inversion and one tuning step at K = 1 and K = 2 give the memory per image; the
benchmark prints the largest K that fits in the memory available now and stops with one line,
before any timing, when a requested K does not fit.

--generator: any checkpoint load_generator reads (default: the shipped synthfaces generator), or
random weights in an official architecture: `ffhq1024`, the FFHQ 1024 px configuration (config-f:
512-d z and w, 8 mapping layers, channel_base 32768, channel_max 512), for runs on a GPU; `small64`,
a 64 px network of 0.93 M parameters (256-d z and w, channel_base 1024, channel_max 64, conv_clamp 256).
"""

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from statistics import mean

import torch

from pti_lab.batch_memory import BatchMemory
from pti_lab.config import ConfigError
from pti_lab.data import SynthfacesTestSet
from pti_lab.generators import make_generator
from pti_lab.inversion import WInverter
from pti_lab.models import LPIPS
from pti_lab.models.stylegan2 import Generator
from pti_lab.runtime import keep_freed_memory
from pti_lab.tuning import PivotalTuner

FRESH = {  # official architectures with random weights (seed 0), by name
    "ffhq1024": dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3,  # config-f
                     mapping_kwargs=dict(num_layers=8), synthesis_kwargs=dict(channel_base=32768, channel_max=512)),
    "small64": dict(z_dim=256, c_dim=0, w_dim=256, img_resolution=64, img_channels=3,  # 0.93 M parameters
                    mapping_kwargs=dict(num_layers=8),
                    synthesis_kwargs=dict(channel_base=1024, channel_max=64, conv_clamp=256)),
}


def load(generator: str | None, device: torch.device) -> Generator:
    if generator in FRESH:
        return make_generator(architecture=FRESH[generator], device=device)
    if generator and not Path(generator).exists() and "://" not in generator:
        sys.exit(f"error: --generator {generator}: no such file (a checkpoint, or one of {', '.join(FRESH)})")
    return make_generator(generator, device=device)


def memory_plan(G, targets, lpips, inverter, tuner, device, context) -> BatchMemory:
    """Memory of batched PTI per image, from one inversion and one tuning step at K = 1 and K = 2."""
    one_step_inverter = WInverter(steps=1, lr=inverter.lr, progress=False)
    one_step_tuner = PivotalTuner(steps=1, lr=tuner.lr, lpips_threshold=0, progress=False)
    pivot = G.mapping.w_avg.reshape(1, 1, -1).expand(1, G.num_ws, -1)

    def step(K: int) -> None:
        batch = [targets[k % len(targets)] for k in range(K)]
        with context():
            one_step_inverter.invert_batch(G, batch)
            one_step_tuner.tune_batch(G, batch, [pivot] * K, lpips)
    # Per image on the host besides autograd's tensors: the tuned copy, its gradient and two Adam moments.
    return BatchMemory(step, device, 4 * sum(p.numel() * p.element_size() for p in G.synthesis.parameters()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", default="1,4,8", help="batch sizes K to compare, comma-separated (default 1,4,8)")
    parser.add_argument("--generator", default=None,
                        help=f"checkpoint file or URL, or one of {', '.join(FRESH)} (default: synthfaces)")
    parser.add_argument("--images", type=int, default=8, help="images each K processes (default 8)")
    parser.add_argument("--inversion-steps", type=int, default=450)
    parser.add_argument("--tuning-steps", type=int, default=350)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads (default: torch's)")
    parser.add_argument("--autocast", choices=["bf16"], default=None, help="mixed-precision forward passes")
    parser.add_argument("--tf32", action="store_true", help="CUDA: TF32 matmuls and convolutions")
    args = parser.parse_args()
    try:
        batch_sizes = sorted({int(k) for k in args.batch.split(",")})
        assert batch_sizes[0] >= 1 and args.images >= 1
    except (ValueError, AssertionError):
        sys.exit(f"error: --batch {args.batch} --images {args.images}: expected whole numbers >= 1, e.g. --batch 1,4,8")
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    def context():
        return torch.autocast(device.type, torch.bfloat16) if args.autocast else nullcontext()

    G = load(args.generator, device)
    lpips = LPIPS(net="alex").to(device)
    samples = list(SynthfacesTestSet(kind="ood", limit=args.images).samples(G.img_resolution))
    targets = [sample.image.to(device) for sample in samples]
    inverter = WInverter(steps=args.inversion_steps, progress=False)
    tuner = PivotalTuner(steps=args.tuning_steps, lpips_threshold=0, progress=False)
    params = sum(p.numel() for p in G.parameters())
    print(f"generator: {args.generator or 'synthfaces (shipped)'}, {G.img_resolution} px, {params:,} parameters; "
          f"{len(targets)} images, {args.inversion_steps} inversion + {args.tuning_steps} tuning steps "
          f"(no early stop); "
          f"{device}, {args.threads} threads, autocast {args.autocast or 'off'}, tf32 {'on' if args.tf32 else 'off'}; "
          f"torch {torch.__version__}")

    memory = memory_plan(G, targets, lpips, inverter, tuner, device, context)
    print(f"memory: {memory.describe()}")
    try:
        memory.check(batch_sizes[-1], f"K={batch_sizes[-1]}")
    except ConfigError as error:
        sys.exit(f"error: {error}")

    groups = {K: [targets[i:i + K] for i in range(0, len(targets), K)] for K in batch_sizes}
    wall = dict.fromkeys(batch_sizes, 0.0)
    cpu = dict.fromkeys(batch_sizes, 0.0)
    peak = dict.fromkeys(batch_sizes, 0)
    reached = {K: {"inversion": [], "tuning": []} for K in batch_sizes}
    done = dict.fromkeys(batch_sizes, 0)  # groups run per K
    while any(done[K] < len(groups[K]) for K in batch_sizes):
        # Next: the K whose next group's midpoint comes earliest in its own share of the work, so that each
        # K's groups spread over the whole run (K=8's one group sits amid K=1's eight) and changes in other
        # load on the machine hit every K alike.
        K = min((K for K in batch_sizes if done[K] < len(groups[K])),
                key=lambda K: (done[K] + 0.5) / len(groups[K]))
        turn, group = done[K], groups[K][done[K]]
        done[K] += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        with context():
            if K == 1:
                inversions = [inverter.invert(G, group[0])]
                tunings = [tuner.tune(G, group[0], inversions[0].pivot, lpips)]
            else:
                inversions = inverter.invert_batch(G, group)
                tunings = tuner.tune_batch(G, group, [inversion.pivot for inversion in inversions], lpips)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            peak[K] = max(peak[K], torch.cuda.max_memory_allocated(device) // len(group))
        wall[K] += time.perf_counter() - wall_start
        cpu[K] += time.process_time() - cpu_start
        with torch.no_grad():
            for target, inversion, tuning in zip(group, inversions, tunings):
                for stage, generator in (("inversion", G), ("tuning", tuning.generator)):
                    image = generator.synthesis(tuning.pivots if stage == "tuning" else inversion.pivot,
                                                noise_mode="const").clamp(-1, 1)
                    reached[K][stage].append(lpips(image, target).item())
        print(f"  K={K}: group {turn + 1}/{len(groups[K])} done ({time.perf_counter() - wall_start:.1f} s)",
              flush=True)

    n = len(targets)
    print(f"\n{'K':>4} {'s/image':>9} {'images/s':>9} {'CPU s/image':>12} {'speed-up':>9} {'CPU speed-up':>13} "
          f"{'LPIPS inv':>10} {'LPIPS tuned':>12}" + (f" {'peak MiB/image':>15}" if device.type == "cuda" else ""))
    base = batch_sizes[0]
    for K in batch_sizes:
        print(f"{K:>4} {wall[K] / n:>9.2f} {n / wall[K]:>9.4f} {cpu[K] / n:>12.2f} {wall[base] / wall[K]:>8.2f}x "
              f"{cpu[base] / cpu[K]:>12.2f}x {mean(reached[K]['inversion']):>10.4f} {mean(reached[K]['tuning']):>12.4f}"
              + (f" {peak[K] / 2 ** 20:>15.0f}" if device.type == "cuda" else ""))
    fastest = min(batch_sizes, key=lambda K: wall[K])
    print(f"speed-ups are against K={base} in this run; fastest: batch_size={fastest}")


if __name__ == "__main__":
    main()
