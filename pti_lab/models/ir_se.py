"""IR-SE backbone (ResNet with improved residual units and squeeze-excitation), pure PyTorch.

The backbone of the pSp and e4e encoders (ArcFace's IR-SE-50 of InsightFace). Module and
parameter names follow the official encoders, so their state dicts load by name:

    input_layer.0.weight                         3x3 stem conv, then BatchNorm (.1) and PReLU (.2)
    body.{i}.shortcut_layer.{0,1}.*              1x1 conv + BatchNorm where the width changes
                                                 (a stride-s 1x1 max-pool, no parameters, elsewhere)
    body.{i}.res_layer.{0..4}.*                  BN, 3x3 conv, PReLU, 3x3 conv (stride s), BN
    body.{i}.res_layer.5.fc{1,2}.weight          squeeze-excitation (channel reduction 16)

The first unit of each of the four stages halves the resolution.
"""

from typing import Sequence

import torch
from torch import nn

# Units per stage of the official depths (InsightFace's get_blocks).
UNITS_PER_STAGE = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
STAGE_WIDTHS = (64, 128, 256, 512)  # output channels of the four stages
SE_REDUCTION = 16                   # squeeze-excitation bottleneck: channels // 16


class SEModule(nn.Module):
    """Squeeze-excitation: scale each channel by a gate computed from the global average."""

    def __init__(
        self,
        channels: int,   # feature channels gated
        reduction: int,  # bottleneck factor of the gate's hidden layer
    ):
        super().__init__()
        if channels // reduction < 1:
            raise ValueError(f"SE module: {channels} channels cannot be reduced by {reduction}")
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, padding=0, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, padding=0, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [NCHW] -> [NCHW]
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))  # [N,C,1,1]
        return x * gate


class BottleneckIRSE(nn.Module):
    """InsightFace's bottleneck_IR_SE unit: pre-activation residual branch with an SE gate."""

    def __init__(
        self,
        in_channels: int,   # input channels
        out_channels: int,  # output channels ("depth" in the official code)
        stride: int,        # spatial stride of the unit (2 on the first unit of a stage)
    ):
        super().__init__()
        if in_channels == out_channels:
            # A 1x1 max-pool with stride s is plain subsampling: the identity at stride 1.
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, (1, 1), stride, bias=False),
                nn.BatchNorm2d(out_channels))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, (3, 3), (1, 1), 1, bias=False),
            nn.PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            SEModule(out_channels, SE_REDUCTION))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,Cin,H,W] -> [N,Cout,H/s,W/s]
        return self.res_layer(x) + self.shortcut_layer(x)


def input_layer(input_nc: int, width: int) -> nn.Sequential:
    """The stem: 3x3 conv (no bias), BatchNorm, PReLU; full resolution."""
    return nn.Sequential(nn.Conv2d(input_nc, width, (3, 3), 1, 1, bias=False),
                         nn.BatchNorm2d(width),
                         nn.PReLU(width))


def body(widths: Sequence[int], units: Sequence[int], stem_width: int) -> nn.Sequential:
    """The units of all stages in one flat Sequential (official names body.0 ... body.K-1)."""
    if len(widths) != len(units) or any(u < 1 for u in units):
        raise ValueError(f"IR-SE body: widths {list(widths)} and units per stage {list(units)} must pair up, "
                         "at least one unit per stage")
    modules = []
    in_channels = stem_width
    for width, count in zip(widths, units):
        modules.append(BottleneckIRSE(in_channels, width, 2))
        modules += [BottleneckIRSE(width, width, 1) for _ in range(count - 1)]
        in_channels = width
    return nn.Sequential(*modules)


def stage_ends(units: Sequence[int]) -> list[int]:
    """Index in `body` of the last unit of each stage (6, 20, 23 for the last three of IR-SE-50)."""
    ends, total = [], 0
    for count in units:
        total += count
        ends.append(total - 1)
    return ends
