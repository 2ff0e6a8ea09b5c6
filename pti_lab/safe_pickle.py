"""A pickle reader that only builds allow-listed objects.

Plain `pickle.load` calls any global the file names (`os.system`, `builtins.exec`, ...). This
reader resolves globals through an explicit table instead and refuses every other one, so reading
a file never runs code from it. Callers extend the table with their own record types.
"""

import collections
import io
import pickle
from typing import Any, Mapping

import numpy as np

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

