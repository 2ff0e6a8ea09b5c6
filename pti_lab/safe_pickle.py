"""Readers that never run code from a file.

Plain `pickle.load` calls any global the file names (`os.system`, `builtins.exec`, ...). SafeUnpickler
resolves globals through an explicit table instead and refuses every other one; callers extend the
table with their own record types. `load_weights_only` is torch.load(weights_only=True) for torch's
own files, whose refusal names the call the file makes and never passes on torch's advice to load the
file unsafely.
"""

import collections
import io
import pickle
import re
from typing import Any, Mapping, Sequence

import numpy as np
import torch

_np_multiarray = getattr(np, "_core", None) or np.core  # numpy >= 2 moved core to _core

# Globals that rebuild plain data: containers and numpy arrays (never object arrays, see below).
DATA_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _np_multiarray.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_multiarray.multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_multiarray.multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _np_multiarray.multiarray.scalar,
}


# Modules a pickle names in place of the one people know: os functions live in posix (nt on Windows),
# and protocol-2 pickles (torch's) write Python 2 names for builtins and subprocess.
_PUBLIC_MODULES = {"posix": "os", "nt": "os", "__builtin__": "builtins", "commands": "subprocess"}


def describe_global(module: str, name: str) -> str:
    """'module.name' as the file writes it, plus the usual name where that differs: 'posix.system (os.system)'."""
    written = f"{module}.{name}"
    public = f"{_PUBLIC_MODULES.get(module, module)}.{name}"
    return written if public == written else f"{written} ({public})"


# Words of torch's advice to load the file unsafely (weights_only=False, or allow-listing its globals
# "if you trust" it); a refusal of a possibly hostile file must never pass that advice on.
_UNSAFE_ADVICE = re.compile(r"weights_only|re-running|likely succeed|trust|safe_globals", re.IGNORECASE)


def weights_only_reason(message: str) -> str:
    """Why torch's weights_only reader refused a file, without torch's advice to load it unsafely."""
    # 'Unsupported global: GLOBAL commands.Popen was not an allowed global' or 'unsupported GLOBAL
    # posix.system whose module posix is blocked'; builtins are written bare ('GLOBAL exec').
    if match := re.search(r"\bGLOBAL ([\w.]+\w)", message):
        module, _, name = match.group(1).rpartition(".")
        called = describe_global(module or "builtins", name)
        return f"the file calls {called}, which a weights file never needs (it may be hostile)"
    match = re.search(r"WeightsUnpickler error:\s*([^\n]+)", message)
    first_sentence = match.group(1).split(". ")[0].rstrip(".") if match else ""
    if first_sentence and not _UNSAFE_ADVICE.search(first_sentence):
        return f"{first_sentence} (the file may be hostile or not a supported checkpoint)"
    return "the file holds more than tensors and plain data (it may be hostile or not a supported checkpoint)"


def load_weights_only(file: Any, map_location: Any = "cpu", safe_globals: Sequence[type] = ()) -> Any:
    """torch.load(file, weights_only=True): tensors and plain data only, nothing in the file runs. A refused
    file raises pickle.UnpicklingError whose message is weights_only_reason's, one line."""
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise pickle.UnpicklingError(weights_only_reason(str(error))) from None


class SafeUnpickler(pickle.Unpickler):
    """Unpickler whose `find_class` only answers from `allowed`; anything else is refused."""

    def __init__(self, file, allowed: Mapping[tuple[str, str], Any], source: str = "<bytes>"):
        super().__init__(file)
        self.allowed = allowed
        self.source = source  # file name used in error messages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"{self.source}: refusing to load {describe_global(module, name)}: not an allowed type, "
                "nothing from the file was run (it may be hostile or not a supported checkpoint)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"{self.source}: unsupported persistent id {pid!r}")


def safe_loads(data: bytes, allowed: Mapping[tuple[str, str], Any] = DATA_GLOBALS,
               source: str = "<bytes>") -> Any:
    """Unpickle `data` allowing only the globals in `allowed`."""
    obj = SafeUnpickler(io.BytesIO(data), allowed, source).load()
    _refuse_object_arrays(obj, source)
    return obj


def safe_load_file(path, allowed: Mapping[tuple[str, str], Any] = DATA_GLOBALS) -> Any:
    """Read a pickle file with `safe_loads`; errors name the file."""
    with open(path, "rb") as f:
        return safe_loads(f.read(), allowed, source=str(path))


def _refuse_object_arrays(obj: Any, source: str, _depth: int = 0) -> None:
    # Object arrays carry arbitrary Python objects; data files never need them.
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        raise pickle.UnpicklingError(f"{source}: refusing a numpy object array")
    if _depth > 64:
        return
    if isinstance(obj, dict):
        for value in obj.values():
            _refuse_object_arrays(value, source, _depth + 1)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _refuse_object_arrays(value, source, _depth + 1)

