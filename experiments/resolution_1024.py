"""PTI at 1024 px on a CPU: memory and speed of one inversion step and one tuning step, in float32, bf16
autocast and channels_last.

    OMP_NUM_THREADS=2 python experiments/resolution_1024.py [--generator ffhq1024 | small64 | FILE]
                                    [--threads 2] [--steps 2] [--rounds 3] [--rss-stages inversion,tuning]
                                    [--sections memory,speed]

The generator is the FFHQ 1024 px StyleGAN2 architecture (config-f: 512-d z and w, 8 mapping layers,
channel_base 32768, channel_max 512) with random weights (`--generator ffhq1024`, pti_lab/bench/pti.py
FRESH): time and memory do not depend on the weights; `small64` tries the script in a minute. Targets:
the first three synthfaces out-of-domain faces at the generator's resolution; the tuning pivot: the W
mean the projector starts from. The two steps are PTI's: the W projector (VGG16 LPIPS on the render
area-downsampled to 256 px, Adam on w and the noise maps; WInverter.invert_batch) and pivotal tuning
(generator forward and backward to every synthesis weight, LPIPS(alex) at the rendered size plus MSE,
Adam; PivotalTuner.tune_batch, no early stop). K: images in one batch.

1. Memory, in float32 and in bf16 autocast, of one step at K = 1, 2 and 3 (GiB):
   - what BatchMemory (pti_lab/batching/memory.py, behind check_batch_memory) measures: the bytes
     autograd saves for the backward pass (+ for tuning the tuned weights' copy, gradient and Adam
     moments per image);
   - the real peak resident size (VmHWM) of a fresh process per stage, precision and K that loads the
     models (the targets come from this process) and takes one step, and its rise above the resident
     size before that step.
   Per image + fixed from K = 1 -> 2 (BatchMemory's rule, which clamps a negative fixed part to 0) and
   from K = 2 -> 3: K = 1 takes the one-image path and K >= 2 the batched one (tuning under vmap), so
   only the second line extrapolates to larger K. Largest K that fits in 16, 32 and 80 GiB (no
   headroom): K = 1 as measured, K >= 2 on the K = 2 -> 3 line; a run holds one stage at a time, so its
   K is the smaller of the two stages'.
2. Speed, in four variants: fp32, bf16 (inverter.autocast=bf16, tuner.autocast=bf16), fp32+cl and
   bf16+cl, where cl is a copy of the generator converted with .to(memory_format=torch.channels_last)
   (its 4-d conv weights; the const input is 3-d) and targets converted likewise. The LPIPS backbones
   are channels_last in every variant already (pti_lab/models/lpips.py converts them and their inputs).
   Warm-up: the memory probe's steps for fp32 and bf16 (same K, same kernels; without the memory
   section one step each), one step of each cl variant. Then --rounds rounds in which the variants
   take turns (fp32 bf16 fp32+cl bf16+cl, fp32 ...) with one call of --steps steps each per stage
   and K. A step's time is the interval between two consecutive step callbacks (backward and Adam
   update of one step, forward of the next), so a call of S steps gives S - 1 of them; the call is
   stopped at its last callback, as the update after it would not be timed. Wall and CPU time
   (process time of all threads); printed: median ms per step and per image, the ratio to fp32's
   time (< 1: faster), and CPU / wall time, which falls below the thread count when other processes
   share the cores (a load that changes within a round is not evened out by the turns). Forward hooks
   record the memory layout of every synthesis layer's output (under vmap, K > 1, that of the
   physical tensor): whether it stays channels_last.
3. Quality sanity: the losses of image 0 in each variant's last K = 1 call before any update and after
   S - 1 updates from the same start, next to fp32's.
The load average is printed at the start and the end: on a shared machine other processes slow all
variants alike only because they take turns, so quote the ratios.
"""

import argparse
import copy
import multiprocessing
import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch._C import _functorch  # to see the physical tensor behind vmap's batched one

from pti_lab.batching.memory import GiB, peak_bytes, proc_bytes
from pti_lab.bench.pti import load, stages
from pti_lab.data import SynthfacesTestSet
from pti_lab.inversion import WInverter
from pti_lab.inversion.w_stats import cached_w_stats
from pti_lab.models import LPIPS
from pti_lab.models.stylegan2 import Generator, SynthesisLayer, ToRGBLayer
from pti_lab.runtime import keep_freed_memory
from pti_lab.tuning import PivotalTuner

CPU = torch.device("cpu")
CL = torch.channels_last
STAGES = ("inversion", "tuning")
PRECISIONS = ("fp32", "bf16")
VARIANTS = {"fp32": ("fp32", False), "bf16": ("bf16", False), "fp32+cl": ("fp32", True), "bf16+cl": ("bf16", True)}
MEMORY_SIZES_GIB = (16, 32, 80)
BATCHES = (1, 2, 3)  # K = 1 takes the one-image path; K >= 2 the batched one (tuning: under vmap)
SECTIONS = ("memory", "speed")


@dataclass
class Problem:
    G: Generator
    lpips: LPIPS                 # LPIPS(alex) at the rendered size: PTI's tuning loss
    targets: list[torch.Tensor]  # max(BATCHES) images [1, 3, R, R]
    pivot: torch.Tensor          # [1, num_ws, w_dim]


def make_problem(generator: str) -> Problem:
    G = load(generator, CPU)
    targets = [sample.image for sample in SynthfacesTestSet(kind="ood", limit=max(BATCHES)).samples(G.img_resolution)]
    pivot = cached_w_stats(G).mean[:, None].expand(1, G.num_ws, -1)
    return Problem(G, LPIPS("alex"), targets, pivot)


def channels_last(problem: Problem) -> Problem:
    """The same problem with a channels_last copy of the generator and channels_last targets."""
    return Problem(copy.deepcopy(problem.G).to(memory_format=CL), problem.lpips,
                   [target.contiguous(memory_format=CL) for target in problem.targets], problem.pivot)


def run_stage(stage: str, runner: WInverter | PivotalTuner, problem: Problem, K: int,
              on_step: Optional[Callable] = None) -> list:
    """One call of the stage on the first K targets; on_step is called after each step of image 0."""
    if K > len(problem.targets):  # fewer would measure a smaller batch than K
        raise ValueError(f"resolution_1024.py: K={K} but only {len(problem.targets)} targets")
    on_steps = [on_step] + [None] * (K - 1)
    if stage == "inversion":
        results = runner.invert_batch(problem.G, problem.targets[:K], on_steps=on_steps)
    else:
        results = runner.tune_batch(problem.G, problem.targets[:K], [problem.pivot] * K, problem.lpips,
                                    on_steps=on_steps)
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def runners(precision: str, steps: int) -> dict[str, WInverter | PivotalTuner]:
    """The stages at this precision, the inverter's VGG16 loaded now (not in a timed call)."""
    inverter, tuner = stages(steps, steps, precision)
    inverter.projector_distance(CPU)
    return {"inversion": inverter, "tuning": tuner}


# ---------------------------------------------------------------------------------------------
# 1. Memory


def tuned_bytes(G: Generator) -> int:
    """Host memory per image that autograd does not hold: the tuned copy, its gradient, two Adam moments."""
    return 4 * sum(p.numel() * p.element_size() for p in G.synthesis.parameters())


def saved_bytes(problem: Problem, precision: str) -> dict[str, dict[int, int]]:
    """Stage -> K -> what BatchMemory measures of one step of K images: autograd's saved tensors (+ for
    tuning the host bytes per image)."""
    one_step = {stage: runner.one_step() for stage, runner in runners(precision, 1).items()}
    host = {"inversion": 0, "tuning": tuned_bytes(problem.G)}
    return {stage: {K: peak_bytes(lambda: run_stage(stage, one_step[stage], problem, K), CPU) + K * host[stage]
                    for K in BATCHES}
            for stage in STAGES}


def peak_rss_child(generator: str, targets: list, pivot: torch.Tensor, stage: str, precision: str, K: int,
                   threads: int, queue) -> None:
    """In a fresh process: load the models, take one step; put (resident bytes before it, peak before, peak after)."""
    keep_freed_memory()  # as run.py's process
    torch.set_num_threads(threads)
    problem = Problem(load(generator, CPU), LPIPS("alex"), targets, pivot)
    runner = runners(precision, 1)[stage]
    before = (proc_bytes("/proc/self/status", "VmRSS"), proc_bytes("/proc/self/status", "VmHWM"))
    run_stage(stage, runner, problem, K)
    queue.put(before + (proc_bytes("/proc/self/status", "VmHWM"),))


def peak_rss(generator: str, problem: Problem, stage: str, precision: str, K: int,
             threads: int) -> tuple[int, int, int]:
    context = multiprocessing.get_context("spawn")  # a fresh process: its peak is this step's alone
    queue = context.Queue()
    child = context.Process(target=peak_rss_child, args=(generator, problem.targets, problem.pivot, stage,
                                                         precision, K, threads, queue))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"error: the peak-RSS process ({stage} {precision} K={K}) exited with {child.exitcode}")
    return queue.get()


def line(values: dict[int, float], a: int, b: int) -> tuple[float, float]:
    """(fixed, per image) of the line through the values at K = a and K = b (per image at least 1 byte:
    a small generator's steps are within the heap's noise)."""
    per_image = max((values[b] - values[a]) / (b - a), 1)
    return values[a] - a * per_image, per_image


def largest_batch(values: dict[int, float], size: float) -> int:
    """The largest K whose memory fits in `size` bytes: K = 1 as measured, K >= 2 on the line through
    K = 2 and 3 (the batched path)."""
    fixed, per_image = line(values, 2, 3)
    batched = int((size - fixed) // per_image)
    return batched if batched >= 2 else int(values[1] <= size)


def describe_memory(values: dict[int, float]) -> str:
    (fixed_12, per_12), (fixed_23, per_23) = line(values, 1, 2), line(values, 2, 3)
    return (" ".join(f"K={K} {values[K] / GiB:5.2f}" for K in BATCHES) + f" GiB; per image + fixed: K=1->2 "
            f"{per_12 / GiB:.2f} + {fixed_12 / GiB:5.2f}, K=2->3 {per_23 / GiB:.2f} + {fixed_23 / GiB:5.2f}; largest K "
            + " ".join(f"{size} GiB: {largest_batch(values, size * GiB)}" for size in MEMORY_SIZES_GIB))


def report_memory(problem: Problem, generator: str, threads: int, rss_stages: list[str]) -> None:
    print(f"\n1. Memory of one step at K = {', '.join(map(str, BATCHES))} (GiB)", flush=True)
    for precision in PRECISIONS:
        for stage, values in saved_bytes(problem, precision).items():
            print(f"  BatchMemory's bytes {precision} {stage:9s}: {describe_memory(values)}", flush=True)
    for precision in PRECISIONS:
        peaks = {}
        for stage in rss_stages:
            peaks[stage] = {}
            for K in BATCHES:
                resident, hwm_before, peaks[stage][K] = peak_rss(generator, problem, stage, precision, K, threads)
                note = "" if peaks[stage][K] > hwm_before else " (the step did not raise the peak of loading)"
                print(f"  peak RSS {precision} {stage:9s} K={K}: {peaks[stage][K] / GiB:5.2f} GiB, "
                      f"{(peaks[stage][K] - resident) / GiB:5.2f} above the {resident / GiB:.2f} resident before "
                      f"the step{note}", flush=True)
            print(f"  peak RSS {precision} {stage:9s}: {describe_memory(peaks[stage])}", flush=True)
        if len(peaks) > 1:  # a run holds one stage at a time: its K is the smaller one
            print(f"  peak RSS {precision} {'+'.join(peaks)}: largest K " + " ".join(
                f"{size} GiB: {min(largest_batch(values, size * GiB) for values in peaks.values())}"
                for size in MEMORY_SIZES_GIB))


# ---------------------------------------------------------------------------------------------
# 2. Speed and memory layouts


def layout(t: torch.Tensor) -> str:
    while _functorch.is_batchedtensor(t):  # under vmap (K > 1): the physical tensor, channels still at -3
        t = _functorch.get_unwrapped(t)
    if t.shape[-3] > 1 and t.stride(-3) == 1:
        return "NHWC"
    return "NCHW" if t.stride(-1) == 1 else "other"


def with_layouts(G: Generator, seen: dict[str, set[str]], run: Callable):
    """run() with hooks on G's synthesis layers adding the layouts of their outputs to seen[layer name]."""
    hooks = [module.register_forward_hook(lambda m, i, out, name=name: seen.setdefault(name, set()).add(layout(out)))
             for name, module in G.synthesis.named_modules() if isinstance(module, (SynthesisLayer, ToRGBLayer))]
    try:
        return run()
    finally:
        for hook in hooks:
            hook.remove()


def describe_layouts(seen: dict[str, set[str]]) -> str:
    """'NHWC 12/14; NCHW: b32.conv0, b64.conv0': the common layout, then the layers that differ."""
    kinds = {name: "/".join(sorted(layouts)) for name, layouts in seen.items()}
    common = max(set(kinds.values()), key=list(kinds.values()).count)
    others = {}
    for name, kind in kinds.items():
        if kind != common:
            others.setdefault(kind, []).append(name)
    return f"{common} {list(kinds.values()).count(common)}/{len(kinds)}" + "".join(
        f"; {kind}: {', '.join(names)}" for kind, names in others.items())


class LastTimedStep(Exception):
    """Raised by the step callback of a call's last step: the update after it would not be timed."""


def timed_call(stage: str, runner, problem: Problem, K: int) -> tuple[list[tuple[float, float]], list[dict]]:
    """((wall s, CPU s) of each step after the first, the losses of image 0 at every step) of one call."""
    stamps, losses = [], []

    def on_step(step: int, step_losses: dict, renders) -> None:
        stamps.append((time.perf_counter(), time.process_time()))
        losses.append(step_losses)
        if step == runner.steps - 1:
            raise LastTimedStep

    try:
        run_stage(stage, runner, problem, K, on_step)
    except LastTimedStep:
        pass
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(stamps, stamps[1:])], losses


def report_speed(problem: Problem, steps: int, rounds: int, warmed: bool) -> None:
    """warmed: the memory probe has taken fp32 and bf16 steps at these K."""
    problems = {variant: channels_last(problem) if cl else problem for variant, (_, cl) in VARIANTS.items()}
    stage_runners = {variant: runners(precision, steps) for variant, (precision, _) in VARIANTS.items()}
    cells = [(K, stage, variant) for K in (1, 2) for stage in STAGES for variant in VARIANTS]
    layouts = {cell: {} for cell in cells}
    print("\n2. Speed", flush=True)
    for K, stage, variant in cells:
        if VARIANTS[variant][1] or not warmed:
            warm_up = stage_runners[variant][stage].one_step()
            with_layouts(problems[variant].G, layouts[K, stage, variant],
                         lambda: run_stage(stage, warm_up, problems[variant], K))
            print(f"  warm-up   {stage:9s} K={K} {variant:8s} done", flush=True)

    times = {cell: [] for cell in cells}
    losses = {}
    for turn in range(rounds):
        for K, stage, variant in cells:  # the variants take turns
            step_times, losses[K, stage, variant] = with_layouts(
                problems[variant].G, layouts[K, stage, variant],
                lambda: timed_call(stage, stage_runners[variant][stage], problems[variant], K))
            times[K, stage, variant] += step_times
            print(f"  round {turn + 1}/{rounds} {stage:9s} K={K} {variant:8s}: "
                  + " ".join(f"{1000 * wall:.0f} ms (CPU {1000 * cpu:.0f})" for wall, cpu in step_times), flush=True)

    print(f"\nMemory layout of the synthesis layers' outputs (LPIPS backbones channels_last in every variant: "
          f"{next(problem.lpips.features.parameters()).is_contiguous(memory_format=CL)})")
    for cell in cells:
        print(f"  {cell[1]:9s} K={cell[0]} {cell[2]:8s}: {describe_layouts(layouts[cell])}")

    print(f"\nSpeed: median ms per step ({rounds} x {steps - 1} steps each) wall and CPU (all threads), "
          f"per image, and time / fp32's (< 1: faster); CPU/wall near {torch.get_num_threads()}: the threads "
          f"had the cores to themselves, lower: other processes took turns on them")
    for K, stage, variant in sorted(cells, key=lambda cell: (cell[1], cell[0])):
        wall, cpu, busy = (statistics.median(f(t) for t in times[K, stage, variant])
                           for f in (lambda t: t[0], lambda t: t[1], lambda t: t[1] / t[0]))
        base_wall, base_cpu = (statistics.median(t[i] for t in times[K, stage, "fp32"]) for i in (0, 1))
        print(f"  {stage:9s} K={K} {variant:8s} {1000 * wall:7.0f} ms/step {1000 * wall / K:7.0f} ms/image  "
              f"{wall / base_wall:5.2f}x fp32   CPU {1000 * cpu:7.0f} ms/step {cpu / base_cpu:5.2f}x fp32  "
              f"CPU/wall {busy:.2f}  (n={len(times[K, stage, variant])})")

    print(f"\n3. Losses of image 0 (K=1, last round) before any update and after {steps - 1}, and relative to fp32's")
    for stage in STAGES:
        for variant in VARIANTS:
            for step in (0, steps - 1):
                row, base = losses[1, stage, variant][step], losses[1, stage, "fp32"][step]
                print(f"  {stage:9s} {variant:8s} step {step}: " + "  ".join(
                    f"{name} {value:.5g} ({100 * (value / base[name] - 1):+.2f}%)" for name, value in row.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", default="ffhq1024", help="ffhq1024, small64 (to try the script) or a checkpoint")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (set OMP_NUM_THREADS alike)")
    parser.add_argument("--steps", type=int, default=2, help="steps per timed call (each gives steps - 1 times)")
    parser.add_argument("--rounds", type=int, default=3, help="timed calls per variant, stage and K, taking turns")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"of {', '.join(SECTIONS)}, comma-separated")
    parser.add_argument("--rss-stages", default=",".join(STAGES),
                        help="stages whose peak RSS fresh processes measure, comma-separated; '' for none")
    args = parser.parse_args()
    rss_stages = [stage for stage in args.rss_stages.split(",") if stage]
    sections = args.sections.split(",")
    if args.steps < 2 or args.rounds < 1 or not set(rss_stages) <= set(STAGES) or not set(sections) <= set(SECTIONS):
        raise SystemExit(f"error: need --steps >= 2, --rounds >= 1, --rss-stages of {', '.join(STAGES)} and "
                         f"--sections of {', '.join(SECTIONS)}; got {args.steps}, {args.rounds}, "
                         f"{args.rss_stages!r}, {args.sections!r}")
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    problem = make_problem(args.generator)
    print(f"generator {args.generator}: {problem.G.img_resolution} px, "
          f"{sum(p.numel() for p in problem.G.synthesis.parameters()):,} synthesis parameters; "
          f"torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}); "
          f"load average {os.getloadavg()[0]:.2f}")
    if "memory" in sections:
        report_memory(problem, args.generator, args.threads, rss_stages)
    if "speed" in sections:
        report_speed(problem, args.steps, args.rounds, warmed="memory" in sections)
    print(f"\n{time.perf_counter() - start:.0f} s in all; load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
