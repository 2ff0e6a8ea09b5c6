"""The pSp and e4e encoders (image -> W+), compatible with the official checkpoints.

    from pti_lab.models import load_encoder
    encoder = load_encoder("e4e_ffhq_encode.pt")   # official e4e / pSp file, or one of ours
    encoder.check_generator(G)                      # same num_ws and w_dim as the generator
    ws = encoder(images)                            # [N,3,H,W] in [-1,1] -> [N, num_ws, w_dim]

Architectures of eladrich/pixel2style2pixel (`GradualStyleEncoder`) and omertov/encoder4editing
(`Encoder4Editing`): an IR-SE-50 backbone, a feature pyramid over the last three stages, and one
"map2style" block (`GradualStyleBlock`: stride-2 convs down to 1x1, then an equalised linear layer)
per W+ vector: vectors 0-2 from the coarsest features, 3-6 from the middle ones, the rest from the
finest. pSp predicts every vector; e4e predicts one w and per-layer offsets from it. Module names
follow the official code, so an official `state_dict` with its `encoder.` prefix removed loads with
`strict=True`.

Official files are `torch.save`d dicts: `state_dict` (`encoder.*`, and `decoder.*`: a rosinality
StyleGAN2, which `load_generator` reads), `latent_avg` and `opts` (the training options as a dict).
They are read with `torch.load(weights_only=True)`: nothing in a file runs. Our own small encoders
use the same layout and keep their size knobs under `opts['pti_lab']`.
"""

import math
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pti_lab.atomic import save_torch
from pti_lab.errors import BadInputError, CheckpointError
from pti_lab.models import ir_se
from pti_lab.models.checkpoints import local_checkpoint, read_torch_file
from pti_lab.models.stylegan2 import FullyConnectedLayer

COARSE_END = 3  # W+ vectors [0, 3) come from the coarsest (last-stage) features
MIDDLE_END = 7  # vectors [3, 7) from the middle pyramid level, the rest from the finest
OFFICIAL_INPUT_SIZE = 256  # official inference resizes every input to 256x256 (cars: 192x256)
OWN_OPTS_KEY = "pti_lab"   # opts entry holding the size knobs of our own encoders
KINDS = {"GradualStyleEncoder": "psp", "Encoder4Editing": "e4e"}  # opts['encoder_type'] -> kind
UNSUPPORTED_TYPES = {"BackboneEncoderUsingLastLayerIntoW", "BackboneEncoderUsingLastLayerIntoWPlus",
                     "SingleStyleCodeEncoder"}


def upsample_add(coarse: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """Feature-pyramid merge: bilinear (align_corners=True, as official) upsampling, then add."""
    return F.interpolate(coarse, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral


def resize_to_input(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize [N,C,H,W] images to size (H, W) as official inference does; same size: untouched.

    Official inference resizes the PIL image to 256x256 with torchvision's Resize, i.e. PIL's
    bilinear filter, which widens to an antialiasing triangle filter when shrinking. This is
    F.interpolate(mode='bilinear', align_corners=False, antialias=True), the same filter on float
    pixels; PIL also rounds to 8 bits after each of its two passes, so results differ from the
    official pipeline by up to one 8-bit level (measured: at most 1.0, mean 0.3 levels).
    """
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


def num_ws_of(resolution: int) -> int:
    """W+ vectors of a StyleGAN2 generator of this resolution (2 per block, minus one at 4x4)."""
    return 2 * int(math.log2(resolution)) - 2


class GradualStyleBlock(nn.Module):
    """map2style: stride-2 3x3 convs with leaky ReLU (slope 0.01) down to 1x1, then a linear layer."""

    def __init__(
        self,
        in_channels: int,    # channels of the pyramid level read
        channels: int,       # width of the convs (official: 512)
        out_features: int,   # output width: the generator's w_dim (official: 512)
        num_pools: int,      # number of stride-2 convs (official: log2 of the level's size at 256 px)
    ):
        super().__init__()
        modules = []
        for i in range(num_pools):
            modules += [nn.Conv2d(in_channels if i == 0 else channels, channels, kernel_size=3, stride=2, padding=1),
                        nn.LeakyReLU()]
        self.convs = nn.Sequential(*modules)
        self.linear = FullyConnectedLayer(channels, out_features)  # the official EqualLinear, lr_mul 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,C,H,W] -> [N, out_features]
        x = self.convs(x)
        # Flattening (not the official view(-1, C)) makes a level that did not reach 1x1 an error.
        return self.linear(x.reshape(x.shape[0], -1))


class GradualStyleEncoder(nn.Module):
    """pSp's encoder: every W+ vector predicted from its pyramid level."""

    def __init__(
        self,
        num_ws: int,                              # W+ vectors predicted: 2*log2(generator resolution)-2
        num_layers: int = 50,                     # IR-SE depth: 50, 100 or 152 (official files: 50)
        input_nc: int = 3,                        # input image channels
        w_dim: int = 512,                         # width of each W+ vector (the generator's w_dim)
        widths: Sequence[int] = ir_se.STAGE_WIDTHS,  # output channels of the four backbone stages
        units: Optional[Sequence[int]] = None,    # units per stage; None: the official ones of num_layers
        style_channels: Optional[int] = None,     # conv width of the map2style blocks; None: w_dim
        input_size: int | Sequence[int] = OFFICIAL_INPUT_SIZE,  # image size seen (int or (H, W))
    ):
        super().__init__()
        if units is None:
            if num_layers not in ir_se.UNITS_PER_STAGE:
                raise ValueError(f"num_layers must be one of {sorted(ir_se.UNITS_PER_STAGE)}, got {num_layers}")
            units = ir_se.UNITS_PER_STAGE[num_layers]
        if len(widths) != 4:
            raise ValueError(f"widths must list the 4 stage widths, got {list(widths)}")
        height, width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        if min(height, width) < 32:
            raise ValueError(f"input_size {input_size} is too small: the finest style level needs 32 px or more")
        self.num_ws = num_ws
        self.w_dim = w_dim
        self.input_size = (int(height), int(width))
        self.init_kwargs = dict(num_ws=num_ws, num_layers=num_layers, input_nc=input_nc, w_dim=w_dim,
                                widths=[int(w) for w in widths], units=[int(u) for u in units],
                                style_channels=style_channels, input_size=list(self.input_size))

        self.input_layer = ir_se.input_layer(input_nc, widths[0])
        self.body = ir_se.body(widths, units, stem_width=widths[0])
        # Pyramid taps: the ends of stages 2, 3, 4 (body.6, body.20, body.23 in IR-SE-50; the
        # official code hard-codes those indices, which are stage ends only for depth 50).
        self.taps = ir_se.stage_ends(units)[1:]
        # Sizes of the levels are input/4, /8, /16; each map2style block halves its level to 1x1
        # (official at 256 px: 6, 5 and 4 convs, written there as GradualStyleBlock(512, 512, 64/32/16)).
        longest = max(self.input_size)
        pools = [max(1, math.ceil(math.log2(longest / div))) for div in (16, 8, 4)]
        channels = style_channels or w_dim
        self.styles = nn.ModuleList()
        for i in range(num_ws):
            level = 0 if i < COARSE_END else 1 if i < MIDDLE_END else 2
            self.styles.append(GradualStyleBlock(widths[3], channels, w_dim, pools[level]))
        self.latlayer1 = nn.Conv2d(widths[2], widths[3], kernel_size=1, stride=1, padding=0)
        self.latlayer2 = nn.Conv2d(widths[1], widths[3], kernel_size=1, stride=1, padding=0)

    def pyramid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Backbone features at the ends of stages 2, 3, 4: c1 [N,w1,H/4,W/4], c2 [/8], c3 [/16]."""
        x = self.input_layer(x)
        features = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                features.append(x)
        return features[0], features[1], features[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,input_nc,H,W] -> [N, num_ws, w_dim]
        c1, c2, c3 = self.pyramid(x)
        p2 = upsample_add(c3, self.latlayer1(c2))
        p1 = upsample_add(p2, self.latlayer2(c1))
        levels = (c3, p2, p1)
        codes = [style(levels[0 if i < COARSE_END else 1 if i < MIDDLE_END else 2])
                 for i, style in enumerate(self.styles)]
        return torch.stack(codes, dim=1)


class Encoder4Editing(GradualStyleEncoder):
    """e4e's encoder: one w from the coarsest features, plus one offset per further W+ vector.

    The official training unlocks the offsets one by one (progressive stages); at inference all are
    used. `progressive_stage` is the number of offsets applied (None: all, the official Inference stage).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.progressive_stage: Optional[int] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,input_nc,H,W] -> [N, num_ws, w_dim]
        c1, c2, c3 = self.pyramid(x)
        w0 = self.styles[0](c3)  # [N, w_dim]
        stage = self.num_ws if self.progressive_stage is None else self.progressive_stage
        features, p2 = c3, None
        codes = [w0]
        for i in range(1, self.num_ws):
            if i > stage:
                codes.append(w0)
                continue
            if i == COARSE_END:
                features = p2 = upsample_add(c3, self.latlayer1(c2))
            elif i == MIDDLE_END:
                features = upsample_add(p2, self.latlayer2(c1))
            codes.append(w0 + self.styles[i](features))
        return torch.stack(codes, dim=1)


class EncoderNet(nn.Module):
    """An encoder with its input resize and the average latent it predicts offsets from.

    forward(images [N,C,H,W] in [-1,1]) -> ws [N, num_ws, w_dim] = encoder(resized) + latent_avg,
    which is the official `start_from_latent_avg` (a file trained without it has latent_avg = 0).

    Inputs of another size are resized with `resize_to_input`, as official inference does.
    """

    def __init__(
        self,
        encoder: GradualStyleEncoder,            # a GradualStyleEncoder (pSp) or Encoder4Editing (e4e)
        latent_avg: Optional[torch.Tensor] = None,  # [num_ws, w_dim] or [w_dim]; None: zeros
        source: str = "",                        # file it was read from (named in errors)
        opts: Optional[dict] = None,             # the file's training options (kept, never interpreted)
    ):
        super().__init__()
        self.encoder = encoder
        self.kind = "e4e" if isinstance(encoder, Encoder4Editing) else "psp"
        self.num_ws = encoder.num_ws
        self.w_dim = encoder.w_dim
        self.input_size = encoder.input_size  # (H, W)
        self.source = source or f"<{self.kind} encoder>"
        self.opts = dict(opts or {})
        avg = torch.zeros([self.num_ws, self.w_dim]) if latent_avg is None else latent_avg.detach().float()
        self.register_buffer("latent_avg", avg.expand(self.num_ws, self.w_dim).clone())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        channels = self.encoder.input_layer[0].in_channels
        if images.ndim != 4 or images.shape[1] != channels:
            raise BadInputError(f"{self.source}: expected images [N, {channels}, H, W], got {list(images.shape)}")
        return self.encoder(resize_to_input(images.to(self.latent_avg.dtype), self.input_size)) + self.latent_avg

    def check_generator(self, G: nn.Module, generator_source: str = "the generator") -> None:
        """One-line error unless G takes the ws this encoder predicts (num_ws and w_dim)."""
        if (G.num_ws, G.w_dim) != (self.num_ws, self.w_dim):
            raise BadInputError(
                f"{self.source}: the encoder predicts num_ws={self.num_ws} (w_dim {self.w_dim}), but "
                f"{generator_source} takes num_ws={G.num_ws} (w_dim {G.w_dim}, {G.img_resolution} px); "
                "use an encoder trained for this generator")


# ----------------------------------------------------------------------------------------------
# Files.

def encoder_class_and_kwargs(opts: dict, source: str) -> tuple[type, dict]:
    """Encoder class and constructor arguments from a checkpoint's opts."""
    encoder_type = opts.get("encoder_type")
    if encoder_type in UNSUPPORTED_TYPES:
        raise CheckpointError(f"{source}: encoder_type {encoder_type!r} is not supported "
                              f"(only {' and '.join(KINDS)})")
    if encoder_type not in KINDS:
        raise CheckpointError(f"{source}: opts['encoder_type'] is {encoder_type!r}; expected one of {sorted(KINDS)}")
    if opts.get("input_nc", 3) != 3 or opts.get("label_nc", 0) not in (0, None):
        raise CheckpointError(f"{source}: not an image encoder (input_nc={opts.get('input_nc')}, "
                              f"label_nc={opts.get('label_nc')}: a pSp for sketches or segmentation maps)")
    # e4e's options call the generator size stylegan_size, pSp's output_size; both default to 1024.
    sizes = {key: opts[key] for key in ("stylegan_size", "output_size") if opts.get(key) is not None}
    if len(set(sizes.values())) > 1:
        raise CheckpointError(f"{source}: opts disagree on the generator size ({sizes})")
    size = next(iter(sizes.values()), 1024)
    if not isinstance(size, int) or size < 4 or size & (size - 1):
        raise CheckpointError(f"{source}: generator size {size!r} in opts is not a power of two >= 4")
    kwargs: dict[str, Any] = dict(num_ws=num_ws_of(size))
    if "cars_" in str(opts.get("dataset_type", "")):
        kwargs["input_size"] = (192, 256)  # e4e's cars transforms: Resize((192, 256))
    own = opts.get(OWN_OPTS_KEY)
    if own is not None:
        allowed = {"num_layers", "w_dim", "widths", "units", "style_channels", "input_size"}
        if not isinstance(own, dict) or set(own) - allowed:
            raise CheckpointError(f"{source}: opts[{OWN_OPTS_KEY!r}] must be a dict with keys among {sorted(allowed)}")
        kwargs.update(own)
    return (Encoder4Editing if KINDS[encoder_type] == "e4e" else GradualStyleEncoder), kwargs


def _list_names(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _load_encoder_tensors(encoder: nn.Module, tensors: dict, source: str) -> None:
    """Copy tensors into encoder by name; every missing, mis-shaped or unexpected one in one error."""
    expected = encoder.state_dict()
    missing = [name for name in expected if name not in tensors]
    unexpected = [name for name in tensors if name not in expected]
    wrong = []
    for name, ref in expected.items():
        value = tensors.get(name)
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            wrong.append(f"{name} (a {type(value).__name__})")
        elif tuple(value.shape) != tuple(ref.shape):
            wrong.append(f"{name} {list(value.shape)} (expected {list(ref.shape)})")
        elif value.is_floating_point() != ref.is_floating_point():
            wrong.append(f"{name} dtype {value.dtype}")
    problems = [f"{len(names)} {what}: {_list_names(names)}"
                for names, what in ((missing, "missing"), (wrong, "mis-shaped"), (unexpected, "unexpected"))
                if names]
    if problems:
        raise CheckpointError(f"{source}: encoder tensors do not fit the {type(encoder).__name__} its opts "
                              f"describe: {'; '.join(problems)}")
    with torch.no_grad():
        for name, ref in expected.items():
            ref.copy_(tensors[name].to(ref.dtype))  # fp16 files become fp32
    bad = [name for name, t in expected.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"{source}: encoder tensor(s) with NaN or inf: {_list_names(bad)}")


def _latent_avg(ckpt: dict, opts: dict, num_ws: int, w_dim: int, source: str) -> Optional[torch.Tensor]:
    # Official training saves latent_avg exactly when start_from_latent_avg is set; older files
    # without the option are read the same way.
    latent_avg = ckpt.get("latent_avg")
    if not opts.get("start_from_latent_avg", latent_avg is not None):
        return None
    if latent_avg is None:
        raise CheckpointError(f"{source}: opts set start_from_latent_avg but the file has no latent_avg")
    if not isinstance(latent_avg, torch.Tensor) or not latent_avg.is_floating_point() or \
            tuple(latent_avg.shape) not in ((num_ws, w_dim), (1, w_dim), (w_dim,)):
        shape = list(latent_avg.shape) if isinstance(latent_avg, torch.Tensor) else type(latent_avg).__name__
        raise CheckpointError(f"{source}: latent_avg is {shape}, expected [{num_ws}, {w_dim}] or [{w_dim}]")
    if not torch.isfinite(latent_avg).all():
        raise CheckpointError(f"{source}: latent_avg contains NaN or inf")
    return latent_avg.float()


def load_encoder(path_or_url: str, device: str | torch.device = "cpu") -> EncoderNet:
    """Read an official e4e / pSp checkpoint (or one of ours) without running anything from it.

    URLs are downloaded once into pti-lab's checkpoint cache. The returned EncoderNet is in eval
    mode (BatchNorm uses its running statistics) with requires_grad False everywhere.
    """
    source = str(path_or_url)
    path = local_checkpoint(source)
    if not path.is_file():
        raise CheckpointError(f"{source}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{source}: file is empty")
    ckpt = read_torch_file(path, source)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict) or "opts" not in ckpt:
        keys = sorted(map(str, ckpt))[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{source}: not an e4e/pSp checkpoint (expected 'state_dict' and 'opts', found {keys})")
    opts = ckpt["opts"]
    opts = vars(opts) if hasattr(opts, "__dict__") and not isinstance(opts, dict) else opts
    if not isinstance(opts, dict):
        raise CheckpointError(f"{source}: opts is a {type(opts).__name__}, expected a dict")
    cls, kwargs = encoder_class_and_kwargs(opts, source)
    try:
        encoder = cls(**kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{source}: cannot build the encoder its opts describe ({exc})") from None
    prefix = "encoder."
    tensors = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if str(k).startswith(prefix)}
    if not tensors:
        raise CheckpointError(f"{source}: state_dict holds no 'encoder.*' tensors")
    _load_encoder_tensors(encoder, tensors, source)
    latent_avg = _latent_avg(ckpt, opts, encoder.num_ws, encoder.w_dim, source)
    net = EncoderNet(encoder, latent_avg, source=source, opts=opts)
    return net.eval().requires_grad_(False).to(device)


def save_encoder(net: EncoderNet, path: str | Path, half: bool = False,
                 generator_resolution: Optional[int] = None, extra_opts: Optional[dict] = None) -> Path:
    """Write net in the official layout (state_dict 'encoder.*', latent_avg, opts), atomically.

    half: store floating tensors as fp16 (load_encoder reads them back as fp32).
    generator_resolution: the generator's size for opts['stylegan_size']; None: from num_ws.
    extra_opts: further plain-data opts entries to record (training command, seed, ...).
    """
    resolution = generator_resolution or 2 ** ((net.num_ws + 2) // 2)
    if num_ws_of(resolution) != net.num_ws:
        raise BadInputError(f"{path}: num_ws={net.num_ws} is not that of a {resolution} px StyleGAN2")
    cast = (lambda t: t.half() if t.is_floating_point() else t) if half else (lambda t: t)
    state = {f"encoder.{k}": cast(v.detach().cpu().clone()) for k, v in net.encoder.state_dict().items()}
    arch = {k: v for k, v in net.encoder.init_kwargs.items() if k not in ("num_ws", "input_nc")}
    opts = {"encoder_type": "Encoder4Editing" if net.kind == "e4e" else "GradualStyleEncoder",
            "stylegan_size": resolution, "start_from_latent_avg": True, "input_nc": 3, OWN_OPTS_KEY: arch}
    opts.update({k: v for k, v in (extra_opts or {}).items() if k not in opts})
    return save_torch({"state_dict": state, "latent_avg": cast(net.latent_avg.detach().cpu().clone()),
                       "opts": opts}, Path(path))
