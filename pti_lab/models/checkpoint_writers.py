"""Writing a generator in the formats other tools load (the readers are in checkpoints.py).

  * rosinality stylegan2-pytorch: `{'g_ema': state dict, 'latent_avg': [w_dim]}` with rosinality's
    tensor names and shapes, what its `convert_weight.py` writes and what rosinality's, e4e's and
    pSp's code load (`Generator(size, style_dim, n_mlp).load_state_dict(ckpt['g_ema'])`);
  * official stylegan2-ada-pytorch network pickles: the user's own pickle written back with other
    generator weights. Everything else (its embedded network source, `G`, `D`, `augment_pipe`,
    `training_set_kwargs`) is carried over as the file held it, so NVIDIA's `legacy.load_network_pkl`
    and the official PTI code load it as they loaded the original. No NVIDIA code is shipped or run:
    the pickle is read as plain records (checkpoints.read_official_pickle's allow-list) and written
    back with the same global names.
"""

import collections
import io
import os
import pickle
import types
from pathlib import Path
from typing import Any

import torch

from pti_lab.atomic import atomic_path, save_torch
from pti_lab.errors import CheckpointError
from pti_lab.models.checkpoints import (OFFICIAL_PICKLE_GLOBALS, EasyDictRecord, PersistentRecord,
                                        read_official_pickle, record_state_dict)
from pti_lab.models.stylegan2 import Generator
from pti_lab.safe_pickle import SafeUnpickler

# ----------------------------------------------------------------------------------------------
# rosinality stylegan2-pytorch.

# What rosinality's Generator hard-wires (each also our constructor's default, taken for an absent key);
# a generator that differs cannot be written in its format.
_ROSINALITY_FIXED = {
    ("c_dim",): 0, ("img_channels",): 3,
    ("synthesis_kwargs", "architecture"): "skip", ("synthesis_kwargs", "conv_clamp"): None,
    ("synthesis_kwargs", "resample_filter"): [1, 3, 3, 1], ("synthesis_kwargs", "kernel_size"): 3,
    ("synthesis_kwargs", "use_noise"): True, ("synthesis_kwargs", "activation"): "lrelu",
    ("mapping_kwargs", "lr_multiplier"): 0.01, ("mapping_kwargs", "activation"): "lrelu",
    ("mapping_kwargs", "layer_features"): None,
}


def rosinality_incompatibility(G: Generator) -> str | None:
    """Why G cannot be written as a rosinality checkpoint, or None when it can."""
    kwargs = G.init_kwargs
    if kwargs.get("network", "stylegan2") != "stylegan2":
        return f"rosinality stylegan2-pytorch has only StyleGAN2, and this generator is {kwargs['network']}"
    if G.z_dim != G.w_dim:
        return f"rosinality's mapping takes z of w_dim, and this generator has z_dim {G.z_dim}, w_dim {G.w_dim}"
    for key, required in _ROSINALITY_FIXED.items():
        value = kwargs[key[0]] if len(key) == 1 else kwargs[key[0]].get(key[1], required)
        if isinstance(value, (list, tuple)):
            value = [float(v) for v in value]
            required = [float(v) for v in required]
        if value != required:
            return f"rosinality's Generator has {'.'.join(key)}={required!r}, this one {value!r}"
    return None


def rosinality_checkpoint(G: Generator) -> dict:
    """G as rosinality's `{'g_ema': state dict, 'latent_avg': [w_dim]}` (the inverse of checkpoints.read_rosinality)."""
    why = rosinality_incompatibility(G)
    if why:
        raise CheckpointError(f"cannot write a rosinality checkpoint: {why}")
    sd = {name: t.detach().cpu().float().clone() for name, t in G.state_dict().items()}
    out = {}

    def styled_conv(src: str, dst: str, noise_index: int, upsample: bool) -> None:
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"].unsqueeze(0)            # [O,I,k,k] -> [1,O,I,k,k]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        if upsample:  # rosinality stores its FIR kernel multiplied by up**2 = 4; ours is normalised
            out[f"{dst}.conv.blur.kernel"] = sd[f"{src}.resample_filter"] * 4
        out[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)     # [] -> [1]
        out[f"{dst}.activate.bias"] = sd[f"{src}.bias"]
        out[f"noises.noise_{noise_index}"] = sd[f"{src}.noise_const"][None, None]  # [R,R] -> [1,1,R,R]

    def to_rgb(src: str, dst: str, upsample_filter: str | None) -> None:
        if upsample_filter:
            out[f"{dst}.upsample.kernel"] = sd[upsample_filter] * 4
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"].unsqueeze(0)
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1)            # [C] -> [1,C,1,1]

    for layer in range(G.mapping.num_layers):  # style.0 is rosinality's PixelNorm (no tensors)
        out[f"style.{layer + 1}.weight"] = sd[f"mapping.fc{layer}.weight"]
        out[f"style.{layer + 1}.bias"] = sd[f"mapping.fc{layer}.bias"]
    out["input.input"] = sd["synthesis.b4.const"].unsqueeze(0)                  # [C,4,4] -> [1,C,4,4]
    styled_conv("synthesis.b4.conv1", "conv1", 0, upsample=False)
    to_rgb("synthesis.b4.torgb", "to_rgb1", None)
    for block, res in enumerate(G.synthesis.block_resolutions[1:], start=1):
        styled_conv(f"synthesis.b{res}.conv0", f"convs.{2 * block - 2}", 2 * block - 1, upsample=True)
        styled_conv(f"synthesis.b{res}.conv1", f"convs.{2 * block - 1}", 2 * block, upsample=False)
        to_rgb(f"synthesis.b{res}.torgb", f"to_rgbs.{block - 1}", f"synthesis.b{res}.resample_filter")
    return {"g_ema": out, "latent_avg": sd["mapping.w_avg"]}


def save_rosinality(G: Generator, path: str | os.PathLike) -> Path:
    """Write G as a rosinality stylegan2-pytorch checkpoint, atomically."""
    return save_torch(rosinality_checkpoint(G), Path(path))


# ----------------------------------------------------------------------------------------------
# Official network pickles.

class _OfficialRecord(PersistentRecord):
    """A persistent object read for writing back: the record plus the metadata written with it."""

    def __init__(self, meta: dict):
        super().__init__(str(meta.get("class_name")), str(meta.get("module_src") or ""), dict(meta.get("state") or {}))
        self.meta = {key: value for key, value in meta.items() if key != "state"}  # type, version, ...


def _read_for_writing(meta: dict) -> _OfficialRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise pickle.UnpicklingError("unsupported persistent object")
    return _OfficialRecord(meta)


_READ_FOR_WRITING = {**OFFICIAL_PICKLE_GLOBALS, ("torch_utils.persistence", "_reconstruct_persistent_obj"): _read_for_writing}


def _reconstruct_persistent_obj(meta: dict):  # named in the pickle as torch_utils.persistence's; never called
    raise AssertionError("a stand-in for writing official pickles")


# The official global names our stand-ins are written as.
_OFFICIAL_NAMES = {_reconstruct_persistent_obj: ("torch_utils.persistence", "_reconstruct_persistent_obj"),
                   EasyDictRecord: ("dnnlib.util", "EasyDict")}


class _OfficialPickler(pickle._Pickler):
    """Pickles records as the official persistence module does, under the official global names.

    The pure-Python pickler is used because its global lookup can be told these names without
    installing modules of those names into the running interpreter.
    """

    def reducer_override(self, obj: Any):
        if isinstance(obj, _OfficialRecord):
            return _reconstruct_persistent_obj, (dict(obj.meta, state=obj.state),)
        return NotImplemented

    def save_global(self, obj: Any, name: str | None = None) -> None:
        official = _OFFICIAL_NAMES.get(obj)
        if official is None:
            return super().save_global(obj, name)
        self.save(official[0])
        self.save(official[1])
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)

    # The base class dispatches functions to its own save_global, not to an override.
    dispatch = {**pickle._Pickler.dispatch, types.FunctionType: save_global}


def _with_tensors(record: _OfficialRecord, tensors: dict[str, torch.Tensor], prefix: str, used: set) -> _OfficialRecord:
    """A copy of `record`'s tree (the original untouched: G may share it) holding `tensors` by state-dict name."""
    copy = _OfficialRecord(dict(record.meta, state=dict(record.state)))
    for kind in ("_parameters", "_buffers"):
        entries = copy.state.get(kind)
        if not entries:
            continue
        entries = copy.state[kind] = collections.OrderedDict(entries)
        for name, old in entries.items():
            key = prefix + name
            if old is None or key not in tensors:
                continue
            new = tensors[key].detach().cpu().to(old.dtype).reshape(old.shape).contiguous().clone()
            entries[name] = torch.nn.Parameter(new, requires_grad=old.requires_grad) \
                if isinstance(old, torch.nn.Parameter) else new
            used.add(key)
    children = copy.state.get("_modules")
    if children:
        copy.state["_modules"] = collections.OrderedDict(
            (name, _with_tensors(child, tensors, f"{prefix}{name}.", used) if isinstance(child, _OfficialRecord) else child)
            for name, child in children.items())
    return copy


def official_pickle(G: Generator, original: str | os.PathLike) -> bytes:
    """The official network pickle at `original` with its generator (`G_ema`, else `G`) holding G's weights.

    G must have the architecture of that generator (it was loaded from, or tuned from, the file).
    """
    source = str(original)
    data = Path(original).read_bytes()
    generator = read_official_pickle(data, source)   # vets the embedded source; refuses what we cannot read
    expected = record_state_dict(generator)
    tensors = G.state_dict()
    mismatch = sorted(set(expected) ^ set(tensors)) or \
        [name for name in expected if tuple(expected[name].shape) != tuple(tensors[name].shape)]
    if mismatch:
        raise CheckpointError(f"{source}: its generator has another architecture than the one to write "
                              f"(first difference: '{mismatch[0]}')")
    obj = SafeUnpickler(io.BytesIO(data), _READ_FOR_WRITING, source).load()
    key = "G_ema" if isinstance(obj, dict) and "G_ema" in obj else "G"
    used: set = set()
    replaced = _with_tensors(obj[key] if isinstance(obj, dict) else obj, dict(tensors), "", used)
    if used != set(expected):
        missing = sorted(set(expected) - used)
        raise CheckpointError(f"{source}: could not place '{missing[0]}' in the pickle")
    out = dict(obj, **{key: replaced}) if isinstance(obj, dict) else replaced
    buffer = io.BytesIO()
    _OfficialPickler(buffer, protocol=4).dump(out)
    return buffer.getvalue()


def save_official(G: Generator, original: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write `original` (an official network pickle) with G's weights as its generator, atomically."""
    payload = official_pickle(G, original)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(payload)
    return Path(path)
