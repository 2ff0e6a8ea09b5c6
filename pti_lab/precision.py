"""Mixed precision of the optimisation loops: `inverter.autocast` and `tuner.autocast`.

null (the default) computes in float32. `bf16` runs each step's forward pass (generator, LPIPS
networks) under torch.autocast with bfloat16 on the device the models are on; the losses, the
gradients' accumulation and Adam stay float32. It pays off where the hardware multiplies bf16
natively: CUDA GPUs from Ampere on, and CPUs with AVX512_BF16 or AMX (oneDNN). Elsewhere oneDNN
emulates bf16, slower than float32, and a warning says so. `auto` is bf16 where the hardware has it
and float32 elsewhere (what `+recipe=fast` uses, so that one config is fast on every machine).
Results differ from float32 by bf16 rounding; `python -m pti_lab.bench.pti --autocast bf16`
measures both the time and the LPIPS reached.
"""

import functools
import warnings
from contextlib import nullcontext
from typing import ContextManager, Optional

import torch

from pti_lab.errors import BadInputError

AUTOCAST_DTYPES = {"bf16": torch.bfloat16}
AUTO = "auto"  # bf16 where native, else float32


def check_autocast(autocast: Optional[str], where: str) -> None:
    """Raise BadInputError unless `autocast` is None, AUTO or one of AUTOCAST_DTYPES."""
    if autocast is not None and autocast != AUTO and autocast not in AUTOCAST_DTYPES:
        raise BadInputError(f"{where}: autocast={autocast!r}: expected null (float32), {AUTO} or one of "
                            f"{', '.join(AUTOCAST_DTYPES)}")


@functools.lru_cache(maxsize=None)  # asked at every step; the hardware does not change
def native_bf16(device_type: str) -> bool:
    """Whether devices of this type ('cpu', 'cuda') multiply bf16 in hardware (so that bf16 autocast
    is faster than float32); a warning once per process when they do not."""
    native = _native_bf16(device_type)
    if not native:
        warnings.warn(f"autocast=bf16 on {device_type}: this device has no native bf16 arithmetic, so it is "
                      f"emulated and slower than float32; leave autocast unset here")
    return native


@functools.lru_cache(maxsize=None)
def _native_bf16(device_type: str) -> bool:
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device_type == "cpu":  # private helpers of torch.cpu; if a release drops them, assume emulation
        checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(check is not None and check() for check in checks)
    return True


def autocast_context(autocast: Optional[str], device: torch.device) -> ContextManager:
    """The context a step's forward pass runs in: torch.autocast for `autocast`, or nothing (float32)."""
    if autocast == AUTO:
        autocast = "bf16" if _native_bf16(device.type) else None
    if autocast is None:
        return nullcontext()
    native_bf16(device.type)  # warns when emulated
    return torch.autocast(device.type, AUTOCAST_DTYPES[autocast])
