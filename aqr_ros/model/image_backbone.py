"""The camera backbone and neck: mmdet 2.x ResNet-50 and the CMT plugin's CPFPN (MODEL.md §4).

Module and parameter names equal the checkpoint's ``img_backbone.*`` and ``img_neck.*`` keys.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

_BN_EPS = 1e-5


class Bottleneck(nn.Module):
    """ResNet bottleneck, ``style='pytorch'``: 1x1 → 3x3 (carries the stride) → 1x1 (x4 channels), plus shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, eps=_BN_EPS)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=_BN_EPS)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels, eps=_BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """[N, C_in, H, W] → [N, 4·planes, H/stride, W/stride]."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet-50 returning (C4, C5), the outputs of ``layer3`` (stride 16) and ``layer4`` (stride 32).

    With ``norm_eval`` (the trained configuration) every BatchNorm stays in eval mode, also after
    ``.train()``: the running statistics are used and never updated.
    """

    def __init__(self, norm_eval: bool = True) -> None:
        super().__init__()
        self.norm_eval = norm_eval
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=_BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.in_channels = 64
        self.layer1 = self._make_layer(64, 3, stride=1)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)
        self.layer4 = self._make_layer(512, 3, stride=2)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out_channels = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or self.in_channels != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(self.in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels, eps=_BN_EPS),
            )
        layers = [Bottleneck(self.in_channels, planes, stride, downsample)]
        self.in_channels = out_channels
        layers += [Bottleneck(out_channels, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def train(self, mode: bool = True) -> "ResNet50":
        """Set the training mode; with ``norm_eval`` the BatchNorm layers stay in eval mode."""
        super().train(mode)
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images [N, 3, H, W] → C4 [N, 1024, H/16, W/16], C5 [N, 2048, H/32, W/32]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c4 = self.layer3(self.layer2(self.layer1(x)))
        return c4, self.layer4(c4)


def resnet50(norm_eval: bool = True) -> ResNet50:
    """ResNet-50 with mmdet's random initialisation (Kaiming convs; last BN of each block zeroed)."""
    model = ResNet50(norm_eval=norm_eval)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, Bottleneck):
            nn.init.zeros_(module.bn3.weight)
    return model


class _ConvModule(nn.Module):
    """A conv wrapped as mmcv ``ConvModule`` without norm and activation, so its key is ``<name>.conv.*``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the convolution."""
        return self.conv(x)


class CpFpn(nn.Module):
    """CMT's CPFPN: 1x1 laterals, one nearest-upsample top-down step and a 3x3 conv on the finest level.

    Only the finest output (``fpn_convs.0(lat0 + up(lat1))``, [N, 256, H/16, W/16]) is returned. The
    original also returns the coarse lateral ``lat1`` unchanged, but nothing downstream uses it, so it
    is not produced here.
    """

    def __init__(self, in_channels: Sequence[int] = (1024, 2048), out_channels: int = 256) -> None:
        super().__init__()
        if len(in_channels) != 2:
            raise ValueError(f"CpFpn takes two input levels, got in_channels={tuple(in_channels)}")
        self.lateral_convs = nn.ModuleList(_ConvModule(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList([_ConvModule(out_channels, out_channels, 3, padding=1)])

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """(C4, C5) → out0 [N, out_channels, H4, W4]."""
        c4, c5 = features
        lat0 = self.lateral_convs[0](c4)
        lat1 = self.lateral_convs[1](c5)
        lat0 = lat0 + F.interpolate(lat1, size=lat0.shape[-2:], mode="nearest")
        return self.fpn_convs[0](lat0)
