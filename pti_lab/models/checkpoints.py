"""Loading and saving generators without executing anything from the file.

One entry point, `load_generator(path_or_url)`, reads:
  * official stylegan2-ada-pytorch / stylegan3 network pickles (`G_ema`): the stock loader `exec`s
    the network source embedded in the pickle; we read the pickle with an allow-listing unpickler
    that turns each persistent object into a plain `PersistentRecord` (class name, init kwargs,
    tensors), statically vets the embedded source without running it, and builds our own module
    (StyleGAN2, or StyleGAN3 configs T/R, whose stored layer geometry must match the rebuilt one);
  * rosinality stylegan2-pytorch checkpoints (`g_ema` state dict + `latent_avg`), mapped by name;
  * pti-lab's own format written by `save_generator` (constructor arguments + state dict),
    read with `torch.load(weights_only=True)`.
Every failure is a one-line `CheckpointError` naming the file and the first problem.
"""

import argparse
import ast
import hashlib
import io
import logging
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from pti_lab.atomic import save_torch
from pti_lab.errors import CheckpointError
from pti_lab.models.stylegan2 import Generator
from pti_lab.models.stylegan3 import NETWORK as STYLEGAN3
from pti_lab.models.stylegan3 import Generator as StyleGAN3Generator
from pti_lab.safe_pickle import DATA_GLOBALS, SafeUnpickler, load_weights_only
from pti_lab.weights import cache_dir, download, is_url

log = logging.getLogger(__name__)

OWN_FORMAT = "pti-lab/generator"
OWN_FORMAT_VERSION = 1


# ----------------------------------------------------------------------------------------------
# Official network pickles.

@dataclass
class PersistentRecord:
    """What an official persistent object holds, as plain data; never an instance of its class."""
    class_name: str                                 # the bare class name, e.g. 'Generator'
    module_src: str                                 # source of the defining module (never executed)
    state: dict = field(repr=False)                 # the object's __dict__: tensors, children, kwargs

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs") or {})

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args") or ())


class EasyDictRecord(dict):
    """Stands in for dnnlib.util.EasyDict: a dict, nothing more."""


def _reconstruct_persistent_obj(meta: dict) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise pickle.UnpicklingError("unsupported persistent object")
    return PersistentRecord(str(meta.get("class_name")), str(meta.get("module_src") or ""),
                            dict(meta.get("state") or {}))


def _load_storage_bytes(data: bytes) -> Any:
    # The stock function calls torch.load(weights_only=False) on these bytes; ours only reads data.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation in legacy files
        return load_weights_only(io.BytesIO(data), map_location=None)


def _rebuild_from_type_v2(func, new_type, args, state):
    if func is not torch._utils._rebuild_tensor_v2 or new_type not in (torch.Tensor, torch.nn.Parameter):
        raise pickle.UnpicklingError("unsupported tensor subclass")
    tensor = func(*args)
    return tensor if new_type is torch.Tensor else torch.nn.Parameter(tensor)


OFFICIAL_PICKLE_GLOBALS = {
    **DATA_GLOBALS,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDictRecord,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
}

# Roots the network source of an official pickle imports; anything else is refused, since an
# import runs the imported module.
_ALLOWED_IMPORT_ROOTS = {"numpy", "torch", "torch_utils", "dnnlib", "training", "math", "copy",
                         "typing", "scipy", "collections", "functools", "os", "re", "sys",
                         "__future__"}


def vet_module_source(src: str, class_name: str, source: str) -> None:
    """Refuse embedded network source that would have side effects when imported.

    We never run it; a file whose source does more than define classes and functions has been
    tampered with, and is refused so that nobody loads it with the stock loader either.
    """
    def refuse(node: ast.AST, why: str) -> None:
        line = getattr(node, "lineno", "?")
        raise CheckpointError(f"{source}: embedded source of {class_name} {why} (line {line}); refusing to load")

    def vet_no_calls(node: Optional[ast.AST], what: str) -> None:
        for sub in ast.walk(node) if node is not None else ():
            if isinstance(sub, (ast.Call, ast.Lambda, ast.NamedExpr, ast.Await, ast.Yield)):
                refuse(sub, f"runs code in a {what}")

    def vet_function(fn: ast.FunctionDef) -> None:
        for deco in fn.decorator_list:
            vet_no_calls(deco, "decorator")
        args = fn.args
        for default in args.defaults + [d for d in args.kw_defaults if d is not None]:
            vet_no_calls(default, "default argument")
        for arg in args.args + args.kwonlyargs + args.posonlyargs:
            vet_no_calls(arg.annotation, "annotation")
        vet_no_calls(fn.returns, "annotation")

    def vet_body(body: list, in_class: bool) -> None:
        for node in body:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # docstring
            if isinstance(node, ast.Pass):
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not in_class:
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                bad = [n for n in names if n.split(".")[0] not in _ALLOWED_IMPORT_ROOTS]
                if isinstance(node, ast.ImportFrom) and node.level > 0:
                    bad = []  # relative import within the training package
                if bad:
                    refuse(node, f"imports {bad[0]!r}")
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                vet_function(node)
                continue
            if isinstance(node, ast.ClassDef):
                for expr in node.decorator_list + node.bases + [k.value for k in node.keywords]:
                    vet_no_calls(expr, "class definition")
                vet_body(node.body, in_class=True)
                continue
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                vet_no_calls(node.value, "module-level assignment")
                continue
            refuse(node, f"has a top-level {type(node).__name__} statement")

    try:
        tree = ast.parse(src)
    except SyntaxError as exc:
        raise CheckpointError(f"{source}: embedded source of {class_name} is not valid Python ({exc.msg})") from None
    vet_body(tree.body, in_class=False)


def _records(obj: Any, seen: Optional[set] = None):
    """All PersistentRecords reachable from obj (the networks and their children)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, PersistentRecord):
        yield obj
        obj = obj.state
    if isinstance(obj, dict):
        for value in obj.values():
            yield from _records(value, seen)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _records(value, seen)


def record_state_dict(record: PersistentRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten a record tree into module state-dict names (parameters, persistent buffers)."""
    state = record.state
    tensors = {}
    for name, param in (state.get("_parameters") or {}).items():
        if param is not None:
            tensors[prefix + name] = param.detach()
    non_persistent = set(state.get("_non_persistent_buffers_set") or ())
    for name, buf in (state.get("_buffers") or {}).items():
        if buf is not None and name not in non_persistent:
            tensors[prefix + name] = buf
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, PersistentRecord):
            tensors.update(record_state_dict(child, f"{prefix}{name}."))
        elif child is not None:
            raise CheckpointError(f"unsupported sub-module {prefix}{name} of type {type(child).__name__}")
    return tensors


_GENERATOR_POSITIONAL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs",
                         "synthesis_kwargs")
_MAPPING_OPTIONS = {"num_layers", "embed_features", "layer_features", "activation", "lr_multiplier",
                    "w_avg_beta"}
_SYNTHESIS_OPTIONS = {"channel_base", "channel_max", "architecture", "resample_filter", "conv_clamp",
                      "use_noise", "activation", "kernel_size"}
# Official options that only choose how to compute (mixed precision, memory layout), not what.
_SPEED_OPTIONS = {"num_fp16_res", "fp16_channels_last", "fused_modconv_default", "channels_last"}


def generator_kwargs_from_record(record: PersistentRecord, source: str) -> dict:
    """Our Generator's constructor arguments from an official Generator's init args/kwargs."""
    kwargs = dict(zip(_GENERATOR_POSITIONAL, record.init_args))
    kwargs.update(record.init_kwargs)
    mapping = dict(kwargs.pop("mapping_kwargs", None) or {})
    synthesis = dict(kwargs.pop("synthesis_kwargs", None) or {})
    core = {k: kwargs.pop(k) for k in _GENERATOR_POSITIONAL[:5] if k in kwargs}
    synthesis.update(kwargs)  # stylegan3's networks_stylegan2 passes synthesis options flat
    missing = [k for k in _GENERATOR_POSITIONAL[:5] if k not in core]
    if missing:
        raise CheckpointError(f"{source}: generator record lacks constructor argument {missing[0]!r}")
    for options, allowed, what in ((mapping, _MAPPING_OPTIONS, "mapping"), (synthesis, _SYNTHESIS_OPTIONS, "synthesis")):
        for key in list(options):
            if key in _SPEED_OPTIONS:
                options.pop(key)
            elif key not in allowed:
                raise CheckpointError(f"{source}: unsupported {what} option {key}={options[key]!r}")
    if synthesis.get("architecture", "skip") not in ("orig", "skip"):
        raise CheckpointError(f"{source}: synthesis architecture {synthesis['architecture']!r} is not supported "
                              "(only 'skip' and 'orig')")
    if "resample_filter" in synthesis:
        synthesis["resample_filter"] = [float(t) for t in synthesis["resample_filter"]]
    return dict(core, mapping_kwargs=mapping, synthesis_kwargs=synthesis)


_SG3_POSITIONAL = _GENERATOR_POSITIONAL[:6]  # then the synthesis options, flat
_SG3_MAPPING_OPTIONS = {"num_layers", "lr_multiplier", "w_avg_beta"}
_SG3_SYNTHESIS_OPTIONS = {"channel_base", "channel_max", "num_layers", "num_critical", "first_cutoff",
                          "first_stopband", "last_stopband_rel", "margin_size", "output_scale", "num_fp16_res",
                          "conv_kernel", "filter_size", "lrelu_upsampling", "use_radial_filters", "conv_clamp",
                          "magnitude_ema_beta"}


def stylegan3_kwargs_from_record(record: PersistentRecord, source: str) -> dict:
    """Our StyleGAN3 Generator's constructor arguments from an official networks_stylegan3 Generator's."""
    kwargs = dict(zip(_SG3_POSITIONAL, record.init_args))
    kwargs.update(record.init_kwargs)
    mapping = dict(kwargs.pop("mapping_kwargs", None) or {})
    core = {k: kwargs.pop(k) for k in _SG3_POSITIONAL[:5] if k in kwargs}
    missing = [k for k in _SG3_POSITIONAL[:5] if k not in core]
    if missing:
        raise CheckpointError(f"{source}: generator record lacks constructor argument {missing[0]!r}")
    for options, allowed, what in ((mapping, _SG3_MAPPING_OPTIONS, "mapping"), (kwargs, _SG3_SYNTHESIS_OPTIONS, "synthesis")):
        unknown = [key for key in options if key not in allowed]
        if unknown:
            raise CheckpointError(f"{source}: unsupported StyleGAN3 {what} option {unknown[0]}={options[unknown[0]]!r}")
    return dict(core, mapping_kwargs=mapping, synthesis_kwargs=kwargs, network=STYLEGAN3)


# Plain attributes an official StyleGAN3 module stores that decide its computation; the network built
# from the settings must have the same ones (sizes, padding and resampling factors of each layer).
_SG3_CHECKED_ATTRIBUTES = ("num_ws", "output_scale", "size", "sampling_rate", "bandwidth", "in_size", "out_size",
                           "up_factor", "down_factor", "padding", "conv_kernel", "conv_clamp", "is_torgb")


def check_recorded_attributes(record: PersistentRecord, module: torch.nn.Module, source: str, prefix: str = "") -> None:
    """Refuse a file whose stored layer geometry differs from that of the network built from its settings."""
    for name in _SG3_CHECKED_ATTRIBUTES:
        if name not in record.state or not hasattr(module, name):
            continue
        stored, ours = record.state[name], getattr(module, name)
        same = (stored is None and ours is None) or (
            stored is not None and ours is not None
            and np.asarray(stored, dtype=np.float64).shape == np.asarray(ours, dtype=np.float64).shape
            and np.allclose(np.asarray(stored, dtype=np.float64), np.asarray(ours, dtype=np.float64), rtol=1e-9, atol=0))
        if not same:
            raise CheckpointError(f"{source}: {prefix}{name} is {stored!r} in the file but {ours!r} in the network "
                                  "built from its settings")
    for name, child in (record.state.get("_modules") or {}).items():
        if isinstance(child, PersistentRecord) and isinstance(getattr(module, name, None), torch.nn.Module):
            check_recorded_attributes(child, getattr(module, name), source, f"{prefix}{name}.")


def read_official_pickle(data: bytes, source: str) -> PersistentRecord:
    """The generator record (G_ema, else G) of an official network pickle."""
    try:
        obj = SafeUnpickler(io.BytesIO(data), OFFICIAL_PICKLE_GLOBALS, source).load()
    except pickle.UnpicklingError as exc:
        message = str(exc)  # our own refusals already name the file
        raise CheckpointError(message if message.startswith(source)
                              else f"{source}: truncated or corrupt pickle ({message})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{source}: truncated or corrupt pickle ({type(exc).__name__}: {exc})") from None

    vetted = set()
    for record in _records(obj):
        digest = hashlib.sha256(record.module_src.encode()).hexdigest()
        if digest not in vetted:
            vet_module_source(record.module_src, record.class_name, source)
            vetted.add(digest)

    if isinstance(obj, dict):
        generator = obj.get("G_ema", obj.get("G"))
    else:
        generator = obj
    if not isinstance(generator, PersistentRecord):
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{source}: pickle holds no official generator (found {keys})")
    if generator.class_name.rpartition(".")[2] != "Generator":
        raise CheckpointError(f"{source}: expected a Generator, found {generator.class_name}")
    return generator


def is_stylegan3(generator: PersistentRecord) -> bool:
    """StyleGAN3 (networks_stylegan3): a Fourier-feature SynthesisInput and the filtered_lrelu op.

    Official pickles store bare class names ('Generator'), so the architecture is told apart by
    the network's parts and the ops its source imports, not by a module path.
    """
    has_input_layer = any(r.class_name.rpartition(".")[2] == "SynthesisInput" for r in _records(generator))
    return has_input_layer or "filtered_lrelu" in generator.module_src


# ----------------------------------------------------------------------------------------------
# rosinality stylegan2-pytorch checkpoints.

def _rosinality_kwargs(sd: dict, source: str) -> dict:
    style_layers = sorted({int(m.group(1)) for k in sd if (m := re.match(r"style\.(\d+)\.weight$", k))})
    if not style_layers or "input.input" not in sd:
        raise CheckpointError(f"{source}: g_ema is not a rosinality StyleGAN2 state dict")
    num_convs = len({int(m.group(1)) for k in sd if (m := re.match(r"convs\.(\d+)\.conv\.weight$", k))})
    img_resolution = 4 * 2 ** (num_convs // 2)
    w_dim = sd[f"style.{style_layers[0]}.weight"].shape[1]
    channels = {4: sd["input.input"].shape[1]}
    for i in range(0, num_convs, 2):
        channels[8 * 2 ** (i // 2)] = sd[f"convs.{i}.conv.weight"].shape[1]
    channel_max = max(channels.values())
    below_max = [res * ch for res, ch in channels.items() if ch < channel_max]
    channel_base = min(below_max) if below_max else channel_max * img_resolution
    if any(min(channel_base // res, channel_max) != ch for res, ch in channels.items()):
        raise CheckpointError(f"{source}: channel counts {channels} do not follow min(base // res, max)")
    img_channels = sd["to_rgb1.conv.weight"].shape[1]
    return dict(z_dim=w_dim, c_dim=0, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                mapping_kwargs=dict(num_layers=len(style_layers)),
                synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max))


def _rosinality_state_dict(sd: dict, num_blocks: int) -> dict[str, torch.Tensor]:
    """Rename rosinality tensors to official names (explicit table, shapes fixed up)."""
    out = {}

    def styled_conv(src: str, dst: str, noise_index: int) -> None:
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"].squeeze(0)             # [1,O,I,k,k] -> [O,I,k,k]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"].reshape([])  # [1] -> []
        out[f"{dst}.bias"] = sd[f"{src}.activate.bias"]
        out[f"{dst}.noise_const"] = sd[f"noises.noise_{noise_index}"].reshape(sd[f"noises.noise_{noise_index}"].shape[-2:])

    def to_rgb(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"].squeeze(0)
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].flatten()                       # [1,C,1,1] -> [C]

    layer = 0
    while f"style.{layer + 1}.weight" in sd:
        out[f"mapping.fc{layer}.weight"] = sd[f"style.{layer + 1}.weight"]
        out[f"mapping.fc{layer}.bias"] = sd[f"style.{layer + 1}.bias"]
        layer += 1
    out["synthesis.b4.const"] = sd["input.input"].squeeze(0)                   # [1,C,4,4] -> [C,4,4]
    styled_conv("conv1", "synthesis.b4.conv1", 0)
    to_rgb("to_rgb1", "synthesis.b4.torgb")
    for block in range(1, num_blocks):
        res = 4 * 2 ** block
        styled_conv(f"convs.{2 * block - 2}", f"synthesis.b{res}.conv0", 2 * block - 1)
        styled_conv(f"convs.{2 * block - 1}", f"synthesis.b{res}.conv1", 2 * block)
        to_rgb(f"to_rgbs.{block - 1}", f"synthesis.b{res}.torgb")
        # rosinality stores its FIR kernels pre-multiplied by up**2 = 4; ours are normalised.
        blur = sd.get(f"convs.{2 * block - 2}.conv.blur.kernel")
        if blur is not None:
            out[f"synthesis.b{res}.conv0.resample_filter"] = blur / blur.sum()
        upsample = sd.get(f"to_rgbs.{block - 1}.upsample.kernel")
        if upsample is not None:
            out[f"synthesis.b{res}.resample_filter"] = upsample / upsample.sum()
    return out


def read_rosinality(ckpt: dict, source: str) -> tuple[dict, dict]:
    sd = ckpt["g_ema"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{source}: 'g_ema' is not a state dict")
    kwargs = _rosinality_kwargs(sd, source)
    num_blocks = len(range(2, kwargs["img_resolution"].bit_length()))
    try:
        tensors = _rosinality_state_dict(sd, num_blocks)
    except KeyError as exc:
        raise CheckpointError(f"{source}: rosinality checkpoint lacks tensor {exc.args[0]!r}") from None
    if ckpt.get("latent_avg") is not None:
        tensors["mapping.w_avg"] = ckpt["latent_avg"].reshape(-1)
    return kwargs, tensors


# ----------------------------------------------------------------------------------------------
# Building, loading, saving.

def new_generator(kwargs: dict) -> Generator | StyleGAN3Generator:
    """A generator with fresh weights from constructor arguments: StyleGAN3 when they say
    network='stylegan3' (as a StyleGAN3 generator's init_kwargs do), StyleGAN2 otherwise."""
    if kwargs.get("network") == STYLEGAN3:
        return StyleGAN3Generator(**kwargs)
    return Generator(**kwargs)


def build_generator(kwargs: dict, tensors: dict[str, torch.Tensor], source: str,
                    optional: tuple[str, ...] = ()) -> Generator | StyleGAN3Generator:
    """Construct our Generator and load tensors by name, checking every name and shape.

    optional: suffixes of buffers that may be absent (then the constructor's value is kept).
    """
    try:
        G = new_generator(kwargs)
    except (TypeError, AssertionError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{source}: cannot build a generator from {kwargs} ({exc})") from None
    expected = G.state_dict()
    for name, ref in expected.items():
        if name not in tensors:
            if name.endswith(optional):
                continue
            raise CheckpointError(f"{source}: missing tensor '{name}'")
        tensor = tensors[name]
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{source}: '{name}' is a {type(tensor).__name__}, not a tensor")
        if tuple(tensor.shape) != tuple(ref.shape):
            raise CheckpointError(f"{source}: tensor '{name}' has shape {list(tensor.shape)}, "
                                  f"the network expects {list(ref.shape)}")
        if not tensor.is_floating_point():
            raise CheckpointError(f"{source}: tensor '{name}' has dtype {tensor.dtype}, expected floating point")
    unexpected = [name for name in tensors if name not in expected]
    if unexpected:
        raise CheckpointError(f"{source}: unexpected tensor '{unexpected[0]}' (the network has no such parameter)")
    with torch.no_grad():
        for name, ref in expected.items():
            if name in tensors:
                ref.copy_(tensors[name].to(torch.float32))
    bad = [name for name, t in expected.items() if not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"{source}: tensor '{bad[0]}' contains NaN or inf")
    return G.eval().requires_grad_(False)


def read_torch_file(path: Path, source: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return load_weights_only(path, safe_globals=[argparse.Namespace])
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{source}: refused while reading, nothing from it was run: {exc}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{source}: truncated or corrupt checkpoint ({first})") from None


def decoder_as_rosinality(ckpt: Any) -> Any:
    """An e4e / pSp checkpoint's generator as a rosinality checkpoint; other files unchanged.

    Their `state_dict` holds the generator as `decoder.*` (a rosinality StyleGAN2) and `latent_avg`
    the W average repeated per W+ vector ([num_ws, w_dim]; [w_dim] in some pSp files).
    """
    if not isinstance(ckpt, dict) or "g_ema" in ckpt or not isinstance(ckpt.get("state_dict"), dict):
        return ckpt
    decoder = {k[len("decoder."):]: v for k, v in ckpt["state_dict"].items() if str(k).startswith("decoder.")}
    if not decoder:
        return ckpt
    latent_avg = ckpt.get("latent_avg")
    if isinstance(latent_avg, torch.Tensor) and latent_avg.ndim == 2:
        # Rows differ only if the file is not what it says; then the average is estimated instead.
        latent_avg = latent_avg[0] if bool((latent_avg == latent_avg[:1]).all()) else None
    return {"g_ema": decoder, "latent_avg": latent_avg if isinstance(latent_avg, torch.Tensor) else None}


def _w_avg_from_samples(G: Generator, num_samples: int = 10_000, seed: int = 0) -> torch.Tensor:
    z = torch.randn([num_samples, G.z_dim], generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return G.mapping(z, None)[:, 0].mean(dim=0)


def url_cache_path(url: str) -> Path:
    """Where the download of `url` is cached (a readable name plus a hash of the whole URL)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", url.rstrip("/").split("/")[-1].split("?")[0]) or "checkpoint"
    return cache_dir() / "checkpoints" / f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"


def local_checkpoint(path_or_url: str) -> Path:
    """A local file for a path, or for a URL the cached download (cache first, then fetch)."""
    if not is_url(path_or_url):
        return Path(path_or_url).expanduser()
    cached = url_cache_path(path_or_url)
    if cached.is_file():
        return cached
    try:
        return download(path_or_url, cached)
    except OSError as exc:
        raise CheckpointError(f"{path_or_url}: not cached and the download failed ({exc}); "
                              f"download it elsewhere and place it at {cached}") from None


# How a torch.save file in the format before the zip one (torch < 1.6, or _use_new_zipfile_serialization=False)
# starts: the pickled magic number; the rest is read by torch.load, not as a network pickle.
_TORCH_LEGACY_HEAD = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)


def load_generator(path_or_url: str, device: str | torch.device = "cpu") -> Generator | StyleGAN3Generator:
    """Load a generator from an official pickle, a rosinality checkpoint or pti-lab's own file.

    The returned module is in eval mode with requires_grad False on every parameter.
    """
    path = local_checkpoint(str(path_or_url))
    source = str(path_or_url)
    if not path.is_file():
        raise CheckpointError(f"{source}: no such file")
    with open(path, "rb") as f:
        head = f.read(len(_TORCH_LEGACY_HEAD))
    if not head:
        raise CheckpointError(f"{source}: file is empty")

    if zipfile.is_zipfile(path) or head == _TORCH_LEGACY_HEAD:
        ckpt = decoder_as_rosinality(read_torch_file(path, source))
        if isinstance(ckpt, dict) and ckpt.get("format") == OWN_FORMAT:
            if ckpt.get("version") != OWN_FORMAT_VERSION:
                raise CheckpointError(f"{source}: pti-lab generator format version {ckpt.get('version')} "
                                      f"is not supported (this pti-lab reads version {OWN_FORMAT_VERSION})")
            G = build_generator(ckpt["init_kwargs"], ckpt["state_dict"], source)
        elif isinstance(ckpt, dict) and "g_ema" in ckpt:
            kwargs, tensors = read_rosinality(ckpt, source)
            G = build_generator(kwargs, tensors, source, optional=("resample_filter", "w_avg"))
            if "mapping.w_avg" not in tensors:
                log.warning("%s: no latent_avg; estimating W average from 10,000 mapped samples", source)
                G.mapping.w_avg.copy_(_w_avg_from_samples(G))
        else:
            keys = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
            raise CheckpointError(f"{source}: not a generator checkpoint (found {keys})")
    elif head[:1] == b"\x80":  # pickle protocol >= 2: official network pickle
        G = _load_official(path, source)
    else:
        raise CheckpointError(f"{source}: not a checkpoint (unrecognised file format, starts with {head!r})")
    return G.to(device)


def _load_official(path: Path, source: str) -> Generator | StyleGAN3Generator:
    record = read_official_pickle(path.read_bytes(), source)
    try:
        tensors = record_state_dict(record)
    except CheckpointError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    if not is_stylegan3(record):
        return build_generator(generator_kwargs_from_record(record, source), tensors, source)
    G = build_generator(stylegan3_kwargs_from_record(record, source), tensors, source)
    check_recorded_attributes(record, G, source)
    return G


def save_generator(G: Generator, path: str | os.PathLike) -> Path:
    """Write G in pti-lab's own format (constructor arguments + state dict), atomically."""
    path = Path(path)
    payload = {"format": OWN_FORMAT, "version": OWN_FORMAT_VERSION, "init_kwargs": G.init_kwargs,
               "state_dict": {k: v.detach().cpu().clone() for k, v in G.state_dict().items()}}
    return save_torch(payload, path)
