"""Datasets of target images: the seeded synthfaces test sets, a folder of images, one image.

Every dataset yields `Sample`s lazily, in a stable sorted order, as float32 [1, 3, R, R] tensors in
[-1, 1] at the resolution the generator asks for. `shard=I shards=N` keeps the I-th of N disjoint
parts (after `limit`), which together hold every image once; `split` says how the items are dealt:
- `hash` (the default): an item's shard is the sha256 of its key (a synthfaces face's name, a file's
  path relative to the folder) modulo N, so it depends on that item alone: adding or removing other
  files never moves an image to another shard (clusters, where files come and go), but the shards
  are only roughly even (8 images in 2 shards may split 6 and 2);
- `balanced`: the items, in the data set's sorted order, are dealt round-robin (item k to shard
  k mod N), so each shard holds floor or ceil(items / N): for P processes on one machine. An item's
  shard depends on its position: a larger `limit` adds items without moving any, but a file added
  to a folder moves every file sorted after it.
Files of any size and format are centre-cropped to a square and Lanczos-resized, with one logged
warning per pass; any mode is read as RGB (pti_lab.imaging.to_rgb: CMYK, 16-bit, palette,
transparency, EXIF rotation). A file that cannot be read (corrupt, truncated, empty, not an image,
a decompression bomb) becomes a Sample with `image=None` and a one-line `error`, so one bad file
never stops a run; only a missing or empty folder raises (BadInputError): nothing to run on.
"""

import hashlib
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import PIL.Image
import torch

from pti_lab.errors import BadInputError
from pti_lab.imaging import to_rgb
from pti_lab.synthfaces.params import NAMES, extras_on, hair_style_of
from pti_lab.synthfaces.render import MAX_SIZE
from pti_lab.synthfaces.testsets import DEFAULT_SEED, KINDS, kind_seed, make_testset

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
SPLITS = ("hash", "balanced")  # how data.split deals the items to the shards (module docstring)


@dataclass
class Sample:
    name: str                      # unique, file-system-safe stem, e.g. "ood_007" or the file's stem
    image: Optional[torch.Tensor]  # [1, 3, R, R] float32 in [-1, 1]; None if unreadable
    error: Optional[str] = None    # one line naming the file and the problem when image is None
    info: dict = field(default_factory=dict)  # JSON-serialisable facts: source, true parameters, ...


def check_limit(limit: Optional[int]) -> Optional[int]:
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise BadInputError(f"data.limit must be null or an integer >= 0, got {limit!r}")
    return limit


def check_shard(shard: int, shards: int, split: str) -> None:
    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise BadInputError(f"data.shards must be an integer >= 1, got {shards!r}")
    if not isinstance(shard, int) or isinstance(shard, bool) or not 0 <= shard < shards:
        raise BadInputError(f"data.shard={shard!r} is not one of the data.shards={shards} shards "
                            f"(expected an integer from 0 to {shards - 1})")
    if split not in SPLITS:
        raise BadInputError(f"data.split={split!r} is not one of {', '.join(SPLITS)}")


def shard_of(key: str, shards: int) -> int:
    """The shard of the item named `key`: a hash of the key alone (stable when other items come or go)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % shards


def shard_positions(keys: list, shard: int, shards: int, split: str) -> list:
    """The positions in `keys` (the items after the limit, in the data set's sorted order) of the
    items in `shard`, split as the module docstring says."""
    check_shard(shard, shards, split)
    if split == "balanced":
        return list(range(shard, len(keys), shards))
    return [position for position, key in enumerate(keys) if shard_of(key, shards) == shard]


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float32 [1, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def square_resize(img: PIL.Image.Image, resolution: int) -> PIL.Image.Image:
    """Centre-crop to the largest square, then Lanczos-resize to resolution x resolution."""
    width, height = img.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != resolution:
        img = img.resize((resolution, resolution), PIL.Image.Resampling.LANCZOS)
    return img


# ----------------------------------------------------------------------------
# Synthfaces test sets.


class SynthfacesTestSet:
    """The seeded in-domain or out-of-domain synthfaces test set, with the true parameters in `info`."""

    def __init__(
        self,
        kind: str = "ood",             # "indomain" (no extras) or "ood" (every face has extras)
        count: int = 32,               # faces in the test set
        seed: Optional[int] = None,    # test-set seed; None = the published default
        limit: Optional[int] = None,   # keep only the first `limit` faces
        shard: int = 0,                # keep only this shard of the faces (0 .. shards - 1)
        shards: int = 1,               # number of shards the faces are split into
        split: str = "hash",           # "hash" (by name, stable as faces are added) or "balanced" (round-robin)
    ):
        if kind not in KINDS:
            raise BadInputError(f"synthfaces test set kind '{kind}' is not one of {', '.join(KINDS)}")
        if count < 1:
            raise BadInputError(f"synthfaces test set count must be >= 1, got {count}")
        self.kind = kind
        self.count = count
        self.seed = DEFAULT_SEED if seed is None else seed
        self.limit = check_limit(limit)
        kept = range(self.count if self.limit is None else min(self.count, self.limit))
        self.indices = shard_positions([self.name(i) for i in kept], shard, shards, split)  # position = index
        self.names = [self.name(i) for i in self.indices]

    def name(self, index: int) -> str:
        return f"{self.kind}_{index:03d}"

    def __len__(self) -> int:
        return len(self.indices)

    def samples(self, resolution: int) -> Iterator[Sample]:
        # The renderer draws any size up to MAX_SIZE directly; larger generators get an upscaled face.
        images, params = make_testset(self.kind, self.count, self.seed, min(resolution, MAX_SIZE))
        source = f"synthfaces/{self.kind} (seed {kind_seed(self.kind, self.seed)})"
        styles, extras = hair_style_of(params), extras_on(params)
        for index in self.indices:
            face = square_resize(PIL.Image.fromarray(images[index]), resolution)
            info = {"source": source, "index": index, "hair_style": styles[index], "extras": extras[index],
                    "params": {name: float(value) for name, value in zip(NAMES, params[index])}}
            yield Sample(self.name(index), to_tensor(np.asarray(face)), None, info)


# ----------------------------------------------------------------------------
# Image files.


def unique_names(paths: list, root: Path) -> list:
    """File-system-safe names from the stems; files sharing a stem get their suffix appended
    ("a.png", "a.jpg" -> "a_png", "a_jpg"), then the folders they are in, then a counter."""
    def safe(text: str) -> str:
        return UNSAFE_CHARS.sub("_", text).strip("._") or "image"

    def with_suffix(path: Path) -> str:
        return safe(f"{path.stem}_{path.suffix[1:]}")

    def with_folders(path: Path) -> str:
        return safe("_".join(path.relative_to(root).parent.parts + (path.stem, path.suffix[1:])))

    names = [safe(path.stem) for path in paths]
    for widen in (with_suffix, with_folders):
        counts = Counter(names)
        names = [widen(path) if counts[name] > 1 else name for path, name in zip(paths, names)]
    taken = set()
    for i, name in enumerate(names):  # only stems that differ by unsafe characters get here
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = f"{name}_{n}"
        names[i] = candidate
        taken.add(candidate)
    return names


def read_image(path: Path, resolution: int) -> tuple:
    """(image tensor, original (width, height), None) or (None, None, one-line error) for one file."""
    try:
        with PIL.Image.open(path) as opened:
            opened.load()
            img = to_rgb(opened)
    except PIL.UnidentifiedImageError:
        return None, None, f"{path}: cannot identify image file (not an image, or a format PIL cannot read)"
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... on damaged files
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return None, None, f"{path}: cannot read image: {reason}"
    return to_tensor(np.asarray(square_resize(img, resolution))), img.size, None


class ImageFiles:
    """Image files loaded with PIL, centre-cropped and resized; the base of ImageFolder and SingleImage."""

    def __init__(self, files: list, root: Path, limit: Optional[int] = None, shard: int = 0, shards: int = 1,
                 split: str = "hash"):
        limit = check_limit(limit)
        names = unique_names(files, root)  # named before the limit and the shard: a name never depends on them
        kept = shard_positions([file.relative_to(root).as_posix() for file in files[:limit]], shard, shards, split)
        self.files = [files[i] for i in kept]
        self.names = [names[i] for i in kept]
        self.root = root

    def __len__(self) -> int:
        return len(self.files)

    def samples(self, resolution: int) -> Iterator[Sample]:
        changed = Counter()  # original (width, height) of each image that was cropped or resized
        try:
            for path, name in zip(self.files, self.names):
                image, size, error = read_image(path, resolution)
                if image is None:
                    yield Sample(name, None, error, {"source": str(path)})
                    continue
                if size != (resolution, resolution):
                    changed[size] += 1
                yield Sample(name, image, None, {"source": str(path), "original_size": list(size)})
        finally:  # also when the caller stops early: report what was changed so far
            if changed:
                sizes = ", ".join(f"{w}x{h}" + (f" ({n}x)" if n > 1 else "") for (w, h), n in sorted(changed.items()))
                log.warning("%s: %d of %d images centre-cropped and resized to %dx%d from %s",
                            self.root, sum(changed.values()), len(self), resolution, resolution, sizes)


class ImageFolder(ImageFiles):
    """Every image file in a folder (png, jpg, jpeg, webp, bmp, tif, tiff), sorted by path."""

    def __init__(
        self,
        path: str,                    # the folder
        limit: Optional[int] = None,  # keep only the first `limit` files
        recursive: bool = False,      # also look in subfolders
        shard: int = 0,               # keep only this shard of the files (0 .. shards - 1)
        shards: int = 1,              # number of shards the files are split into
        split: str = "hash",          # "hash" (by path, stable as files are added) or "balanced" (round-robin)
    ):
        root = Path(path)
        if not root.is_dir():
            raise BadInputError(f"image folder {root} does not exist or is not a folder")
        candidates = root.rglob("*") if recursive else root.iterdir()
        files = sorted(p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(root).parts))
        if not files:
            raise BadInputError(f"image folder {root} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        super().__init__(files, root, limit, shard, shards, split)


class SingleImage(ImageFiles):
    """One image file."""

    def __init__(
        self,
        path: str,                    # the image file
        limit: Optional[int] = None,  # accepted so that data.limit works with every dataset
        shard: int = 0,               # accepted so that data.shard works with every dataset
        shards: int = 1,              # (the image is in one of the shards, the others are empty)
        split: str = "hash",          # which shard: its path's hash, or shard 0 when "balanced"
    ):
        file = Path(path)
        if not file.is_file():
            raise BadInputError(f"image file {file} does not exist or is not a file")
        super().__init__([file], file.parent, limit, shard, shards, split)
