"""LPIPS speed: milliseconds per image for forward and forward+backward.

    python -m pti_lab.bench.lpips [--device cpu|cuda] [--threads 2]

Forward is the metric (no autograd); forward+backward is the loss (gradient to the first input,
as in inversion and tuning). Each case warms up, then repeats for about `--seconds`; the
median call is reported.
"""

import argparse
import statistics
import time

import torch

from pti_lab.models.lpips import LPIPS
from pti_lab.runtime import keep_freed_memory


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_per_image(step, batch: int, device: torch.device, seconds: float) -> float:
    """Median milliseconds per image of `step()`: warm up (one call, more until `seconds` / 4),
    then time single calls for about `seconds` (at least one)."""
    def timed_call() -> float:
        start = time.perf_counter()
        step()
        sync(device)
        return time.perf_counter() - start

    warm_up = [timed_call()]
    while sum(warm_up) < seconds / 4:
        warm_up.append(timed_call())
    durations = [timed_call()]
    while sum(durations) < seconds:
        durations.append(timed_call())
    return statistics.median(durations) / batch * 1000


def main():
    parser = argparse.ArgumentParser(description="LPIPS forward and forward+backward ms per image.")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per case, after one warm-up")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256], help="image sizes (px)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="batch sizes")
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'net':5} {'size':>5} {'batch':>5} {'forward ms/img':>15} {'fwd+bwd ms/img':>15}")
    generator = torch.Generator().manual_seed(0)
    for net in ("alex", "vgg"):
        model = LPIPS(net).to(device)
        for size in args.sizes:
            for batch in args.batches:
                x = (torch.rand(batch, 3, size, size, generator=generator) * 2 - 1).to(device)
                y = (torch.rand(batch, 3, size, size, generator=generator) * 2 - 1).to(device)

                def forward():
                    with torch.no_grad():
                        model(x, y)

                def forward_backward():
                    x_grad = x.clone().requires_grad_(True)
                    model(x_grad, y).sum().backward()

                fwd = time_per_image(forward, batch, device, args.seconds)
                fwd_bwd = time_per_image(forward_backward, batch, device, args.seconds)
                print(f"{net:5} {size:5d} {batch:5d} {fwd:15.2f} {fwd_bwd:15.2f}", flush=True)


if __name__ == "__main__":
    main()
