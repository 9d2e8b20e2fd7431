"""The camera backbone and neck: mmdet 2.x ResNet (50, or 18 for small models) and the CMT plugin's CPFPN.

Module and parameter names equal the checkpoint's ``img_backbone.*`` and ``img_neck.*`` keys (docs/model.md §4);
ResNet-18 uses mmdet's ``BasicBlock`` names (``conv1``/``bn1``/``conv2``/``bn2``/``downsample``).
"""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

_BN_EPS = 1e-5


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs (the first carries the stride), plus shortcut."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, eps=_BN_EPS)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=_BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def last_norm(self) -> nn.BatchNorm2d:
        """The BatchNorm before the residual sum (zero-initialised)."""
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        """[N, C_in, H, W] → [N, planes, H/stride, W/stride]."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


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

    def last_norm(self) -> nn.BatchNorm2d:
        """The BatchNorm before the residual sum (zero-initialised)."""
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        """[N, C_in, H, W] → [N, 4·planes, H/stride, W/stride]."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


#: Block type and blocks per stage of each supported depth.
_ARCHITECTURES: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """mmdet ResNet returning (C4, C5), the outputs of ``layer3`` (stride 16) and ``layer4`` (stride 32).

    With ``norm_eval`` (the trained nuScenes configuration) every BatchNorm stays in eval mode, also after
    ``.train()``: the running statistics are used and never updated.
    """

    def __init__(self, depth: int = 50, norm_eval: bool = True, base_channels: int = 64) -> None:
        super().__init__()
        if depth not in _ARCHITECTURES:
            raise ValueError(f"ResNet depth must be one of {sorted(_ARCHITECTURES)}, got {depth}")
        block, blocks = _ARCHITECTURES[depth]
        base = base_channels
        self.norm_eval = norm_eval
        self.conv1 = nn.Conv2d(3, base, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base, eps=_BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.in_channels = base
        self.layer1 = self._make_layer(block, base, blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 2 * base, blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * base, blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * base, blocks[3], stride=2)
        #: Channels of (C4, C5).
        self.out_channels = (4 * base * block.expansion, 8 * base * block.expansion)

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int,
                    stride: int) -> nn.Sequential:
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or self.in_channels != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(self.in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels, eps=_BN_EPS),
            )
        layers = [block(self.in_channels, planes, stride, downsample)]
        self.in_channels = out_channels
        layers += [block(out_channels, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def train(self, mode: bool = True) -> "ResNet":
        """Set the training mode; with ``norm_eval`` the BatchNorm layers stay in eval mode."""
        super().train(mode)
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images [N, 3, H, W] → C4 [N, out_channels[0], H/16, W/16], C5 [N, out_channels[1], H/32, W/32]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c4 = self.layer3(self.layer2(self.layer1(x)))
        return c4, self.layer4(c4)


#: Backbone names accepted by ``image.backbone``.
RESNET_DEPTHS = {"resnet18": 18, "resnet50": 50}


def resnet(name: str = "resnet50", norm_eval: bool = True, base_channels: int = 64) -> ResNet:
    """ResNet ``name`` with mmdet's random initialisation (Kaiming convs; last BN of each block zeroed)."""
    if name not in RESNET_DEPTHS:
        raise ValueError(f"unknown image backbone {name!r} (accepted: {', '.join(RESNET_DEPTHS)})")
    model = ResNet(RESNET_DEPTHS[name], norm_eval=norm_eval, base_channels=base_channels)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, (BasicBlock, Bottleneck)):
            nn.init.zeros_(module.last_norm().weight)
    return model


def resnet50(norm_eval: bool = True) -> ResNet:
    """ResNet-50, the backbone of the nuScenes configs."""
    return resnet("resnet50", norm_eval)


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
