"""IR-SE50: the ArcFace face-recognition backbone behind the ID loss and ID metrics of pSp, e4e, PTI.

The network is the InsightFace "IR-SE" ResNet-50 variant in the layout pSp ships as
`model_ir_se50.pth` (pSp's `Backbone(input_size=112, num_layers=50, mode='ir_se')`). Module and
parameter names here equal the checkpoint's state-dict names, so the file loads without renaming:

    input_layer.{0: conv, 1: bn, 2: prelu}
    body.{0..23}.shortcut_layer.{0: conv 1x1, 1: bn}     (only units that change the width)
    body.{0..23}.res_layer.{0: bn, 1: conv, 2: prelu, 3: conv, 4: bn, 5: squeeze-excite fc1/fc2}
    output_layer.{0: bn2d, 3: linear 25088->512, 4: bn1d}

Input: [N, 3, 112, 112] images in [-1, 1] (pSp feeds its [-1, 1] images unchanged);
output: [N, 512] L2-normalised embeddings.
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pti_lab.errors import CheckpointError
from pti_lab.safe_pickle import load_weights_only

INPUT_SIZE = 112
EMBEDDING_DIM = 512

# (in_channels, out_channels, units) per stage; the first unit of every stage halves the resolution.
IR_SE50_STAGES = [(64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3)]


class SqueezeExcite(nn.Module):
    """Channel gating: global average -> 1x1 conv down -> ReLU -> 1x1 conv up -> sigmoid -> scale."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))  # [N, C, 1, 1]
        return x * gate


class IRSEUnit(nn.Module):
    """Pre-activation residual unit: BN -> conv3x3 -> PReLU -> conv3x3 (stride) -> BN -> SE, plus shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if in_channels == out_channels:
            self.shortcut_layer = nn.MaxPool2d(kernel_size=1, stride=stride)  # plain subsampling
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False),
            nn.PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            SqueezeExcite(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRSE50(nn.Module):
    """ArcFace IR-SE50 for 112 px face crops; forward returns L2-normalised 512-d embeddings."""

    def __init__(self, dropout: float = 0.6):  # pSp's IDLoss uses 0.6; inactive in eval mode
        super().__init__()
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.PReLU(64),
        )
        units = []
        for in_channels, out_channels, num_units in IR_SE50_STAGES:
            units.append(IRSEUnit(in_channels, out_channels, stride=2))
            units += [IRSEUnit(out_channels, out_channels, stride=1) for _ in range(num_units - 1)]
        self.body = nn.Sequential(*units)
        final_side = INPUT_SIZE // 2 ** len(IR_SE50_STAGES)  # 7
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(512 * final_side * final_side, EMBEDDING_DIM),
            nn.BatchNorm1d(EMBEDDING_DIM),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1:] == (3, INPUT_SIZE, INPUT_SIZE), x.shape  # [NCHW]
        x = self.body(self.input_layer(x))  # [N, 512, 7, 7]
        return F.normalize(self.output_layer(x), dim=1)  # [N, 512]


def load_ir_se50(path: str | Path) -> IRSE50:
    """Build IR-SE50 in eval mode from a `model_ir_se50.pth` state dict, checking every key and shape.

    BatchNorm `num_batches_tracked` counters may be absent (checkpoints saved before PyTorch 0.4.1
    lack them; they do not affect inference). Anything else missing, extra or of the wrong shape is
    a CheckpointError naming the file and the first offending key.
    """
    path = Path(path)
    try:
        state = load_weights_only(path)
    except Exception as exc:  # torch raises many types for missing, unreadable or unsafe files
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: cannot read IR-SE50 weights: {first_line}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path}: expected a state dict of tensors (model_ir_se50.pth), got {type(state).__name__}"
        )
    net = IRSE50()
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise CheckpointError(
            f"{path}: not an IR-SE50 state dict: missing key {missing[0]} ({len(missing)} missing in all)"
        )
    if unexpected:
        raise CheckpointError(
            f"{path}: not an IR-SE50 state dict: unexpected key {unexpected[0]} ({len(unexpected)} unexpected in all)"
        )
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{path}: IR-SE50 key {key} has shape {list(value.shape)}, expected {list(expected[key].shape)}"
            )
    net.load_state_dict({**expected, **state})
    return net.eval().requires_grad_(False)
