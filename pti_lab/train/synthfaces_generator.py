"""Train the synthfaces StyleGAN2 generator as a decoder of standardised renderer parameters.

    python -m pti_lab.train.synthfaces_generator --out DIR [--seed 0] [--minutes 45] [--steps N]
        [--device cpu|cuda] [--batch B] [--invert 8] [--ship DIR]
    python -m pti_lab.train.synthfaces_generator --report DIR [--invert 8]
    python -m pti_lab.train.synthfaces_generator --ship DIR

--out trains into DIR: generator.pt (pti-lab's generator format, fp16 tensors; `load_generator`
reads it) and training.json (the run's numbers and the command that rebuilds it), then reports.
--report writes DIR/report.json: LPIPS(alex) of the decodings of the in-domain and out-of-domain
test sets and of --invert W-space inversions (450 steps) of each set, plus samples.png (z ~ N(0, I))
and reconstruction.png (rows: in-domain renders, their decodings, OOD renders, their decodings).
--ship copies DIR/generator.pt into the package and records it with the numbers of DIR's
training.json and report.json in the manifest (pti_lab.synthfaces.shipped); nothing is recomputed,
so a folder trained and reported on a GPU machine can be shipped from anywhere.

The generator is pti-lab's StyleGAN2 (mapping + synthesis with per-pixel noise). It is trained as a
decoder: z = standardise(params) of freshly rendered in-domain faces (`params.IN_DOMAIN`, so z_dim
= 40), loss = L1 + LPIPS(alex, on 2x upsampled images) between G(z) and the render. The mapping
normalises z to the sphere, for these z as for Gaussian ones, so z ~ N(0, I) lands where the
training faces are: samples are in-domain faces. Noise mode is 'random' during training, and the mapping runs in train mode so it
tracks w_avg (truncation needs it). The shipped weights are those of G_ema, the exponential moving
average of G's weights, as in the official training loop.

Batch b is rendered from sampler seed (seed + 1) * 10**7 + b (train_predictor's batch seeds), never
the test sets' 9000/9001. Training stops after --steps steps or --minutes of wall time, whichever
comes first; the learning rate follows a cosine over --steps if given, else over the wall time.
A run that ends on --steps is deterministic for a seed up to floating-point nondeterminism; give
--minutes enough headroom that it does.
"""

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from pti_lab.atomic import atomic_path, write_text
from pti_lab.inversion.projector import WInverter
from pti_lab.models.checkpoints import load_generator, save_generator
from pti_lab.models.lpips import LPIPS
from pti_lab.models.stylegan2 import Generator
from pti_lab.runtime import keep_freed_memory
from pti_lab.synthfaces import shipped
from pti_lab.synthfaces.params import IN_DOMAIN, sample_params, standardise
from pti_lab.synthfaces.render import render
from pti_lab.synthfaces.testsets import make_testset, preview_grid
from pti_lab.train.synthfaces_predictor import (
    batch_seed, batch_stream, check_out_report_ship, cosine_lr, default_workers, pick_device, to_network_images,
)
from pti_lab.synthfaces.shipped import GENERATOR_FILE

TRAINING_JSON = "training.json"  # the run's summary and the command that rebuilds it
REPORT_JSON = "report.json"      # the quality numbers
RESOLUTION = 64
# Sized so that forward+backward of one image stays well under 25 ms on 2 CPU cores (PTI tunes
# the synthesis network one image at a time).
ARCHITECTURE = dict(
    z_dim=len(IN_DOMAIN),  # z = the standardised in-domain parameters
    c_dim=0,
    w_dim=256,
    img_resolution=RESOLUTION,
    img_channels=3,
    # The official lr_multiplier 0.01 leaves the mapping a frozen random MLP over a run this short;
    # at 1 it learns the non-linear parameter -> appearance relations (palettes, hues), and the
    # loss falls about twice as fast.
    mapping_kwargs=dict(num_layers=4, lr_multiplier=1.0),
    synthesis_kwargs=dict(channel_base=2048, channel_max=128),  # 128 channels up to 16 px, 64 at 32 px, 32 at 64 px
)
EMA_KIMG_PER_32 = 10.0  # half-life of G_ema: the official 10 thousand images per 32 images of batch ...
EMA_RAMPUP = 0.05       # ... but never longer than this fraction of the images seen so far
LOSS_UPSAMPLE = 2    # LPIPS loss at 128 px (see upsample)
REPORT_COUNT = 32    # test-set images per decoding number (the whole seeded sets)
INVERT_COUNT = 8     # test-set images per inversion number (450 steps each: slow on a CPU)
INVERT_STEPS = 450   # PTI's W-space inversion steps
SAMPLE_SEED = 0      # z of the samples grid


def make_batch(batch: int):
    """make_batch(seed, index) -> (uint8 renders [batch, 64, 64, 3], z [batch, z_dim]) for batch_stream."""
    def make(seed: int, index: int):
        params = sample_params(batch, batch_seed(seed, index))
        return torch.from_numpy(render(params, RESOLUTION)), torch.from_numpy(standardise(params))
    return make


def update_ema(G_ema: Generator, G: Generator, beta: float) -> None:
    """G_ema's parameters move towards G's by 1 - beta; buffers (w_avg, noise_const) are copied."""
    with torch.no_grad():
        torch._foreach_lerp_(list(G_ema.parameters()), list(G.parameters()), 1 - beta)  # one kernel per group on CUDA
        for b_ema, b in zip(G_ema.buffers(), G.buffers()):
            b_ema.copy_(b)


def upsample(images: torch.Tensor) -> torch.Tensor:
    """Bilinear 2x: at 64 px AlexNet's stride-4 first layer sees an eye or a mouth as less than one
    feature cell, so LPIPS as a loss is computed at 128 px to make the facial features count."""
    return F.interpolate(images, scale_factor=LOSS_UPSAMPLE, mode="bilinear", align_corners=False)


def make_lpips() -> LPIPS:
    """LPIPS(alex), weights found as LPIPS finds them; no range check (G's early outputs overshoot [-1, 1])."""
    return LPIPS("alex", allow_download=False, range_tolerance=None)


def train(
    out_dir: Path,                        # where generator.pt is written
    seed: int = 0,                        # initialisation, noise and batch seed
    minutes: float = 45.0,                # wall-clock budget of the training loop
    max_steps: Optional[int] = None,      # stop after this many steps; the lr schedule then runs over steps
    device: str = "auto",                 # 'auto', 'cpu' or 'cuda'
    batch: Optional[int] = None,          # images per step; None = 256 on CUDA, 16 on the CPU
    workers: Optional[int] = None,        # render processes; None = every core but one on CUDA, 0 on the CPU
    lr: float = 1e-2,                     # Adam peak learning rate (4x the official 0.0025: a regression, not a GAN)
    lpips_weight: float = 1.0,            # weight of LPIPS(alex) against L1
    architecture: Optional[dict] = None,  # Generator constructor arguments; None = ARCHITECTURE
    log_every: int = 100,                 # steps between progress lines
) -> dict:
    device = pick_device(device)
    batch = batch or (256 if device.type == "cuda" else 16)
    if workers is None:  # on 2 CPU cores the render (~1 ms/face) is cheaper than a second process
        workers = default_workers() if device.type == "cuda" else 0
    architecture = architecture or ARCHITECTURE
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest conv algorithms once
    G = Generator(**architecture).to(device).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    lpips = make_lpips().to(device)
    optimizer = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.9, 0.99), eps=1e-8)
    batches = batch_stream(make_batch(batch), seed, workers, device)

    budget = minutes * 60.0
    start = time.perf_counter()
    step, waiting = 0, 0.0
    window = torch.zeros(2, device=device)  # L1 and LPIPS summed since the last progress line, read only
    window_steps, progress = 0, []          # there, so that the GPU runs ahead of the Python loop

    def log_progress() -> None:
        nonlocal window_steps
        seconds = time.perf_counter() - start
        l1_mean, lpips_mean = (window / window_steps).tolist()
        progress.append((l1_mean, lpips_mean))
        window.zero_()
        window_steps = 0
        print(f"step {step} {seconds:.0f}s {step / seconds:.2f} steps/s {step * batch / seconds:.0f} img/s "
              f"({100 * waiting / seconds:.0f}% waiting for renders) l1 {l1_mean:.4f} lpips {lpips_mean:.4f}", flush=True)

    while (max_steps is None or step < max_steps) and (elapsed := time.perf_counter() - start) < budget:
        wait_start = time.perf_counter()
        pixels, z = next(batches)
        waiting += time.perf_counter() - wait_start
        target = to_network_images(pixels, device)
        fake = G(z.to(device, non_blocking=True), noise_mode="random")
        l1 = (fake - target).abs().mean()
        perceptual = lpips(upsample(fake), upsample(target)).mean()
        loss = l1 + lpips_weight * perceptual
        # Over the steps if given (deterministic), else over the wall time.
        fraction = step / max_steps if max_steps else elapsed / budget
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(lr, step, fraction)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        half_life = min(EMA_KIMG_PER_32 * 1000 * batch / 32, step * batch * EMA_RAMPUP)  # in images
        update_ema(G_ema, G, 0.5 ** (batch / half_life))
        window += torch.stack([l1.detach(), perceptual.detach()])
        window_steps += 1
        if step % log_every == 0 or step == 1:
            log_progress()
    if window_steps:
        log_progress()
    seconds = time.perf_counter() - start
    del batches  # stops the render workers

    out_dir.mkdir(parents=True, exist_ok=True)
    # fp16 tensors halve the file; load_generator computes in fp32. Measure what the rounding costs.
    save_generator(copy.deepcopy(G_ema).cpu().half(), out_dir / GENERATOR_FILE)
    z = torch.randn([REPORT_COUNT, G.z_dim], generator=torch.Generator().manual_seed(SAMPLE_SEED)).to(device)
    with torch.no_grad():
        fp16_error = (load_generator(out_dir / GENERATOR_FILE, device)(z, noise_mode="const")
                      - G_ema(z, noise_mode="const")).abs().max().item()
    summary = {
        "seed": seed, "steps": step, "batch": batch, "images": step * batch, "seconds": round(seconds, 1),
        "steps_per_second": round(step / seconds, 3), "device": device_name(device),
        "first_l1": progress[0][0], "first_lpips": progress[0][1],  # step 1
        "final_l1": progress[-1][0], "final_lpips": progress[-1][1],  # mean over the last progress window
        "fp16_max_abs_diff": fp16_error,
        "architecture": architecture,
    }
    return summary


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


# ----------------------------------------------------------------------------
# Quality report.


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3]."""
    return (images.clamp(-1, 1) * 127.5 + 128).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def decode(G: Generator, params: np.ndarray, device: torch.device) -> torch.Tensor:
    """G(standardise(params)) with constant noise: the decoder's reconstruction of each face."""
    z = torch.from_numpy(standardise(params)).to(device)
    return torch.cat([G(chunk, noise_mode="const") for chunk in z.split(64)])


def save_png(path: Path, image: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        PIL.Image.fromarray(image).save(tmp, format="PNG")


def inversion_lpips(G: Generator, lpips: LPIPS, pixels: np.ndarray, steps: int, device: torch.device) -> list:
    """LPIPS(alex) between each image and G's render of its W-space inversion (PTI's projector)."""
    inverter = WInverter(steps=steps, progress=False)
    distances = []
    for index, target in enumerate(to_network_images(torch.from_numpy(pixels), device)):
        pivot = inverter.invert(G, target[None], seed=index).pivot
        with torch.no_grad():
            distances.append(lpips(G.synthesis(pivot, noise_mode="const"), target[None]).item())
    return distances


def report(
    G: Generator,                          # the generator to judge (eval mode)
    out_dir: Path,                         # where report.json, samples.png and reconstruction.png go
    device: torch.device,                  # where G runs
    invert_count: int = INVERT_COUNT,      # test images per set to invert in W; 0 = skip the inversions
    invert_steps: int = INVERT_STEPS,      # projector steps per inversion
) -> dict:
    """Reconstruction LPIPS(alex) on the in-domain and out-of-domain test sets, of the decoding
    G(standardise(params)) and of W-space inversions; sample and reconstruction grids."""
    lpips = make_lpips().to(device)
    metrics, grid_rows = {}, []
    for kind in ("indomain", "ood"):
        pixels, params = make_testset(kind, REPORT_COUNT)  # OOD: z drops the extras, the target keeps them
        target = to_network_images(torch.from_numpy(pixels), device)
        recon = decode(G, params, device)
        with torch.no_grad():
            metrics[f"recon_lpips_{kind}"] = round(lpips(recon, target).mean().item(), 4)
        grid_rows += [pixels[:8], to_uint8(recon[:8])]
        if invert_count:
            start = time.perf_counter()
            distances = inversion_lpips(G, lpips, pixels[:invert_count], invert_steps, device)
            metrics[f"inversion_lpips_{kind}"] = round(float(np.mean(distances)), 4)
            metrics["inversion_seconds_per_image"] = round((time.perf_counter() - start) / invert_count, 1)
    if invert_count:
        metrics.update(inversion_images=invert_count, inversion_steps=invert_steps, inversion_device=device_name(device))
    z = torch.randn([REPORT_COUNT, G.z_dim], generator=torch.Generator().manual_seed(SAMPLE_SEED)).to(device)
    with torch.no_grad():
        samples = G(z, noise_mode="const")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_png(out_dir / "samples.png", preview_grid(to_uint8(samples)))
    save_png(out_dir / "reconstruction.png", preview_grid(np.concatenate(grid_rows)))
    write_text(out_dir / REPORT_JSON, json.dumps(metrics, indent=1) + "\n")
    return metrics


def rebuild_command(args: argparse.Namespace, summary: dict) -> str:
    """The command that retrains, reports and ships this run."""
    device = summary["device"].split()[0]
    # On a CPU the thread count sets the speed, and so how far a --minutes run gets.
    threads = f"OMP_NUM_THREADS={torch.get_num_threads()} " if device == "cpu" else ""
    steps = f" --steps {args.steps}" if args.steps else ""
    folder = "outputs/synthfaces_generator"  # outputs/ is git-ignored
    return (f"{threads}python -m pti_lab.train.synthfaces_generator --out {folder} --seed {args.seed}{steps} "
            f"--minutes {args.minutes:g} --device {device} --batch {summary['batch']} --invert {args.invert} "
            f"--ship {folder}")


def ship(folder: Path) -> None:
    """Copy folder/generator.pt into the package and record it with folder/training.json and report.json."""
    summary = json.loads((folder / TRAINING_JSON).read_text())
    metrics = json.loads((folder / REPORT_JSON).read_text())
    training = {key: summary[key] for key in ("steps", "batch", "images", "final_l1", "final_lpips", "fp16_max_abs_diff")}
    shipped.record(GENERATOR_FILE, folder / GENERATOR_FILE, command=summary["command"], seed=summary["seed"],
                   minutes=round(summary["seconds"] / 60, 1), device=summary["device"], metrics={**training, **metrics})
    print(f"shipped {folder / GENERATOR_FILE} -> {shipped.WEIGHTS_DIR / GENERATOR_FILE}")


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pti_lab.train.synthfaces_generator", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="train into this folder, then report on the result")
    parser.add_argument("--report", type=Path, help="report on DIR/generator.pt (no training)")
    parser.add_argument("--ship", type=Path, help="record DIR/generator.pt, training.json and report.json in the package")
    parser.add_argument("--seed", type=int, default=0, help="initialisation, noise and batch seed")
    parser.add_argument("--minutes", type=float, default=45.0, help="wall-clock training budget")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps (deterministic schedule)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to train and report")
    parser.add_argument("--batch", type=int, default=None, help="images per step (default: 256 CUDA, 16 CPU)")
    parser.add_argument("--workers", type=int, default=None, help="render processes (default: cores - 1 on CUDA, 0 on CPU)")
    parser.add_argument("--invert", type=int, default=INVERT_COUNT, help="test images per set inverted in W by the report (0: none)")
    args = parser.parse_args(argv)
    keep_freed_memory()
    check_out_report_ship(parser, args)
    device = pick_device(args.device)
    if args.out is not None:
        summary = train(args.out, args.seed, args.minutes, args.steps, args.device, args.batch, args.workers)
        summary["command"] = rebuild_command(args, summary)
        write_text(args.out / TRAINING_JSON, json.dumps(summary, indent=1) + "\n")
        print(json.dumps(summary, indent=1))
    folder = args.out or args.report
    if folder is not None:
        metrics = report(load_generator(folder / GENERATOR_FILE, device), folder, device, args.invert)
        print(json.dumps(metrics, indent=1))
    if args.ship is not None:
        ship(args.ship)
    return 0


if __name__ == "__main__":
    sys.exit(main())
