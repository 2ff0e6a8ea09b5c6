"""Generator speed: forward and forward+backward milliseconds per image.

    python -m pti_lab.bench.generator [--sizes 64 128 256] [--batches 1 8] [--threads 2]
    python -m pti_lab.bench.generator --synthfaces    # the shipped synthfaces generator (target: <= 25 ms)

Architectures as in the official comparison: z = w = 512, 8 mapping layers, channel_base 32768,
channel_max 256 at 64 px and 512 above. Forward+backward is what generator tuning does: the loss
is back-propagated to every synthesis weight and to ws. Each number is the median of timed runs
after warm-up runs.
"""

import argparse
import statistics
import time

import torch

from pti_lab.generators import make_generator
from pti_lab.models import Generator
from pti_lab.runtime import keep_freed_memory


def official_architecture(resolution: int) -> Generator:
    channel_max = 256 if resolution <= 64 else 512
    return Generator(512, 0, 512, resolution, 3, mapping_kwargs=dict(num_layers=8),
                     synthesis_kwargs=dict(channel_base=32768, channel_max=channel_max)).eval()


def time_ms(fn, warmup: int, reps: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench(G: Generator, batch: int, device: torch.device, warmup: int, reps: int) -> tuple[float, float]:
    torch.manual_seed(0)
    G = G.to(device)
    ws = G.mapping(torch.randn(batch, G.z_dim, device=device), None).detach()

    def forward():
        with torch.no_grad():
            G.synthesis(ws, noise_mode="const")

    def forward_backward():
        G.requires_grad_(True)
        ws_grad = ws.clone().requires_grad_(True)
        G.synthesis(ws_grad, noise_mode="const").square().mean().backward()
        G.zero_grad(set_to_none=True)

    return (time_ms(forward, warmup, reps, device) / batch,
            time_ms(forward_backward, warmup, reps, device) / batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--reps", type=int, default=5, help="timed runs per number")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--synthfaces", action="store_true", help="time the shipped synthfaces generator instead")
    parser.add_argument("--glibc-trim", action="store_true", help="keep glibc's default trimming (no keep_freed_memory)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    kept = not args.glibc_trim and keep_freed_memory()

    print(f"torch {torch.__version__}, device {device}, {args.threads} threads, freed memory kept: {kept}; "
          f"ms per image (median of {args.reps})")
    if args.synthfaces:
        G = make_generator(None).float().eval()
        print(f"synthfaces generator: {G.img_resolution} px, {sum(p.numel() for p in G.parameters()):,} parameters")
        print(f"{'batch':>5} {'forward':>9} {'fwd+bwd':>9}")
        for batch in args.batches:
            fwd, fwd_bwd = bench(G, batch, device, warmup=3, reps=args.reps)
            print(f"{batch:>5} {fwd:>9.1f} {fwd_bwd:>9.1f}", flush=True)
        return
    print(f"{'size':>5} {'batch':>5} {'channel_max':>11} {'forward':>9} {'fwd+bwd':>9}")
    for resolution in args.sizes:
        for batch in args.batches:
            reps = args.reps if resolution * batch <= 1024 else max(2, args.reps // 2)
            fwd, fwd_bwd = bench(official_architecture(resolution), batch, device, warmup=2, reps=reps)
            channel_max = 256 if resolution <= 64 else 512
            print(f"{resolution:>5} {batch:>5} {channel_max:>11} {fwd:>9.1f} {fwd_bwd:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
