"""Tuned generators stored compactly: only what tuning changed, as a difference from the base.

PTI tunes one generator per image. A full copy per image is as big as the base checkpoint; a
delta holds only the tensors that differ (`tuned - base`), in fp16 when that leaves the tuned
generator's images unchanged (checked by rendering), and names its base by a fingerprint of the
base's weights, so it is never applied to the wrong generator.

    manifest = save_tuned(tuned, base, "images/0001/generator_delta.pt")
    tuned = load_tuned("images/0001/generator_delta.pt", base)
"""

import os
import pickle
import zipfile
from pathlib import Path
from typing import Optional

import torch

from pti_lab.atomic import save_torch
from pti_lab.errors import CheckpointError
from pti_lab.models.checkpoints import build_generator
from pti_lab.models.fingerprint import generator_fingerprint
from pti_lab.models.stylegan2 import Generator
from pti_lab.safe_pickle import load_weights_only

DELTA_FORMAT = "pti-lab/generator-delta"
DELTA_FORMAT_VERSION = 1


def render_probes(G: Generator, count: int, seed: int, latents: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Images of `count` seeded z (and of `latents` ws, when given), noise 'const', on the CPU: [N, C, R, R]."""
    device = next(G.parameters()).device
    z = torch.randn([count, G.z_dim], generator=torch.Generator().manual_seed(seed)).to(device)
    with torch.no_grad():
        ws = G.mapping(z, None, skip_w_avg_update=True)
        if latents is not None:
            ws = torch.cat([ws, latents.to(device, torch.float32).expand(-1, G.num_ws, -1)])
        return G.synthesis(ws, noise_mode="const").cpu()


def apply_delta(base: Generator, delta: dict[str, torch.Tensor], source: str) -> Generator:
    """A new generator with base's weights plus `delta` (checked name by name); base is untouched."""
    tensors = {name: t.detach().to("cpu", torch.float32) for name, t in base.state_dict().items()}
    for name, diff in delta.items():
        if name not in tensors:
            raise CheckpointError(f"{source}: delta for '{name}', which the base generator does not have")
        if not isinstance(diff, torch.Tensor) or tuple(diff.shape) != tuple(tensors[name].shape):
            shape = list(diff.shape) if isinstance(diff, torch.Tensor) else type(diff).__name__
            raise CheckpointError(f"{source}: delta for '{name}' has shape {shape}, "
                                  f"the base has {list(tensors[name].shape)}")
        tensors[name] = tensors[name] + diff.to(torch.float32)
    device = next(base.parameters()).device
    return build_generator(base.init_kwargs, tensors, source).to(device)


def save_tuned(
    tuned: Generator,                       # the tuned generator
    base: Generator,                        # the generator it was tuned from
    path: str | os.PathLike,                # output file (written atomically)
    latents: Optional[torch.Tensor] = None, # [N, num_ws or 1, w_dim] ws to check besides seeded z (the pivots)
    tolerance: float = 2e-3,                # max |image difference| fp16 may cause: 1e-3 of the [-1, 1] range
    probes: int = 2,                        # seeded z rendered to check the fp16 delta
    seed: int = 0,                          # seed of those z
    base_sha256: Optional[str] = None,      # generator_fingerprint(base), if the caller has it already
) -> dict:
    """Write the tensors where tuned differs from base as `tuned - base`; return a manifest to log."""
    path = Path(path)
    if tuned.init_kwargs != base.init_kwargs:
        raise CheckpointError(f"{path}: tuned and base generators have different architectures")
    base_state, tuned_state = base.state_dict(), tuned.state_dict()
    delta = {name: (tuned_state[name].detach().float() - base_state[name].detach().float()).cpu()
             for name in tuned_state if not torch.equal(tuned_state[name], base_state[name])}

    # fp16 halves the file; keep it only if the images it gives match the tuned generator's.
    reference = render_probes(tuned, probes, seed, latents)
    dtype, error = torch.float32, 0.0
    half = {name: diff.half() for name, diff in delta.items()}
    if all(torch.isfinite(diff).all() for diff in half.values()):
        rebuilt = apply_delta(base, half, str(path))
        error = (render_probes(rebuilt, probes, seed, latents) - reference).abs().max().item()
        if error <= tolerance:
            dtype, delta = torch.float16, half
    if dtype == torch.float32:
        rebuilt = apply_delta(base, delta, str(path))
        error = (render_probes(rebuilt, probes, seed, latents) - reference).abs().max().item()

    base_sha256 = base_sha256 or generator_fingerprint(base)
    payload = {"format": DELTA_FORMAT, "version": DELTA_FORMAT_VERSION, "base_sha256": base_sha256,
               "init_kwargs": base.init_kwargs, "dtype": str(dtype).removeprefix("torch."), "delta": delta}
    save_torch(payload, path)
    return {"path": str(path), "base_sha256": base_sha256, "bytes": path.stat().st_size,
            "dtype": payload["dtype"], "tensors": len(delta), "tensors_total": len(tuned_state),
            "max_image_error": error}


def load_tuned(path: str | os.PathLike, base: Generator) -> Generator:
    """The tuned generator stored at `path` by save_tuned, rebuilt on `base` (which is not modified);
    eval mode, frozen, on base's device."""
    source = str(path)
    try:
        payload = load_weights_only(path)
    except FileNotFoundError:
        raise CheckpointError(f"{source}: no such file") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{source}: truncated or corrupt generator delta ({first})") from None
    if not isinstance(payload, dict) or payload.get("format") != DELTA_FORMAT:
        raise CheckpointError(f"{source}: not a pti-lab generator delta")
    if payload.get("version") != DELTA_FORMAT_VERSION:
        raise CheckpointError(f"{source}: generator delta version {payload.get('version')} is not supported "
                              f"(this pti-lab reads version {DELTA_FORMAT_VERSION})")
    given = generator_fingerprint(base)
    expected = str(payload.get("base_sha256"))
    if expected != given:
        raise CheckpointError(f"{source}: tuned against base {expected[:12]}, given {given[:12]}")
    if not isinstance(payload.get("delta"), dict):
        raise CheckpointError(f"{source}: generator delta holds no tensors")
    return apply_delta(base, payload["delta"], source)
