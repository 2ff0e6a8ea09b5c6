"""The synthfaces predictor: one small CNN that reads a face and returns its editable attributes and
an identity embedding. It is the domain's attribute scorer and its ID network (`identity=synthfaces`).

    predictor = AttributePredictor()                 # the shipped weights, checked against the manifest
    scores = predictor.predict(images)               # {'smile': [N], 'yaw': [N], ...} in field units
    identity = SynthfacesIdentity()
    embeddings, valid, reasons = identity.embed(images)   # [N, 128], L2-normalised

Images are float [N, 3, S, S] in [-1, 1]; any square size works (the network sees 64 px: larger
images are area-averaged down, smaller ones resized bilinearly). Both wrappers are frozen and
differentiable in their inputs, so the embedding can serve as an ID loss and the scores as guidance.

Attributes are *regressed*: `predict` returns each editable attribute (params.ATTRIBUTES: smile,
mouth_open, eyes_open, wrinkles, grey_hair, yaw) in its field's units and range (smile and yaw in
[-1, 1], the rest in [0, 1]; see params.FIELDS). Where a yes/no answer is wanted ("is smiling"),
compare with THRESHOLDS; the held-out accuracies reported by pti_lab.train.synthfaces_predictor use exactly these.

The identity embedding is trained with a supervised contrastive loss over groups of renders that
share every identity field (params.IDENTITY) but differ in attributes, background and extras, plus
regression of the identity fields as an auxiliary task. The out-of-domain extras (glasses, hats,
face paint, make-up, earrings) are switched on in half of the predictor's training renders, as an
augmentation that makes the embedding ignore them; they are still never used to train the generator.
Training: `python -m pti_lab.train.synthfaces_predictor`.
"""

from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from pti_lab.atomic import save_torch
from pti_lab.errors import BadInputError, CheckpointError, WeightsNotFoundError
from pti_lab.imaging import check_images
from pti_lab.models.identity import IdentityNetwork
from pti_lab.safe_pickle import load_weights_only
from pti_lab.synthfaces import shipped
from pti_lab.synthfaces.params import ATTRIBUTES, FIELDS, IDENTITY, INDEX

SIZE = 64  # the network's input side in pixels
PREDICTOR_FILE = "predictor.pt"  # the shipped file's name in pti_lab/synthfaces/weights

# predict(images)[name] >= THRESHOLDS[name] means the attribute is present:
THRESHOLDS = {
    "smile": 0.3,        # smiling (below: neutral or frowning)
    "mouth_open": 0.5,   # lips visibly parted (the renderer opens the mouth from 0.35)
    "eyes_open": 0.15,   # eyes open (below: closed or nearly so)
    "wrinkles": 0.5,     # visibly wrinkled
    "grey_hair": 0.5,    # mostly grey hair
    "yaw": 0.0,          # head turned to the viewer's right (below: to the left)
}

# Field statistics used to standardise regression targets (the sampler's exact mean and std).
ATTRIBUTE_MEAN = torch.tensor([FIELDS[INDEX[name]].mean for name in ATTRIBUTES])
ATTRIBUTE_STD = torch.tensor([FIELDS[INDEX[name]].std for name in ATTRIBUTES])
ATTRIBUTE_LOW = torch.tensor([FIELDS[INDEX[name]].lo for name in ATTRIBUTES])
ATTRIBUTE_HIGH = torch.tensor([FIELDS[INDEX[name]].hi for name in ATTRIBUTES])

# ----------------------------------------------------------------------------
# Networks.


class ConvBlock(nn.Module):
    """Halve the resolution with a strided 3x3 conv, then one residual 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.down = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
        self.conv = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return F.relu(x + self.conv(x))


class ConvEncoder(nn.Module):
    """[N, 3, 64, 64] in [-1, 1] -> [N, feature_dim] features (also the tiny CLIP's image tower).

    A stem at 64 px and one ConvBlock per entry of `channels` down to 4 x 4; the last feature map
    is flattened rather than pooled, since *where* something is on an aligned face matters (yaw,
    the mouth corners)."""

    def __init__(
        self,
        channels: tuple = (32, 64, 128, 256),  # output channels of the stem's block and each later block
        feature_dim: int = 256,                # length of the output feature vector
    ):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True))
        blocks = [ConvBlock(channels[0], channels[0])]
        blocks += [ConvBlock(a, b) for a, b in zip(channels[:-1], channels[1:])]
        self.blocks = nn.Sequential(*blocks)
        side = SIZE // 2 ** len(blocks)  # 4
        self.reduce = nn.Sequential(nn.Conv2d(channels[-1], 64, 1), nn.ReLU(inplace=True))
        self.project = nn.Linear(64 * side * side, feature_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(images))        # [N, C, 4, 4]
        return F.relu(self.project(self.reduce(x).flatten(1)))  # [N, feature_dim]


class PredictorNetwork(nn.Module):
    """ConvEncoder + three linear heads, all outputs standardised (zero mean, unit variance under the
    sampler): attributes [N, 6], unnormalised identity embedding [N, embedding_dim], identity fields
    [N, 29] (an auxiliary target that gives the embedding a head start)."""

    def __init__(
        self,
        channels: tuple = (32, 64, 128, 256),  # ConvEncoder widths
        feature_dim: int = 256,                # ConvEncoder output length
        embedding_dim: int = 128,              # identity embedding length
    ):
        super().__init__()
        self.config = dict(channels=list(channels), feature_dim=feature_dim, embedding_dim=embedding_dim)
        self.encoder = ConvEncoder(tuple(channels), feature_dim)
        self.attributes = nn.Linear(feature_dim, len(ATTRIBUTES))
        self.embedding = nn.Linear(feature_dim, embedding_dim)
        self.traits = nn.Linear(feature_dim, len(IDENTITY))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.encoder(images)
        return self.attributes(features), self.embedding(features), self.traits(features)


# ----------------------------------------------------------------------------
# Weight files: a dict {'kind', 'config', 'state_dict', ...} read with torch.load(weights_only=True).


def save_weights(path: Path, kind: str, network: nn.Module, **extra) -> None:
    """Write `network` as fp16 tensors (floating point only; BatchNorm counters stay integers)."""
    state = {key: value.detach().cpu().half() if value.is_floating_point() else value.detach().cpu()
             for key, value in network.state_dict().items()}
    save_torch({"kind": kind, "config": network.config, "state_dict": state, **extra}, path)


def read_weights(path: Optional[str], filename: str, kind: str, trainer: str) -> dict:
    """Load a weight file written by `save_weights`. path None: the shipped `filename`, verified
    against the manifest (pti_lab.synthfaces.shipped). Errors name `trainer`, the module that writes it."""
    file = Path(path).expanduser() if path else shipped.path_of(filename)
    if not file.is_file():
        raise WeightsNotFoundError(f"synthfaces {kind} weights {file} do not exist (written by python -m {trainer})")
    try:
        data = load_weights_only(file)
    except Exception as exc:  # torch raises many types for truncated, corrupted or hostile files
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{file}: cannot read synthfaces {kind} weights ({first_line}); "
                              f"rebuild them with python -m {trainer}") from None
    if not isinstance(data, dict) or data.get("kind") != kind:
        found = data.get("kind") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{file}: not synthfaces {kind} weights (found {found!r}); "
                              f"rebuild them with python -m {trainer}")
    return data


def load_state(network: nn.Module, data: dict, file: str) -> nn.Module:
    """Copy a weight file's fp16 state into `network` (float32), frozen and in eval mode."""
    try:
        network.load_state_dict({key: value.float() if value.is_floating_point() else value
                                 for key, value in data["state_dict"].items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{file}: weights do not fit the network: {str(exc).splitlines()[0]}") from None
    return network.eval().requires_grad_(False)


def load_predictor(path: Optional[str] = None) -> PredictorNetwork:
    """The predictor network from `path` (None: the shipped weights), frozen, on the CPU."""
    data = read_weights(path, PREDICTOR_FILE, "predictor", "pti_lab.train.synthfaces_predictor")
    return load_state(PredictorNetwork(**data["config"]), data, path or PREDICTOR_FILE)


def network_input(images: torch.Tensor, where: str, device: torch.device) -> torch.Tensor:
    """Check [N, 3, S, S] images in [-1, 1] and bring them to SIZE px on `device`."""
    check_images(images, "images", where)
    if images.shape[2] != images.shape[3]:
        raise BadInputError(f"{where}: images are {list(images.shape)}; expected square aligned faces")
    images = images.to(device, torch.float32)
    if images.shape[-1] > SIZE:
        return F.adaptive_avg_pool2d(images, SIZE)
    if images.shape[-1] < SIZE:
        return F.interpolate(images, size=SIZE, mode="bilinear", align_corners=False)
    return images


def unstandardise_attributes(z: torch.Tensor) -> dict:
    """[N, 6] standardised network outputs -> {attribute: [N]} in field units, clipped to the field range."""
    values = z * ATTRIBUTE_STD.to(z) + ATTRIBUTE_MEAN.to(z)
    values = torch.maximum(torch.minimum(values, ATTRIBUTE_HIGH.to(z)), ATTRIBUTE_LOW.to(z))
    return {name: values[:, i] for i, name in enumerate(ATTRIBUTES)}


# ----------------------------------------------------------------------------
# Public wrappers.


class AttributePredictor(nn.Module):
    """Scores of the editable attributes of synthfaces images (see the module docstring)."""

    def __init__(
        self,
        weights: Optional[str] = None,  # predictor.pt; None = the shipped weights
    ):
        super().__init__()
        self.net = load_predictor(weights)
        self.attributes = tuple(ATTRIBUTES)  # the names predict() returns

    def predict(self, images: torch.Tensor) -> dict:
        """[N, 3, S, S] in [-1, 1] -> {attribute name: float tensor [N]} in the field's units and range:
        smile -1 frown .. 0 neutral .. 1 broad smile; yaw -1 left .. 1 right (about +-40 degrees);
        mouth_open, eyes_open, wrinkles, grey_hair 0 .. 1. Present where >= THRESHOLDS[name]."""
        attributes, _, _ = self.net(network_input(images, "AttributePredictor", next(self.net.parameters()).device))
        return unstandardise_attributes(attributes)


class SynthfacesIdentity(IdentityNetwork):
    """The synthfaces identity embedding (128-d, L2-normalised): cosine ~1 for the same face under any
    pose, expression, background and extras. Every image is valid (there is no face detector)."""

    embedding_dim = 128

    def __init__(
        self,
        weights: Optional[str] = None,  # predictor.pt; None = the shipped weights
    ):
        super().__init__()
        self.net = load_predictor(weights)
        self.embedding_dim = self.net.config["embedding_dim"]

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[Optional[str]]]:
        _, embeddings, _ = self.net(network_input(images, "SynthfacesIdentity", next(self.net.parameters()).device))
        valid = torch.ones(len(images), dtype=torch.bool, device=embeddings.device)
        return F.normalize(embeddings, dim=1), valid, [None] * len(images)
