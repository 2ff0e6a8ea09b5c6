"""Seeded synthfaces test sets: in-domain and out-of-domain faces with their true parameters.

    python -m pti_lab.synthfaces.testsets [OUT_DIR] [--count 32] [--size 64] [--seed 9000] [--preview PNG]

writes OUT_DIR/indomain/ and OUT_DIR/ood/, each holding 000.png, 001.png, ..., params.npy (float32
[count, DIM], the exact parameters) and params.json (layout version, seed, field names, and per
image its file, hair style, extras switched on and named parameter values). Every file is written
atomically and params.json last, so a folder with params.json is complete; numbered PNGs left
over from an earlier, larger set are removed. The same arguments give byte-identical files.
OUT_DIR defaults to $PTI_LAB_CACHE/synthfaces/testsets (~/.cache/pti_lab/...). --preview also
writes one PNG grid: the in-domain set above the out-of-domain set, 8 faces a row.

Data loaders can skip the files: `make_testset('ood')` returns the images and parameters directly.
The in-domain set uses seed SEED and the out-of-domain set SEED + 1; training data must be sampled
with other seeds so the in-domain set stays held out.
"""

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import PIL.Image

from pti_lab.atomic import atomic_path, write_text
from pti_lab.errors import BadInputError
from pti_lab.synthfaces.params import LAYOUT_VERSION, NAMES, extras_on, hair_style_of, sample_params
from pti_lab.synthfaces.render import render
from pti_lab.weights import cache_dir

KINDS = ("indomain", "ood")
DEFAULT_SEED = 9000  # in-domain set; the out-of-domain set uses DEFAULT_SEED + 1
PARAMS_JSON = "params.json"
PARAMS_NPY = "params.npy"
IMAGE_NAME = re.compile(r"^\d{3,}\.png$")


def default_dir() -> Path:
    return cache_dir() / "synthfaces" / "testsets"


def kind_seed(kind: str, seed: int) -> int:
    """The sampler seed of one set: `seed` for in-domain, `seed + 1` for out-of-domain."""
    if kind not in KINDS:
        raise BadInputError(f"test set kind '{kind}' is not one of {', '.join(KINDS)}")
    return seed + KINDS.index(kind)


def make_testset(kind: str = "indomain", count: int = 32, seed: int = DEFAULT_SEED, size: int = 64):
    """(uint8 images [count, size, size, 3], float32 params [count, DIM]) of one seeded test set.
    'indomain' faces have no extras; every 'ood' face has at least one."""
    if count < 1:
        raise BadInputError(f"test set count must be >= 1, got {count}")
    params = sample_params(count, kind_seed(kind, seed), extras=False if kind == "indomain" else "random")
    return render(params, size), params


def write_testset(out_dir: Path, kind: str, count: int = 32, seed: int = DEFAULT_SEED, size: int = 64) -> Path:
    """Write one test set into out_dir/kind; returns that folder."""
    images, params = make_testset(kind, count, seed, size)
    folder = Path(out_dir) / kind
    folder.mkdir(parents=True, exist_ok=True)
    files = [f"{i:03d}.png" for i in range(count)]
    for name, image in zip(files, images):
        with atomic_path(folder / name) as tmp:
            PIL.Image.fromarray(image).save(tmp, format="PNG")
    for stale in folder.iterdir():
        if IMAGE_NAME.match(stale.name) and stale.name not in files:
            stale.unlink()
    with atomic_path(folder / PARAMS_NPY) as tmp:
        with open(tmp, "wb") as handle:  # a file object: np.save would append '.npy' to a path
            np.save(handle, params)
    records = [
        {"file": name, "hair_style": style, "extras": extras,
         "params": {field: float(f"{value:.9g}") for field, value in zip(NAMES, row)}}  # 9 digits: exact float32
        for name, style, extras, row in zip(files, hair_style_of(params), extras_on(params), params)
    ]
    header = {"layout_version": LAYOUT_VERSION, "kind": kind, "seed": kind_seed(kind, seed), "size": size,
              "count": count, "fields": list(NAMES), "images": records}
    write_text(folder / PARAMS_JSON, json.dumps(header, indent=1) + "\n")
    return folder


def preview_grid(images: np.ndarray, columns: int = 8) -> np.ndarray:
    """uint8 [N, S, S, 3] -> one uint8 image of `columns` faces a row (the last row padded with black)."""
    rows = -(-len(images) // columns)
    padded = np.zeros((rows * columns,) + images.shape[1:], dtype=np.uint8)
    padded[:len(images)] = images
    size = images.shape[1]
    return padded.reshape(rows, columns, size, size, 3).transpose(0, 2, 1, 3, 4).reshape(rows * size, columns * size, 3)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pti_lab.synthfaces.testsets", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path, nargs="?", default=None, help=f"output folder (default: {default_dir()})")
    parser.add_argument("--count", type=int, default=32, help="images per set")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (64 or 128)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="in-domain seed; out-of-domain uses seed + 1")
    parser.add_argument("--preview", type=Path, default=None, help="also write a PNG grid of both sets here")
    args = parser.parse_args(argv)
    out_dir = args.out_dir if args.out_dir is not None else default_dir()
    try:
        for kind in KINDS:
            folder = write_testset(out_dir, kind, args.count, args.seed, args.size)
            print(f"{kind}: {args.count} images + {PARAMS_NPY}, {PARAMS_JSON} -> {folder}")
        if args.preview is not None:
            images = np.concatenate([make_testset(kind, args.count, args.seed, args.size)[0] for kind in KINDS])
            with atomic_path(args.preview) as tmp:
                PIL.Image.fromarray(preview_grid(images)).save(tmp, format="PNG")
            print(f"preview -> {args.preview}")
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
