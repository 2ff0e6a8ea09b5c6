"""Atomic file writes: an interrupted run never leaves a half-written output behind."""

import errno
import io
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from pti_lab.errors import DiskFullError


def _default_file_mode() -> int:
    umask = os.umask(0)  # reading the umask means setting it; restore it at once
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _default_file_mode()


def remove_leftovers(folder: str | os.PathLike) -> int:
    """Delete the temporary files (.NAME.*.tmp) of atomic writes that a killed process left under
    `folder` (a kill -9 skips atomic_path's clean-up); returns how many. Only while nothing writes there."""
    leftovers = [p for p in Path(folder).rglob(".*.tmp") if p.is_file()]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return len(leftovers)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` on success, delete it on error."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # see remove_leftovers
        os.close(fd)
        os.chmod(tmp, _FILE_MODE)  # mkstemp creates 0600; outputs get the usual permissions
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"{path}: not written, no space left on device (what was written before is "
                                f"whole); free space and re-run the same command to resume") from None
        raise
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save `obj` to `path` atomically, through a file object: given a path, torch names the
    archive's root folder after the file, here a random temporary name, so equal tensors would give
    different bytes; through a file object the folder is always 'archive', and a retrained file with
    the same weights has the same sha256."""
    buffer = io.BytesIO()  # serialised first: torch.save reports a full disk as an unclear RuntimeError
    torch.save(obj, buffer)
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        file.write(buffer.getbuffer())
    return Path(path)
