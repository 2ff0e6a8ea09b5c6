"""Inversions shared between runs: the same generator, image, inverter settings and seed give the
same pivot, so experiments that invert the same images (the paper's tables and figures, a sweep over
tuning settings) invert each image once.

Entries live in <cache_dir>/pivots/<key>.pt, key = sha256 of the generator's fingerprint, the
inverter's settings, the seed, the device type and the target's pixels. An entry holds the pivot
and what the inversion cost (steps, seconds), so a reused inversion reports its real cost.
"""

import hashlib
import logging
from pathlib import Path
from typing import Optional

import torch

from pti_lab.atomic import save_torch
from pti_lab.inversion.inverter import Inversion
from pti_lab.safe_pickle import load_weights_only

log = logging.getLogger(__name__)

FORMAT = "pti-lab/pivot-cache-v1"


class PivotCache:
    def __init__(
        self,
        directory: Path,          # where entries are kept (e.g. <cache_dir>/pivots)
        generator_sha256: str,    # fingerprint of the generator inverted into
        settings: str,            # the inverter's settings, as canonical text (class and arguments)
        seed: int,                # the inversion seed
        device: str,              # device type: CPU and CUDA pivots differ in the last bits
    ):
        self.directory = Path(directory)
        self.prefix = f"{FORMAT}\n{generator_sha256}\n{settings}\nseed={seed}\ndevice={device}\n".encode()

    def path(self, target: torch.Tensor) -> Path:
        digest = hashlib.sha256(self.prefix)
        pixels = target.detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{list(pixels.shape)}".encode())
        digest.update(pixels.numpy().tobytes())
        return self.directory / f"{digest.hexdigest()}.pt"

    def get(self, target: torch.Tensor) -> Optional[Inversion]:
        """The stored inversion of `target`, or None (also for an unreadable entry, which is redone)."""
        path = self.path(target)
        if not path.is_file():
            return None
        try:
            entry = load_weights_only(path, map_location=None)
            return Inversion(pivot=entry["pivot"], steps=int(entry["steps"]), seconds=float(entry["seconds"]))
        except Exception as exc:  # a damaged entry costs one inversion, never the run
            log.warning("%s: unreadable pivot cache entry, inverting again (%s)", path, exc)
            return None

    def put(self, target: torch.Tensor, inversion: Inversion) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        save_torch({"pivot": inversion.pivot.detach().cpu(), "steps": inversion.steps,
                    "seconds": inversion.seconds}, self.path(target))
