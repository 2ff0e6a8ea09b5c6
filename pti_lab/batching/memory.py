"""The memory a batch of K images needs, measured before any image is processed, so that a K that
cannot fit fails at once with one line instead of running out of memory halfway through a run.

One optimisation step at K = 1 and at K = 2 gives a fixed part and a part per image; the batch fits
when fixed + K * per_image is within HEADROOM of the memory available now. On CUDA the step's
memory is the allocator's peak; on a CPU it is what autograd keeps for the backward pass (the
activations, which dominate) plus what the caller adds per image (e.g. the optimiser's copies of
tuned weights).
"""

import logging
from pathlib import Path
from typing import Callable, Optional

import torch

from pti_lab.config import ConfigError
from pti_lab.models.stylegan2 import Generator

log = logging.getLogger(__name__)

HEADROOM = 0.9  # plan with this share of the memory available at the start
GiB = 2 ** 30


def proc_bytes(path: str, field: str) -> Optional[int]:
    """A size field of a /proc file ("MemAvailable" of /proc/meminfo, "VmHWM" of /proc/self/status) in
    bytes; None where there is none."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024  # the kernel writes kB
    except OSError:
        pass
    return None


def available_bytes(device: torch.device) -> Optional[int]:
    """Memory free for new tensors now: the GPU's free memory, or the host's MemAvailable (None: unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return proc_bytes("/proc/meminfo", "MemAvailable")


def peak_bytes(run: Callable[[], None], device: torch.device) -> int:
    """Memory `run` adds at its peak (see the module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sum(saved.values())


class BatchMemory:
    """fixed + K * per_image bytes for a batch of K, measured with `step(K)` at K = 1 and 2."""

    def __init__(
        self,
        step: Callable[[int], None],  # one optimisation step of a batch of K images
        device: torch.device,         # where the batch runs
        host_bytes_per_image: int = 0,  # CPU only: memory per image that autograd does not hold
    ):
        one, two = (peak_bytes(lambda: step(K), device) + (host_bytes_per_image * K if device.type == "cpu" else 0)
                    for K in (1, 2))
        self.per_image = max(two - one, 1)
        self.fixed = max(one - self.per_image, 0)
        self.device = device
        self.available = available_bytes(device)

    def needed(self, K: int) -> int:
        return self.fixed + K * self.per_image

    def largest(self) -> Optional[int]:
        """The largest K that fits (None: the available memory is unknown)."""
        if self.available is None:
            return None
        return max(int((HEADROOM * self.available - self.fixed) // self.per_image), 0)

    def check(self, K: int, what: str) -> None:
        """Raise ConfigError naming `what` (e.g. 'batch_size=16') unless K images fit."""
        largest = self.largest()
        if largest is not None and K > largest:
            raise ConfigError(f"{what} does not fit in {self.device} memory: it needs about "
                              f"{self.needed(K) / GiB:.1f} GiB ({self.per_image / GiB:.2f} GiB per image), "
                              f"{HEADROOM * self.available / GiB:.1f} GiB can be used; the largest batch that "
                              f"fits is {largest}")

    def describe(self) -> str:
        text = f"about {self.per_image / GiB:.3f} GiB per image + {self.fixed / GiB:.3f} GiB"
        if self.available is None:
            return text + "; available memory unknown"
        return text + f"; {self.available / GiB:.1f} GiB available: the largest K that fits is {self.largest()}"


def check_batch_memory(
    G: Generator,                  # the base generator
    inverter,                      # the run's Inverter (pti_lab/stages.py)
    tuner,                         # the run's Tuner; None: an inversion-only method
    perceptual: torch.nn.Module,   # LPIPS of the tuning loss
    regularizer,                   # the tuning's locality regulariser, or None
    batch_size: int,               # the K to check
    seed: int,                     # the run's seed
) -> None:
    """Before the first batch: stop the run with a ConfigError (one line) when batch_size images cannot be
    inverted and tuned together in the memory available, rather than run out of it halfway. Each stage's
    `one_step()` copy runs a batch of G's mean image at K = 1 and 2."""
    device = next(G.parameters()).device
    pivot = G.mapping.w_avg.reshape(1, 1, -1).expand(1, G.num_ws, -1)  # [1, num_ws, w_dim]
    with torch.no_grad():
        target = G.synthesis(pivot, noise_mode="const").clamp(-1, 1)  # [1, C, R, R]
    inverting = inverter.one_step()
    tuning = tuner.one_step() if tuner is not None else None

    def step(K: int) -> None:
        inverting.invert_batch(G, [target] * K, seed=seed)
        if tuning is not None:
            tuning.tune_batch(G, [target] * K, [pivot] * K, perceptual, regularizer)
    # Per image on the host besides autograd's tensors: the tuned copy, its gradient and two Adam moments.
    tuned_bytes = 4 * sum(p.numel() * p.element_size() for p in G.synthesis.parameters()) if tuning else 0
    memory = BatchMemory(step, device, tuned_bytes)
    log.info("batch_size=%d: memory %s", batch_size, memory.describe())
    memory.check(batch_size, f"batch_size={batch_size}")
