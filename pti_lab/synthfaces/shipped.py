"""The shipped weights of the synthfaces domain: files in `weights/`, listed in `weights/manifest.json`.

    from pti_lab.synthfaces import shipped
    path = shipped.path_of("generator.pt")    # the file, after checking its sha256 against the manifest
    shipped.record("generator.pt", "runs/g/generator.pt", command="python -m ...", seed=0,
                   minutes=8.0, device="cuda", metrics={"recon_lpips_indomain": 0.07})

The manifest holds, per file: sha256, bytes, the command that rebuilds it, seed, minutes, device,
metrics (measured quality numbers), when it was recorded, and built_from: the sha256 of each shipped
file it was trained or fitted from (the CLIP and the boundaries from the predictor, the boundaries
from the generator). Loading needs no network: a missing or corrupted file is a one-line error
naming the file and the command that rebuilds it; a file built from another version of a shipped
file than the one there now loads with a warning naming its rebuild command.

`record` copies the file into the weights folder and updates the manifest atomically, under a lock
on the folder, so the training scripts of all the domain's networks can record side by side. The
metrics describe a file by its hash: recording the same bytes again merges the new fields into the
entry (a report adding metrics to a trained file); recording new bytes replaces the entry.
"""

import fcntl
import json
import os
import shutil
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from pti_lab.atomic import atomic_path, write_text
from pti_lab.errors import BadInputError, CheckpointError, WeightsNotFoundError
from pti_lab.weights import sha256_of

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # shipped inside the package
MANIFEST = "manifest.json"
GENERATOR_FILE = "generator.pt"  # the synthfaces StyleGAN2 (python -m pti_lab.train.synthfaces_generator)
# Encoders of that generator, official checkpoint layout (python -m pti_lab.train.synthfaces_encoders)
ENCODER_FILES = {"e4e": "e4e.pt", "psp": "psp.pt"}
# Early stop of pivotal tuning on this generator: none. Measured with experiments/early_stop_curve.py
# (4 synthfaces_ood images, W pivots, 350 steps): identity keeps rising to the last step (mean id_sim
# 0.47 where LPIPS reaches the official 0.06 at step 40, 0.78 at 0.02 (step 180), 0.85 at 0.01 (step
# 270), 0.89 after 350 steps, LPIPS 0.005); a 64 px render reaches the 1024 px FFHQ threshold long
# before the details that carry identity are restored.
TUNING_LPIPS_THRESHOLD = None  # tuner.lpips_threshold=auto: no early stop on this generator
FORMAT = "pti-lab/synthfaces-weights"
FORMAT_VERSION = 1


def folder_of(folder: Optional[os.PathLike]) -> Path:
    # Read WEIGHTS_DIR at call time so tests can point the module at a copy.
    return Path(folder) if folder is not None else WEIGHTS_DIR


def read_manifest(folder: Optional[os.PathLike] = None) -> dict:
    """The manifest as a dict ({'format', 'version', 'files': {name: entry}}); empty if there is none."""
    path = folder_of(folder) / MANIFEST
    if not path.is_file():
        return {"format": FORMAT, "version": FORMAT_VERSION, "files": {}}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"{path}: not a synthfaces weights manifest (format {FORMAT!r} expected)")
    if manifest.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: manifest version {manifest.get('version')} is not supported "
                              f"(this pti-lab reads version {FORMAT_VERSION})")
    return manifest


def path_of(name: str, folder: Optional[os.PathLike] = None) -> Path:
    """The shipped file `name`, verified: it exists and its sha256 matches the manifest.

    WeightsNotFoundError if the file or its manifest entry is missing, CheckpointError if its bytes
    differ from the recorded ones; both name the command that rebuilds the file.
    """
    folder = folder_of(folder)
    path = folder / name
    files = read_manifest(folder)["files"]
    entry = files.get(name)
    if entry is None:
        raise WeightsNotFoundError(f"synthfaces weights {path}: not listed in {folder / MANIFEST}; "
                                   f"train it and record it with its training script's --ship option")
    rebuild = f"rebuild with `{entry['command']}`"
    if not path.is_file():
        raise WeightsNotFoundError(f"synthfaces weights {path}: missing; {rebuild}")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise CheckpointError(f"synthfaces weights {path}: {size} bytes, the manifest records {entry['bytes']} "
                              f"(truncated or replaced); {rebuild}")
    digest = sha256_of(path)
    if digest != entry["sha256"]:
        raise CheckpointError(f"synthfaces weights {path}: sha256 {digest[:16]}... does not match the manifest's "
                              f"{entry['sha256'][:16]}... (corrupted or replaced); {rebuild}")
    for source, source_digest in entry.get("built_from", {}).items():
        if files.get(source, {}).get("sha256") != source_digest:
            warnings.warn(f"synthfaces weights {name} were built from another {source} than the one shipped now; "
                          f"{rebuild}", stacklevel=2)
    return path


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on the folder itself, so no lock file lands among the weights."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def record(
    name: str,                              # file name inside the weights folder, e.g. 'generator.pt'
    source: os.PathLike,                    # the file to ship; copied into the folder unless already there
    command: Optional[str] = None,          # the exact command that rebuilds `source`; needed for new bytes
    seed: Optional[int] = None,             # training seed
    minutes: Optional[float] = None,        # training wall time
    device: Optional[str] = None,           # what it was trained on, e.g. 'cuda (NVIDIA H100)' or 'cpu (2 threads)'
    metrics: Optional[dict] = None,         # measured quality numbers, merged into the entry's metrics
    built_from: Optional[dict] = None,      # {shipped file: sha256} this one was trained or fitted from
    folder: Optional[os.PathLike] = None,   # weights folder (default: the package's)
) -> dict:
    """Ship `source` as `name` and write its manifest entry atomically; returns the entry."""
    folder = folder_of(folder)
    source = Path(source)
    if Path(name).name != name or name == MANIFEST:
        raise BadInputError(f"synthfaces weights: {name!r} is not a plain file name for the weights folder")
    if not source.is_file():
        raise WeightsNotFoundError(f"synthfaces weights: cannot record {name}: {source} does not exist")
    target = folder / name
    with locked(folder):
        digest = sha256_of(source)
        manifest = read_manifest(folder)
        old = manifest["files"].get(name, {})
        entry = dict(old) if old.get("sha256") == digest else {}
        given = {"command": command, "seed": seed, "minutes": minutes, "device": device}
        entry.update({key: value for key, value in given.items() if value is not None})
        if "command" not in entry:
            raise BadInputError(f"synthfaces weights: recording new bytes for {name} needs the command that rebuilds them")
        if not (target.exists() and target.samefile(source)):
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
        entry.update(sha256=digest, bytes=target.stat().st_size, recorded=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        entry["metrics"] = {**entry.get("metrics", {}), **(metrics or {})}
        if built_from:
            entry["built_from"] = dict(sorted(built_from.items()))
        manifest["files"][name] = dict(sorted(entry.items()))
        manifest["files"] = dict(sorted(manifest["files"].items()))
        write_text(folder / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return entry
