"""The dense BEV 2-D stages: mmdet3d's ``SECOND`` backbone and ``SECONDFPN`` neck (docs/model.md §3.3, §3.4).

Module and parameter names equal the checkpoint's ``pts_backbone.*`` and ``pts_neck.*`` keys.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

#: BatchNorm settings of both BEV stages (mmdet3d ``BN, eps=1e-3, momentum=0.01``).
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class Second(nn.Module):
    """SECOND: per stage one strided 3x3 conv then ``layer_num`` 3x3 convs, each with BN and ReLU.

    Returns one feature map per stage: [B,128,H,W] and [B,256,H/2,W/2] with the defaults.
    """

    def __init__(
        self,
        in_channels: int = 256,
        out_channels: Sequence[int] = (128, 256),
        layer_nums: Sequence[int] = (5, 5),
        layer_strides: Sequence[int] = (1, 2),
    ) -> None:
        super().__init__()
        if not len(out_channels) == len(layer_nums) == len(layer_strides):
            raise ValueError("out_channels, layer_nums and layer_strides must have the same length")
        blocks = []
        previous = in_channels
        for channels, num, stride in zip(out_channels, layer_nums, layer_strides):
            layers: list[nn.Module] = [
                nn.Conv2d(previous, channels, 3, stride=stride, padding=1, bias=False),
                _bn(channels),
                nn.ReLU(inplace=True),
            ]
            for _ in range(num):
                layers += [
                    nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                    _bn(channels),
                    nn.ReLU(inplace=True),
                ]
            blocks.append(nn.Sequential(*layers))
            previous = channels
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """BEV map [B, C_in, H, W] → the output of every stage, finest first."""
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return tuple(outs)


class SecondFpn(nn.Module):
    """SECONDFPN: brings every stage to the finest resolution and concatenates the channels.

    Upsample stride 1 is a 1x1 conv (``use_conv_for_no_stride``); stride s > 1 a transposed conv with
    kernel s and stride s. Each is bias-free and followed by BN and ReLU.
    """

    def __init__(
        self,
        in_channels: Sequence[int] = (128, 256),
        out_channels: Sequence[int] = (256, 256),
        upsample_strides: Sequence[int] = (1, 2),
    ) -> None:
        super().__init__()
        if not len(in_channels) == len(out_channels) == len(upsample_strides):
            raise ValueError("in_channels, out_channels and upsample_strides must have the same length")
        deblocks = []
        for cin, cout, stride in zip(in_channels, out_channels, upsample_strides):
            if stride == 1:
                up: nn.Module = nn.Conv2d(cin, cout, 1, bias=False)
            elif stride > 1:
                up = nn.ConvTranspose2d(cin, cout, stride, stride=stride, bias=False)
            else:
                raise ValueError(f"upsample_strides must be >= 1, got {stride}")
            deblocks.append(nn.Sequential(up, _bn(cout), nn.ReLU(inplace=True)))
        self.deblocks = nn.ModuleList(deblocks)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Stage outputs of :class:`Second` → one map [B, sum(out_channels), H, W] (512x128x128 here)."""
        if len(features) != len(self.deblocks):
            raise ValueError(f"expected {len(self.deblocks)} feature maps, got {len(features)}")
        return torch.cat([deblock(x) for deblock, x in zip(self.deblocks, features)], dim=1)
