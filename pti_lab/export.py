"""Export an image's tuned generator in a format other tools load.

    python -m pti_lab.export RUN/images/NAME --format rosinality --out tuned.pt
    python -m pti_lab.export RUN/images/NAME --format official --out tuned.pkl    # base from an official pickle
    python -m pti_lab.export RUN/images/NAME --format pti-lab --out tuned_full.pt

  rosinality  {'g_ema', 'latent_avg'} as rosinality/stylegan2-pytorch's convert_weight.py writes it: loads
              in rosinality's Generator and in e4e / pSp code (z_dim must equal w_dim, as there)
  official    the run's own base pickle (stylegan2-ada-pytorch / stylegan3 repo) with the tuned weights
              as G_ema; its G, D and embedded network source are the file's, unchanged: NVIDIA's
              legacy.load_network_pkl and the official PTI code load it
  pti-lab     a full generator file (save_generator), no base needed to read it

Each export is read back with load_generator and must render the tuned reconstruction (the pivot
through the tuned generator, noise const) within 1e-4; otherwise nothing is left at --out.
"""

import argparse
import sys
import zipfile
from pathlib import Path
from typing import Optional

import torch

from pti_lab.errors import PTILabError
from pti_lab.finished_run import TunedImage, open_image_dir
from pti_lab.models.checkpoint_writers import rosinality_incompatibility, save_official, save_rosinality
from pti_lab.models.checkpoints import load_generator, save_generator
from pti_lab.runtime import keep_freed_memory

FORMATS = ("rosinality", "official", "pti-lab")
ROUND_TRIP_TOLERANCE = 1e-4  # max |image difference| of the reloaded export, images in [-1, 1]


def is_official_pickle(path: Optional[str]) -> bool:
    if not path or not Path(path).is_file() or zipfile.is_zipfile(path):
        return False
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"


def export(image: TunedImage, fmt: str, out: Path) -> float:
    """Write image.tuned as `fmt` at `out`; return the round-trip error (max |difference| of the reconstruction)."""
    if fmt == "rosinality":
        why = rosinality_incompatibility(image.tuned)
        if why:
            raise PTILabError(f"{image.dir}: --format rosinality: {why}; use --format pti-lab (or official, for a "
                              f"run whose base came from an official network pickle)")
        save_rosinality(image.tuned, out)
    elif fmt == "official":
        if not is_official_pickle(image.generator_path):
            used = image.generator_path or "the shipped synthfaces generator or fresh weights"
            raise PTILabError(f"{image.dir}: --format official writes the run's base network pickle back with the "
                              f"tuned weights, and this run's base is not one ({used}); use --format rosinality "
                              f"or pti-lab")
        save_official(image.tuned, image.generator_path, out)
    elif fmt == "pti-lab":
        save_generator(image.tuned, out)
    else:
        raise PTILabError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    reloaded = load_generator(out, image.pivot.device)
    with torch.no_grad():
        expected = image.render(image.pivot)
        got = reloaded.synthesis(image.pivot, noise_mode="const")
    error = (got - expected).abs().max().item()
    if not error <= ROUND_TRIP_TOLERANCE:
        out.unlink(missing_ok=True)
        raise PTILabError(f"{out}: the written {fmt} file renders the tuned reconstruction {error:.2g} away "
                          f"(tolerance {ROUND_TRIP_TOLERANCE}); removed")
    return error


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pti_lab.export", description=__doc__.split("\n")[0])
    parser.add_argument("image_dir", type=Path, help="RUN_DIR/images/NAME of a finished run")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, type=Path, help="the file to write")
    parser.add_argument("--generator", default=None,
                        help="the run's base generator, when it is no longer where the run found it")
    args = parser.parse_args(argv)
    keep_freed_memory()
    try:
        image = open_image_dir(args.image_dir, args.generator)
        error = export(image, args.format, args.out)
    except PTILabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({args.format}); read back with load_generator it renders the tuned reconstruction "
          f"of {image.name} within {error:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
