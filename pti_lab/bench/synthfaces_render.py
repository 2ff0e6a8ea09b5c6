"""synthfaces renderer speed: renders per second by batch size and image size.

    python -m pti_lab.bench.synthfaces_render [--seconds 2] [--batches 1 64 256] [--sizes 64 128]

Parameters are sampled once per case (half in-domain, half with extras, so every part of the
renderer runs); only `render` is timed. Each case warms up with one call, then repeats for about
`--seconds`; the median call is reported. numpy runs on one core, so this is the single-process
rate; data loaders get more by rendering in several worker processes.
"""

import argparse
import os
import statistics
import time

import numpy as np

from pti_lab.synthfaces.params import sample_params
from pti_lab.synthfaces.render import render


def renders_per_second(params: np.ndarray, size: int, seconds: float) -> float:
    render(params, size)
    durations = []
    while not durations or sum(durations) < seconds:
        start = time.perf_counter()
        render(params, size)
        durations.append(time.perf_counter() - start)
    return len(params) / statistics.median(durations)


def main():
    parser = argparse.ArgumentParser(description="synthfaces renders per second.")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per case, after one warm-up call")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256], help="batch sizes")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="image sizes (px)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled parameters")
    args = parser.parse_args()
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs visible, one process")
    print(f"{'size':>5} {'batch':>6} {'extras':>8} {'renders/s':>10}")
    for size in args.sizes:
        for batch in args.batches:
            for extras in (False, "random"):
                params = sample_params(batch, args.seed, extras=extras)
                rate = renders_per_second(params, size, args.seconds)
                print(f"{size:5d} {batch:6d} {str(bool(extras)):>8} {rate:10.0f}", flush=True)


if __name__ == "__main__":
    main()
