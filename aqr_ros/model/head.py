"""The AQR-modulated CMT head (docs/model.md §5, §6.8): shared conv, AQR modulation, position encodings,
transformer decoder and task head, with the checkpoint names of the original ``pts_bbox_head``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .aqr import AqrWeightGenerator, FeatureModulator, WeightRenderer, project_reference_points
from .config import ModelConfig
from .positional import (
    bev_coords,
    camera_ray_coords,
    depth_bins,
    inverse_sigmoid,
    invert_lidar2img,
    pos2embed,
    query_ray_coords,
)
from .task_head import SeparateTaskHead
from .timing import StageTimer, maybe_stage
from .transformer import CmtTransformer


@dataclass
class HeadOutput:
    """Head result for a batch: predictions {branch: [B, Q, c]} of the last layer (:meth:`CmtHead.forward`) or
    [L, B, T, c] of every layer (:meth:`CmtHead.forward_train`), centre/height in metres; AQR weights [B, Q] per
    modality and the rendered weight maps [B, H, W] / [B, V, h, w]."""

    predictions: dict[str, Tensor]
    lidar_weights: Tensor
    camera_weights: Tensor
    bev_weight_map: Tensor
    camera_weight_map: Tensor


class ConvBnRelu(nn.Module):
    """mmcv ``ConvModule``: 3x3 Conv2d without bias → BatchNorm2d(eps 1e-5) → ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-5)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """x [B, C_in, H, W] → [B, C_out, H, W]."""
        return torch.relu(self.bn(self.conv(x)))


def _mlp(in_features: int, hidden: int, out_features: int) -> nn.Sequential:
    """Linear → ReLU → Linear (checkpoint indices 0 and 2)."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out_features))


class CmtHead(nn.Module):
    """CMT head with AQR feature modulation (variant A); submodules named as ``pts_bbox_head.*``."""

    def __init__(self, cfg: ModelConfig, in_channels: int = 512) -> None:
        super().__init__()
        head, aqr = cfg.head, cfg.aqr
        dim = head.hidden_dim
        self.cfg = cfg
        bev_shape = cfg.lidar.bev_shape
        pers_shape = (cfg.image.num_views, *cfg.image.feature_shape)
        self.shared_conv = ConvBnRelu(in_channels, dim)
        self.transformer = CmtTransformer(dim, head.num_heads, head.ffn_dim, head.num_decoder_layers)
        self.reference_points = nn.Embedding(head.num_query, 3)
        nn.init.uniform_(self.reference_points.weight, 0.0, 1.0)
        self.bev_embedding = _mlp(2 * dim, dim, dim)
        self.rv_embedding = _mlp(3 * head.depth_num, 4 * dim, dim)
        self.task_heads = nn.ModuleList([SeparateTaskHead(dim, len(head.class_names), groups=head.num_decoder_layers,
                                                          head_conv=head.head_conv)])
        self.aqr_weight_generator = AqrWeightGenerator(dim, aqr.num_heads, aqr.ffn_dim, aqr.window_sizes,
                                                       bev_shape, pers_shape)
        self.weight_renderer = WeightRenderer(aqr, bev_shape, pers_shape)
        self.feature_modulator = FeatureModulator(aqr.residual_weight)
        self.register_buffer("coords_bev", bev_coords(*bev_shape), persistent=False)
        self.register_buffer("depths", depth_bins(head.depth_num, cfg.lidar.point_cloud_range[3]), persistent=False)

    def forward(self, x_bev: Tensor, x_img: Tensor, lidar2img: Tensor, camera_valid: Tensor,
                timer: StageTimer | None = None) -> HeadOutput:
        """x_bev [B, 512, H, W], x_img [B*V, C, h, w] (index b*V + v), lidar2img [B, V, 4, 4],
        camera_valid [B, V] bool → :class:`HeadOutput` of the last decoder layer (no host synchronization).

        Absent cameras get zero features, no decoder key tokens, no rv query embedding, and an identity
        lidar2img (so every inverse exists); AQR's projection treats them as seeing no query.
        """
        decoded, ref, aqr = self._decode(x_bev, x_img, lidar2img, camera_valid, None, None, timer)
        with maybe_stage(timer, "task_head"):
            predictions = self._postprocess(self.task_heads[0].forward_layer(decoded[-1]), ref)
        return HeadOutput(predictions, *aqr)

    def forward_train(self, x_bev: Tensor, x_img: Tensor, lidar2img: Tensor, camera_valid: Tensor,
                      dn_reference: Tensor | None = None, dn_attn_mask: Tensor | None = None) -> HeadOutput:
        """Training forward: like :meth:`forward`, with denoising queries and every decoder layer's predictions.

        ``dn_reference`` [B, P, 3] are normalised noisy ground-truth centres placed before the learned queries,
        ``dn_attn_mask`` [P + Q, P + Q] keeps the groups apart in the self-attention. Predictions are
        {branch: [L, B, P + Q, c]}. AQR weighs and renders the learned queries only: rendering the denoising
        queries too (as the research code did) would leak the ground truth into the maps (docs/model.md §11.3).
        """
        decoded, ref, aqr = self._decode(x_bev, x_img, lidar2img, camera_valid, dn_reference, dn_attn_mask, None)
        return HeadOutput(self._postprocess(self.task_heads[0](decoded), ref), *aqr)

    def _decode(self, x_bev: Tensor, x_img: Tensor, lidar2img: Tensor, camera_valid: Tensor,
                dn_reference: Tensor | None, dn_attn_mask: Tensor | None,
                timer: StageTimer | None) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Shared conv, AQR modulation and decoder → (decoded [L, B, T, C], reference points [B, T, 3],
        (lidar weights, camera weights, BEV map, camera map) of the learned queries)."""
        cfg = self.cfg
        batch, views = lidar2img.shape[:2]
        feat_h, feat_w = x_img.shape[-2:]
        dim = cfg.head.hidden_dim
        pc_range = cfg.lidar.point_cloud_range
        pad_shape = cfg.image.input_size

        with maybe_stage(timer, "shared_conv"):
            x = self.shared_conv(x_bev)
        x_img = torch.where(camera_valid.reshape(batch * views, 1, 1, 1), x_img, 0)
        eye = torch.eye(4, dtype=lidar2img.dtype, device=lidar2img.device)
        lidar2img = torch.where(camera_valid[..., None, None], lidar2img, eye)
        learned = self.reference_points.weight[None].expand(batch, -1, -1)
        ref = learned if dn_reference is None else torch.cat((dn_reference.to(learned.dtype), learned), dim=1)
        num_dn = ref.shape[1] - learned.shape[1]

        with maybe_stage(timer, "position_encoding"):
            img2lidar = invert_lidar2img(lidar2img)
            scale = cfg.head.position_scale
            bev_pos = self.bev_embedding(pos2embed(self.coords_bev * scale, dim))
            rv_coords = camera_ray_coords(img2lidar.flatten(0, 1), (feat_h, feat_w), pad_shape, self.depths, pc_range)
            rv_pos = self.rv_embedding(rv_coords)  # [B*V, h, w, C]
            pos = torch.cat((bev_pos.expand(batch, -1, -1), rv_pos.reshape(batch, -1, dim)), dim=1)
            query_ref = inverse_sigmoid(ref).sigmoid()
            ray_coords, visible = query_ray_coords(query_ref, lidar2img, img2lidar, pad_shape, self.depths, pc_range)
            visible = visible & camera_valid[..., None]
            rv_query = torch.where(visible[..., None], self.rv_embedding(ray_coords), 0).sum(dim=1)
            query_pos = self.bev_embedding(pos2embed(query_ref[..., :2] * scale, dim)) + rv_query

        with maybe_stage(timer, "aqr"):
            proj = project_reference_points(learned, lidar2img, cfg, camera_valid)
            weights = self.aqr_weight_generator(_memory(x, x_img, batch), pos, query_pos[:, num_dn:], proj)
            lidar_w, camera_w = weights[..., 0], weights[..., 1]
            bev_map, pers_map = self.weight_renderer(lidar_w, camera_w, proj)
            x, x_img = self.feature_modulator(x, x_img, bev_map, pers_map)

        with maybe_stage(timer, "decoder"):
            bev_keys = torch.ones_like(camera_valid[:, :1]).expand(batch, x.shape[-2] * x.shape[-1])
            cam_keys = camera_valid[..., None].expand(batch, views, feat_h * feat_w).reshape(batch, -1)
            key_mask = torch.cat((bev_keys, cam_keys), dim=1)
            decoded = self.transformer(query_pos, _memory(x, x_img, batch), pos, key_mask, dn_attn_mask)
        return decoded, ref, (lidar_w, camera_w, bev_map, pers_map)

    def _postprocess(self, outs: dict[str, Tensor], ref: Tensor) -> dict[str, Tensor]:
        """Centre and height relative to the reference logits, sigmoid, then metres in the pc range (§5.8)."""
        r = self.cfg.lidar.point_cloud_range
        ref_logit = inverse_sigmoid(ref)
        center = (outs["center"] + ref_logit[..., :2]).sigmoid()
        height = (outs["height"] + ref_logit[..., 2:3]).sigmoid()
        x = center[..., 0:1] * (r[3] - r[0]) + r[0]
        y = center[..., 1:2] * (r[4] - r[1]) + r[1]
        return outs | {"center": torch.cat((x, y), dim=-1), "height": height * (r[5] - r[2]) + r[2]}


def _memory(x: Tensor, x_img: Tensor, batch: int) -> Tensor:
    """BEV map [B, C, H, W] (tokens y*W + x) then camera maps [B*V, C, h, w] (tokens v, h, w) → [B, L, C]."""
    channels = x.shape[1]
    bev = x.flatten(2).transpose(1, 2)
    cam = x_img.reshape(batch, -1, channels, x_img.shape[-2] * x_img.shape[-1]).transpose(2, 3)
    return torch.cat((bev, cam.reshape(batch, -1, channels)), dim=1)
