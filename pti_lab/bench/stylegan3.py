"""StyleGAN3 generator steps against the official NVlabs/stylegan3 code, side by side in one run.

    python -m pti_lab.bench.stylegan3 --official DIR [--config T|R] [--resolution 256]
        [--channel-base 8192] [--channel-max 128] [--reps 3] [--memory-sizes 256 1024]

DIR is a local checkout of NVlabs/stylegan3 (its `training`, `torch_utils` and `dnnlib`); nothing of
it is part of pti-lab. On a CPU the official code runs its reference ops (upfirdn2d, bias_act and
filtered_lrelu in PyTorch), the only ones it has there. One official generator is built with seeded
random weights and ours loads its state dict, so both compute the same images (the largest
difference is printed).

Per step, one image, float32, the loss a stand-in (mean square of the image) since the perceptual
loss is the same for both:
  inversion step  forward and backward to ws, weights frozen (as the W projector; ours with unfused
                  modulation, as our projector calls it);
  tuning step     forward, backward to every synthesis weight, and an Adam step.
The two implementations take turns, step by step, so that other load on a shared machine slows both
alike; each time is the median of --reps steps after one warm-up step. Printed: milliseconds per
step, and ours vs official as a speed ratio (official time / ours: above 1 means ours is faster).

Memory per image: what autograd keeps for the backward pass of a one-image tuning step (the
activations, which dominate on a CPU; pti_lab/batching/memory.py's measure), at each of --memory-sizes px
with the same channel settings; the official code's too at --official-memory-sizes (its reference ops
keep several times more: at 1024 px more than most hosts have).
"""

import argparse
import importlib
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Callable

import torch

from pti_lab.batching.memory import peak_bytes
from pti_lab.models.checkpoints import new_generator
from pti_lab.runtime import keep_freed_memory
from pti_lab.batching.stacked import adam

MiB = 2 ** 20


def import_official(root: Path) -> types.ModuleType:
    """The official networks_stylegan3 module from a checkout (one line if it is not one)."""
    if not (root / "training" / "networks_stylegan3.py").is_file():
        raise SystemExit(f"--official {root}: not a NVlabs/stylegan3 checkout (no training/networks_stylegan3.py)")
    try:
        import pkg_resources  # noqa: F401  (the official conv2d_gradfix imports it; newer setuptools lack it)
    except ImportError:
        from packaging.version import parse
        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)
    sys.path.insert(0, str(root))
    return importlib.import_module("training.networks_stylegan3")


def official_kwargs(config: str, resolution: int, channel_base: int, channel_max: int) -> dict:
    """Generator kwargs as the official train.py sets them for --cfg stylegan3-t / stylegan3-r."""
    kwargs = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), channel_base=channel_base, channel_max=channel_max,
                  magnitude_ema_beta=0.5 ** (32 / 20e3))
    if config == "R":
        kwargs.update(conv_kernel=1, channel_base=channel_base * 2, channel_max=channel_max * 2, use_radial_filters=True)
    return kwargs


def pair(networks: types.ModuleType, kwargs: dict) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(official, ours) with the same seeded random weights."""
    torch.manual_seed(0)
    official = networks.Generator(**kwargs).eval().requires_grad_(False)
    options = dict(kwargs)
    core = {key: options.pop(key) for key in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")}
    ours = new_generator(dict(core, mapping_kwargs=options.pop("mapping_kwargs"), synthesis_kwargs=options,
                              network="stylegan3")).eval().requires_grad_(False)
    ours.load_state_dict(official.state_dict())
    return official, ours


def inversion_step(G: torch.nn.Module, ws: torch.Tensor, options: dict) -> Callable[[], None]:
    def step() -> None:
        latent = ws.detach().clone().requires_grad_(True)
        G.synthesis(latent, noise_mode="const", **options).square().mean().backward()
    return step


def tuning_step(G: torch.nn.Module, ws: torch.Tensor, options: dict) -> Callable[[], None]:
    params = list(G.synthesis.parameters())
    optimizer = adam([{"params": params, "lr": 3e-4}])

    def step() -> None:
        for p in params:
            p.requires_grad_(True)
        optimizer.zero_grad(set_to_none=True)
        G.synthesis(ws, noise_mode="const", **options).square().mean().backward()
        optimizer.step()
    return step


def side_by_side(steps: dict[str, Callable[[], None]], reps: int) -> dict[str, float]:
    """Median milliseconds of each step, the steps taking turns."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for rep in range(reps + 1):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if rep:  # the first round warms up
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def memory_per_image(G: torch.nn.Module, options: dict) -> float:
    """MiB autograd keeps per image for a tuning step's backward pass."""
    for p in G.synthesis.parameters():
        p.requires_grad_(True)

    def forward() -> None:
        ws = G.mapping(torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(1)), None).detach()
        G.synthesis(ws, noise_mode="const", **options)
    kept = peak_bytes(forward, torch.device("cpu"))
    G.requires_grad_(False)
    return kept / MiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", type=Path, required=True, help="local NVlabs/stylegan3 checkout")
    parser.add_argument("--config", choices=["T", "R"], default="T")
    parser.add_argument("--resolution", type=int, default=256, help="px of the timed steps")
    parser.add_argument("--channel-base", type=int, default=8192, help="official 32768 (R: doubled, as official)")
    parser.add_argument("--channel-max", type=int, default=128, help="official 512 (R: doubled, as official)")
    parser.add_argument("--reps", type=int, default=3, help="timed steps of each kind, after one warm-up")
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[256, 1024], help="px of the memory rows")
    parser.add_argument("--official-memory-sizes", type=int, nargs="*", default=[256],
                        help="px at which the official code's memory is measured too")
    args = parser.parse_args()
    keep_freed_memory()

    networks = import_official(args.official)
    official, ours = pair(networks, official_kwargs(args.config, args.resolution, args.channel_base, args.channel_max))
    ws = official.mapping(torch.randn([1, 512], generator=torch.Generator().manual_seed(1)), None).detach()
    with torch.no_grad():
        error = (official.synthesis(ws, noise_mode="const", force_fp32=True) - ours.synthesis(ws)).abs().max().item()
    print(f"StyleGAN3-{args.config} {args.resolution} px, channel_base {args.channel_base}"
          f"{' x2' if args.config == 'R' else ''}, channel_max {args.channel_max}{' x2' if args.config == 'R' else ''}, "
          f"{sum(p.numel() for p in ours.synthesis.parameters()) / 1e6:.2f} M synthesis parameters, "
          f"{torch.get_num_threads()} thread(s); max |ours - official| = {error:.2e}")

    official_options, inversion_options = {"force_fp32": True}, {"fused_modconv": False}
    times = side_by_side({
        "official inversion": inversion_step(official, ws, official_options),
        "ours inversion": inversion_step(ours, ws, inversion_options),
        "official tuning": tuning_step(official, ws, official_options),
        "ours tuning": tuning_step(ours, ws, {}),
    }, args.reps)
    print(f"{'step':<10} {'official ms':>12} {'ours ms':>10} {'ratio':>7}")
    for kind in ("inversion", "tuning"):
        theirs, mine = times[f"official {kind}"], times[f"ours {kind}"]
        print(f"{kind:<10} {theirs:>12.0f} {mine:>10.0f} {theirs / mine:>6.2f}x")

    print(f"{'memory':<10} {'official MiB/img':>16} {'ours MiB/img':>13}")
    for size in args.memory_sizes:
        official, ours = pair(networks, official_kwargs(args.config, size, args.channel_base, args.channel_max))
        theirs = f"{memory_per_image(official, official_options):.0f}" if size in args.official_memory_sizes else "-"
        print(f"{f'{size} px':<10} {theirs:>16} {memory_per_image(ours, {}):>13.0f}")


if __name__ == "__main__":
    main()
