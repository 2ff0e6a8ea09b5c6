"""Batched PTI throughput: images per second of each configuration, measured side by side in one run.

    python -m pti_lab.bench.pti [--batch 1,4,8] [--processes 1,2] [--autocast fp32,bf16,bf16-inv]
        [--images 8] [--inversion-steps 450] [--tuning-steps 350] [--generator FILE | ffhq1024 | small64]
        [--device cpu|cuda] [--threads 2] [--tf32]

A configuration is a batch size K, a number of processes P and a precision. The baseline comes first
and is always measured: the one-image path (invert, tune) in one process with all threads, in
float32. Then every K of --batch, P of --processes and precision of --autocast (default fp32).
Each inverts (W projector) and tunes (pivotal tuning, no early stop: the worst case) the same
images, the first --images faces of the synthfaces out-of-domain test set at the generator's
resolution. K = 1 is the one-image path; K > 1 the batched one (invert_batch, tune_batch), as
`batch_size=K` runs them. Precisions (pti_lab/precision.py): fp32; bf16, `inverter.autocast=bf16
tuner.autocast=bf16`; bf16-inv, `inverter.autocast=bf16` (the VGG16-bound inversion in bf16, tuning in
float32).

The one-process configurations take turns group by group, each one's groups spread over the whole run
(K=1's eight images around K=8's one batch), so that other load on a shared machine slows them alike.
--processes P > 1 (CPU): the images dealt round-robin into P equal shares, each run in its own process
with threads // P torch threads, in groups of K (at most its share), side by side: what a sweep over
balanced data shards does (`python run.py -m data.shard=0,1 data.shards=2 data.split=balanced
hydra/launcher=joblib batch_size=4`). On a few cores
small convolutions keep one thread busier than two, so P processes of one thread beat one process of
P threads. Each configuration with P > 1 runs on its own after the one-process turns, timed from the
moment every process has loaded its models and images to the moment the last one finishes.

Printed per configuration: wall seconds per image, images/s, CPU seconds per image (process time,
which other processes on a shared machine disturb less than wall time), speed-ups (ratios to the
baseline in this run), the mean final LPIPS(alex) of the inversions and of the tuned generators (the
reconstructions clamped to [-1, 1], as the run's metrics, computed in float32), and on CUDA the peak
memory per image.

Memory: one inversion and one tuning step at K = 1 and K = 2 give the memory per image; the
benchmark prints the largest K that fits in the memory available now and stops with one line,
before any timing, when a requested K (times P) does not fit.

--generator: any checkpoint load_generator reads (default: the shipped synthfaces generator), or
random weights in an official architecture: `ffhq1024`, the FFHQ 1024 px configuration (config-f:
512-d z and w, 8 mapping layers, channel_base 32768, channel_max 512), for runs on a GPU; `small64`,
a 64 px network of 0.93 M parameters (256-d z and w, channel_base 1024, channel_max 64, conv_clamp 256).
"""

import argparse
import multiprocessing
import sys
import threading
import time
import traceback
from pathlib import Path
from statistics import mean

import torch

from pti_lab.batching.memory import BatchMemory
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


def memory_plan(G, targets, lpips, device) -> BatchMemory:
    """Memory of batched PTI per image, from one inversion and one tuning step at K = 1 and K = 2."""
    one_step_inverter, one_step_tuner = stages(1, 1)
    pivot = G.mapping.w_avg.reshape(1, 1, -1).expand(1, G.num_ws, -1)

    def step(K: int) -> None:
        batch = [targets[k % len(targets)] for k in range(K)]
        one_step_inverter.invert_batch(G, batch)
        one_step_tuner.tune_batch(G, batch, [pivot] * K, lpips)
    # Per image on the host besides autograd's tensors: the tuned copy, its gradient and two Adam moments.
    return BatchMemory(step, device, 4 * sum(p.numel() * p.element_size() for p in G.synthesis.parameters()))


PRECISIONS = {  # name: (inverter.autocast, tuner.autocast)
    "fp32": (None, None),
    "bf16": ("bf16", "bf16"),
    "bf16-inv": ("bf16", None),
}


def stages(inversion_steps: int, tuning_steps: int, precision: str = "fp32") -> tuple[WInverter, PivotalTuner]:
    """The W projector and pivotal tuning (no early stop: the worst case) at these steps and precision."""
    inversion_autocast, tuning_autocast = PRECISIONS[precision]
    return (WInverter(steps=inversion_steps, autocast=inversion_autocast, progress=False),
            PivotalTuner(steps=tuning_steps, lpips_threshold=None, autocast=tuning_autocast, progress=False))


def overrides(precision: str) -> str:
    """The run.py overrides of a precision."""
    return " ".join(f"{stage}.autocast={value}" for stage, value in zip(("inverter", "tuner"), PRECISIONS[precision])
                    if value)


def run_group(G, group, inverter, tuner, lpips) -> tuple[list, list]:
    """Invert and tune one group as `batch_size=len(group)` does: one image alone, several in one batch."""
    if len(group) == 1:
        inversions = [inverter.invert(G, group[0])]
        return inversions, [tuner.tune(G, group[0], inversions[0].pivot, lpips)]
    inversions = inverter.invert_batch(G, group)
    return inversions, tuner.tune_batch(G, group, [inversion.pivot for inversion in inversions], lpips)


@torch.no_grad()
def add_reached_lpips(reached: dict[str, list[float]], G, group, inversions, tunings, lpips) -> None:
    """Append the final LPIPS(alex) of each image's inversion and tuned generator (renders clamped to
    [-1, 1]) to reached['inversion'] and reached['tuning']."""
    for target, inversion, tuning in zip(group, inversions, tunings):
        for stage, generator, latent in (("inversion", G, inversion.pivot),
                                         ("tuning", tuning.generator, tuning.pivots)):
            image = generator.synthesis(latent, noise_mode="const").clamp(-1, 1)
            reached[stage].append(lpips(image, target).item())


def setup(args: argparse.Namespace) -> tuple[Generator, LPIPS, list[torch.Tensor]]:
    """(G, LPIPS(alex), the first --images ood targets) as every configuration uses them."""
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    device = torch.device(args.device)
    G = load(args.generator, device)
    lpips = LPIPS(net="alex").to(device)
    samples = SynthfacesTestSet(kind="ood", limit=args.images).samples(G.img_resolution)
    return G, lpips, [sample.image.to(device) for sample in samples]


def share_worker(args: argparse.Namespace, config: tuple, share: list[int], threads: int, ready, results) -> None:
    """One of P processes: its share of the images (indices) in groups of K, timed after `ready`."""
    precision, _, K = config
    try:
        keep_freed_memory()
        torch.set_num_threads(threads)
        G, lpips, targets = setup(args)
        mine = [targets[i] for i in share]
        inverter, tuner = stages(args.inversion_steps, args.tuning_steps, precision)
        # First-call costs (W statistics, VGG16, kernels), as the memory plan has them in one process.
        run_group(G, mine[:K], *stages(1, 1, precision), lpips)
        inverter.projector_distance(torch.device(args.device))  # built on first use: now, not timed
        ready.wait()
        cpu_start = time.process_time()
        reached = {"inversion": [], "tuning": []}
        for i in range(0, len(mine), K):
            group = mine[i:i + K]
            add_reached_lpips(reached, G, group, *run_group(G, group, inverter, tuner, lpips), lpips)
        results.put({"cpu": time.process_time() - cpu_start, "reached": reached})
    except BaseException:  # the parent prints it and stops
        results.put({"error": traceback.format_exc()})
        ready.abort()


def run_processes(args: argparse.Namespace, config: tuple, threads: int) -> tuple[float, float, dict]:
    """(wall s, CPU s, LPIPS reached) of all images run over P processes side by side, groups of K each."""
    P = config[1]
    context = multiprocessing.get_context("spawn")  # a fresh torch per process (no forked thread pools)
    shares = [list(range(args.images))[p::P] for p in range(P)]
    shares = [share for share in shares if share]
    ready, results = context.Barrier(len(shares) + 1), context.Queue()
    workers = [context.Process(target=share_worker, args=(args, config, share, threads, ready, results))
               for share in shares]
    for worker in workers:
        worker.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        pass  # a worker failed while loading: its error is in the queue
    start = time.perf_counter()
    outcomes = [results.get() for _ in workers]
    wall = time.perf_counter() - start
    for worker in workers:
        worker.join()
    errors = [outcome["error"] for outcome in outcomes if "error" in outcome]
    if errors:
        sys.exit(f"error: a process of --processes {P} failed:\n{errors[0]}")
    reached = {stage: [value for outcome in outcomes for value in outcome["reached"][stage]]
               for stage in ("inversion", "tuning")}
    return wall, sum(outcome["cpu"] for outcome in outcomes), reached


def numbers(text: str, what: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",")})
        assert values[0] >= 1
        return values
    except (ValueError, AssertionError, IndexError):
        sys.exit(f"error: {what} {text}: expected whole numbers >= 1, e.g. {what} 1,4,8")


def name(config: tuple) -> str:
    precision, P, K = config
    return f"P={P} K={K} {precision}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", default="1,4,8", help="batch sizes K to compare, comma-separated (default 1,4,8)")
    parser.add_argument("--processes", default="1",
                        help="processes P to compare, comma-separated (default 1); each gets threads // P threads")
    parser.add_argument("--autocast", default="fp32",
                        help=f"precisions to compare, comma-separated: {', '.join(PRECISIONS)} (default fp32)")
    parser.add_argument("--generator", default=None,
                        help=f"checkpoint file or URL, or one of {', '.join(FRESH)} (default: synthfaces)")
    parser.add_argument("--images", type=int, default=8, help="images each configuration processes (default 8)")
    parser.add_argument("--inversion-steps", type=int, default=450)
    parser.add_argument("--tuning-steps", type=int, default=350)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads (default: torch's)")
    parser.add_argument("--tf32", action="store_true", help="CUDA: TF32 matmuls and convolutions (every configuration)")
    args = parser.parse_args()
    batch_sizes = numbers(args.batch, "--batch")
    precisions = list(dict.fromkeys(args.autocast.split(",")))
    if not set(precisions) <= set(PRECISIONS):
        sys.exit(f"error: --autocast {args.autocast}: expected some of {', '.join(PRECISIONS)}, comma-separated")
    processes = numbers(args.processes, "--processes")
    if args.images < 1:
        sys.exit(f"error: --images {args.images}: expected a whole number >= 1")
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    G, lpips, targets = setup(args)
    params = sum(p.numel() for p in G.parameters())
    print(f"generator: {args.generator or 'synthfaces (shipped)'}, {G.img_resolution} px, {params:,} parameters; "
          f"{len(targets)} images, {args.inversion_steps} inversion + {args.tuning_steps} tuning steps "
          f"(no early stop); {device}, {args.threads} threads, tf32 {'on' if args.tf32 else 'off'}; "
          f"torch {torch.__version__}")

    memory = memory_plan(G, targets, lpips, device)
    print(f"memory: {memory.describe()}")
    try:  # P processes of K images hold about P * K images' memory (each also its own models)
        memory.check(max(P * min(K, -(-len(targets) // P)) for P in processes for K in batch_sizes),
                     f"K={batch_sizes[-1]} x {processes[-1]} processes")
    except ConfigError as error:
        sys.exit(f"error: {error}")

    base = ("fp32", 1, 1)  # the one-image path in float32
    configs = [base] + [(precision, P, K) for precision in precisions for P in processes for K in batch_sizes
                        if (precision, P, K) != base]
    wall = dict.fromkeys(configs, 0.0)
    cpu = dict.fromkeys(configs, 0.0)
    peak = dict.fromkeys(configs, 0)
    reached = {config: {"inversion": [], "tuning": []} for config in configs}
    one_process = [config for config in configs if config[1] == 1]
    groups = {config: [targets[i:i + config[2]] for i in range(0, len(targets), config[2])] for config in one_process}
    runners = {config: stages(args.inversion_steps, args.tuning_steps, config[0]) for config in one_process}
    done = dict.fromkeys(one_process, 0)  # groups run per configuration
    while any(done[config] < len(groups[config]) for config in one_process):
        # Next: the configuration whose next group's midpoint comes earliest in its own share of the work,
        # so that each one's groups spread over the whole run (K=8's one group sits amid K=1's eight) and
        # changes in other load on the machine hit every configuration alike.
        config = min((config for config in one_process if done[config] < len(groups[config])),
                     key=lambda config: (done[config] + 0.5) / len(groups[config]))
        turn, group = done[config], groups[config][done[config]]
        done[config] += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        inversions, tunings = run_group(G, group, *runners[config], lpips)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            peak[config] = max(peak[config], torch.cuda.max_memory_allocated(device) // len(group))
        wall[config] += time.perf_counter() - wall_start
        cpu[config] += time.process_time() - cpu_start
        add_reached_lpips(reached[config], G, group, inversions, tunings, lpips)
        print(f"  {name(config)}: group {turn + 1}/{len(groups[config])} done "
              f"({time.perf_counter() - wall_start:.1f} s)", flush=True)
    for config in configs:
        if config[1] > 1:
            threads = max(args.threads // config[1], 1)
            wall[config], cpu[config], reached[config] = run_processes(args, config, threads)
            print(f"  {name(config)}: {config[1]} processes of {threads} thread{'s' * (threads > 1)} done "
                  f"({wall[config]:.1f} s)", flush=True)

    n = len(targets)
    print(f"\n{'P':>3} {'K':>4} {'autocast':>8} {'s/image':>9} {'images/s':>9} {'CPU s/image':>12} {'speed-up':>9} "
          f"{'CPU speed-up':>13} {'LPIPS inv':>10} {'LPIPS tuned':>12}"
          + (f" {'peak MiB/image':>15}" if device.type == "cuda" else ""))
    for config in configs:
        precision, P, K = config
        print(f"{P:>3} {K:>4} {precision:>8} {wall[config] / n:>9.2f} {n / wall[config]:>9.4f} "
              f"{cpu[config] / n:>12.2f} {wall[base] / wall[config]:>8.2f}x {cpu[base] / cpu[config]:>12.2f}x "
              f"{mean(reached[config]['inversion']):>10.4f} {mean(reached[config]['tuning']):>12.4f}"
              + (f" {peak[config] / 2 ** 20:>15.0f}" if device.type == "cuda" else ""))
    precision, P, K = min(configs, key=lambda config: wall[config])
    K = min(K, -(-n // P))  # the groups of a process hold at most its share of the images
    print(f"speed-ups are against P=1 K=1 fp32 (the one-image path) in this run; fastest: batch_size={K}"
          + (f" {overrides(precision)}" if overrides(precision) else "")
          + (f" over {P} processes (data.shards={P} data.split=balanced, hydra/launcher=joblib)" if P > 1 else ""))


if __name__ == "__main__":
    main()
