"""CMT's ``SeparateTaskHead`` (docs/model.md §5.8): one grouped 1x1-conv branch per output, one group per decoder layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Regression branches and their channels, in the order of the checkpoint and of the box slots s0..s9.
REGRESSION_BRANCHES: tuple[tuple[str, int], ...] = (("center", 2), ("height", 1), ("dim", 3), ("rot", 2), ("vel", 2))


class GroupLayerNorm1d(nn.Module):
    """LayerNorm over the channels of each group of a ``[B, C, L]`` tensor (biased variance), per-channel affine."""

    def __init__(self, num_channels: int, groups: int = 1, eps: float = 1e-6) -> None:
        super().__init__()
        if num_channels % groups:
            raise ValueError(f"groups ({groups}) must divide num_channels ({num_channels})")
        self.groups = groups
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        """x [B, C, L] → normalized [B, C, L]."""
        b, c, length = x.shape
        g = x.view(b, self.groups, c // self.groups, length)
        mean = g.mean(dim=2, keepdim=True)
        var = (g - mean).pow(2).mean(dim=2, keepdim=True)
        y = ((g - mean) / torch.sqrt(var + self.eps)).view(b, c, length)
        return y * self.weight[:, None] + self.bias[:, None]


def _branch(in_channels: int, head_conv: int, out_channels: int, groups: int) -> nn.Sequential:
    """Conv1d(groups) → GroupLayerNorm1d → ReLU → Conv1d(groups); indices 0, 1, 3 hold the parameters."""
    return nn.Sequential(
        nn.Conv1d(in_channels * groups, head_conv * groups, kernel_size=1, groups=groups, bias=False),
        GroupLayerNorm1d(head_conv * groups, groups=groups, eps=1e-6),
        nn.ReLU(),
        nn.Conv1d(head_conv * groups, out_channels * groups, kernel_size=1, groups=groups),
    )


class SeparateTaskHead(nn.Module):
    """Branches center(2)/height(1)/dim(3)/rot(2)/vel(2)/cls_logits(num_classes), grouped over decoder layers."""

    def __init__(self, in_channels: int, num_classes: int, groups: int, head_conv: int = 64,
                 cls_init_bias: float = -2.19) -> None:
        super().__init__()
        self.groups = groups
        self.head_conv = head_conv
        self.branch_channels: dict[str, int] = dict(REGRESSION_BRANCHES) | {"cls_logits": num_classes}
        for name, channels in self.branch_channels.items():
            self.add_module(name, _branch(in_channels, head_conv, channels, groups))
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.constant_(self.get_submodule("cls_logits")[3].bias, cls_init_bias)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """All layers: x [n, B, Q, C] (n == groups) → {branch: [n, B, Q, c]} via the grouped convolutions."""
        n, b, q, c = x.shape
        grouped = x.permute(1, 0, 3, 2).reshape(b, n * c, q)
        return {name: self.get_submodule(name)(grouped).view(b, n, -1, q).permute(1, 0, 3, 2)
                for name in self.branch_channels}

    def forward_layer(self, x: Tensor, layer: int = -1) -> dict[str, Tensor]:
        """One decoder layer only: x [B, Q, C] → {branch: [B, Q, c]}, using that layer's slice of the group weights."""
        n = layer % self.groups
        rows = slice(n * self.head_conv, (n + 1) * self.head_conv)
        out = {}
        for name, channels in self.branch_channels.items():
            conv0, norm, _, conv3 = self.get_submodule(name)
            hidden = F.linear(x, conv0.weight[rows, :, 0])
            hidden = F.layer_norm(hidden, (self.head_conv,), norm.weight[rows], norm.bias[rows], norm.eps)
            out_rows = slice(n * channels, (n + 1) * channels)
            out[name] = F.linear(hidden.relu(), conv3.weight[out_rows, :, 0], conv3.bias[out_rows])
        return out
