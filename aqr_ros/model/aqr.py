"""AQR (variant A): per-query modality weights rendered into maps that modulate the features (docs/model.md §6).

Pipeline: :func:`project_reference_points` places every query on the BEV grid and in one camera view,
:class:`AqrWeightGenerator` predicts a LiDAR and a camera weight per query with one encoder layer whose
attention is restricted to a local window around those places (gathered, ≤ 25 BEV + ≤ 81 camera keys),
:class:`WeightRenderer` splats the weights as gaussians onto a BEV map and per-view camera maps, and
:class:`FeatureModulator` multiplies the feature maps by ``map + residual``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import AqrConfig, ModelConfig
from .transformer import Ffn

__all__ = [
    "Projection",
    "project_reference_points",
    "local_key_indices",
    "local_attention_mask",
    "gathered_attention",
    "AqrWeightGenerator",
    "gaussian_kernel",
    "WeightRenderer",
    "FeatureModulator",
]


@dataclass
class Projection:
    """Where each query sits on the BEV grid and in the camera features (§6.2); all int64, batch-first."""

    #: [B, Q, 2] (row = y index, col = x index); may lie outside the grid for raw refs outside [0, 1].
    bev_rc: Tensor
    #: [B, Q] ``row * W_bev + col``; may be out of range or wrap across rows, as in the original.
    bev_index: Tensor
    #: [B, Q, 3] (view, h, w) in the first valid view seeing the query; (0, 0, 0) when none does.
    pers_vhw: Tensor
    #: [B, Q] ``view * h_feat * w_feat + h * w_feat + w``.
    pers_index: Tensor


def project_reference_points(ref: Tensor, lidar2img: Tensor, cfg: ModelConfig,
                             camera_valid: Tensor | None = None) -> Projection:
    """Project raw (unclamped) reference points [B, Q, 3] to BEV cells and camera feature cells (§6.2).

    ``lidar2img`` [B, V, 4, 4] includes the resize/crop; views with ``camera_valid`` False never see a query.
    Runs in float32 outside autocast: fp16 pixel coordinates would move queries between cells.
    """
    with torch.autocast(ref.device.type, enabled=False):
        return _project(ref.float(), lidar2img.float(), cfg, camera_valid)


def _project(ref: Tensor, lidar2img: Tensor, cfg: ModelConfig, camera_valid: Tensor | None) -> Projection:
    """The float32 body of :func:`project_reference_points`."""
    lo = cfg.lidar.point_cloud_range
    span = [lo[i + 3] - lo[i] for i in range(3)]
    points = torch.stack([ref[..., i] * span[i] + lo[i] for i in range(3)], dim=-1)  # metres, float32 op order
    homog = torch.cat((points, torch.ones_like(points[..., :1])), dim=-1)
    pts = torch.einsum("bvji,bni->bvnj", lidar2img, homog)  # [B, V, Q, 4]
    depth = pts[..., 2].clamp(1e-5, 99999)
    u, v = pts[..., 0] / depth, pts[..., 1] / depth
    img_h, img_w = cfg.image.input_size
    fov = (u < img_w) & (u >= 0) & (v < img_h) & (v >= 0)
    if camera_valid is not None:
        fov = fov & camera_valid[:, :, None]

    num_views = lidar2img.shape[1]
    view_ids = torch.arange(num_views, device=ref.device)[None, :, None]
    first = torch.where(fov, view_ids, num_views).amin(dim=1)  # [B, Q]; num_views when no view sees it
    visible = first < num_views
    view = torch.where(visible, first, 0)
    u_sel = u.gather(1, view[:, None]).squeeze(1)
    v_sel = v.gather(1, view[:, None]).squeeze(1)
    feat_h, feat_w = cfg.image.feature_shape
    ratio = feat_h / img_h  # the original uses the H ratio for both axes
    zero = torch.zeros_like(u_sel)
    h = torch.floor(torch.where(visible, v_sel, zero) * ratio).long()
    w = torch.floor(torch.where(visible, u_sel, zero) * ratio).long()
    pers_vhw = torch.stack((view, h, w), dim=-1) * visible[..., None]

    bev_h, bev_w = cfg.lidar.bev_shape
    col = torch.floor((points[..., 0] - lo[0]) * (bev_w / span[0])).long()
    row = torch.floor((points[..., 1] - lo[1]) * (bev_h / span[1])).long()
    bev_rc = torch.stack((row, col), dim=-1)
    pers_index = (pers_vhw[..., 0] * feat_h + pers_vhw[..., 1]) * feat_w + pers_vhw[..., 2]
    return Projection(bev_rc=bev_rc, bev_index=row * bev_w + col, pers_vhw=pers_vhw, pers_index=pers_index)


def _window_offsets(window_size: int, row_stride: int, device: torch.device) -> Tensor:
    """Flat offsets ``dy * row_stride + dx`` of the ±window_size//2 square window, row-major."""
    half = window_size // 2
    steps = torch.arange(-half, half + 1, device=device)
    return (steps[:, None] * row_stride + steps[None, :]).reshape(-1)


def _first_valid_occurrence(index: Tensor, valid: Tensor) -> Tensor:
    """``valid`` with each index kept at most once per query (windows wider than a tiny grid alias)."""
    order = index.argsort(dim=-1, stable=True)
    sorted_index, sorted_valid = index.gather(-1, order), valid.gather(-1, order)
    new_run = torch.ones_like(sorted_valid)
    new_run[..., 1:] = sorted_index[..., 1:] != sorted_index[..., :-1]
    taps = torch.arange(index.shape[-1], device=index.device)
    run_start = torch.where(new_run, taps, 0).cummax(dim=-1).values
    valid_before = sorted_valid.long().cumsum(dim=-1) - sorted_valid.long()
    first = sorted_valid & (valid_before == valid_before.gather(-1, run_start))
    return torch.zeros_like(valid).scatter(-1, order, first)


def local_key_indices(proj: Projection, window_sizes: tuple[int, int], bev_shape: tuple[int, int],
                      pers_shape: tuple[int, int, int]) -> tuple[Tensor, Tensor]:
    """Memory indices [B, Q, K_bev + K_cam] of each query's local window and their validity (§6.3 rule).

    Memory order is BEV (y * W + x) then camera (v, h, w). Out-of-range candidates are clamped as in the
    original; on grids narrower than the window, a token reached twice is kept once.
    """
    bev_tokens = bev_shape[0] * bev_shape[1]
    views, feat_h, feat_w = pers_shape
    cam_tokens = views * feat_h * feat_w
    device = proj.bev_index.device

    bev_off = _window_offsets(window_sizes[1], bev_shape[1], device)
    bev_half = window_sizes[1] // 2
    bev_cand = proj.bev_index[..., None] + bev_off
    bev_valid = ((bev_cand >= 0) & (bev_cand < bev_tokens)
                 & ((bev_cand % bev_shape[1]) - (proj.bev_index % bev_shape[1])[..., None]).abs().le(bev_half))

    cam_off = _window_offsets(window_sizes[0], feat_w, device)
    cam_half = window_sizes[0] // 2
    cam_cand = proj.pers_index[..., None] + cam_off
    plane = feat_h * feat_w
    q_row = (proj.pers_index % plane).div(feat_w, rounding_mode="floor")[..., None]
    q_col = (proj.pers_index % feat_w)[..., None]
    cam_valid = (((cam_cand % plane).div(feat_w, rounding_mode="floor") - q_row).abs().le(cam_half)
                 & ((cam_cand % feat_w) - q_col).abs().le(cam_half))

    index = torch.cat((bev_cand.clamp(0, bev_tokens - 1), bev_tokens + cam_cand.clamp(0, cam_tokens - 1)), dim=-1)
    valid = torch.cat((bev_valid, cam_valid), dim=-1)
    if min(feat_h, feat_w) <= 2 * cam_half or bev_shape[1] <= 2 * bev_half:
        valid = _first_valid_occurrence(index, valid)
    return index, valid


def local_attention_mask(proj: Projection, window_sizes: tuple[int, int], bev_shape: tuple[int, int],
                         pers_shape: tuple[int, int, int], num_heads: int) -> Tensor:
    """Dense LAM of §6.3: [B * num_heads, Q, L] bool, True = do not attend (index b * num_heads + h).

    The literal formulation (reference for tests); the model uses the gathered form instead.
    """
    batch, queries = proj.bev_index.shape
    bev_tokens = bev_shape[0] * bev_shape[1]
    views, feat_h, feat_w = pers_shape
    cam_tokens = views * feat_h * feat_w
    device = proj.bev_index.device

    def unmasked(cand: Tensor, ok: Tensor, tokens: int) -> Tensor:
        """[B, Q, tokens] bool, True where some kept candidate points (out-of-range ones clamp, as the original)."""
        hits = torch.zeros(batch, queries, tokens, dtype=torch.int32, device=device)
        return hits.scatter_add_(2, cand.clamp(0, tokens - 1), ok.int()) > 0

    # Camera part: candidates around pers_index, kept when row and column move by at most ±ws//2
    # (rows and columns taken with floor modulo, so wrapped candidates fail).
    half = window_sizes[0] // 2
    steps = torch.arange(-half, half + 1, device=device)
    idx = proj.pers_index[..., None]
    cand = idx + (steps[:, None] * feat_w + steps[None, :]).reshape(-1)
    plane = feat_h * feat_w
    ok = ((cand % plane // feat_w - idx % plane // feat_w).abs() <= half) & \
         ((cand % feat_w - idx % feat_w).abs() <= half)
    cam_free = unmasked(cand, ok, cam_tokens)

    # BEV part: candidates around bev_index, kept when in range and the column moves by at most ±ws//2.
    half = window_sizes[1] // 2
    steps = torch.arange(-half, half + 1, device=device)
    idx = proj.bev_index[..., None]
    cand = idx + (steps[:, None] * bev_shape[1] + steps[None, :]).reshape(-1)
    ok = (cand >= 0) & (cand < bev_tokens) & ((cand % bev_shape[1] - idx % bev_shape[1]).abs() <= half)
    bev_free = unmasked(cand, ok, bev_tokens)

    mask = ~torch.cat((bev_free, cam_free), dim=-1)
    return mask.repeat_interleave(num_heads, dim=0)


def gathered_attention(attn: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor,
                       index: Tensor, valid: Tensor) -> Tensor:
    """``attn`` (batch-first) where query q attends only to keys ``index[:, q]`` with ``valid`` True.

    query [B, Q, C], key/value [B, L, C], index/valid [B, Q, K] → [B, Q, C]; equals ``attn`` with the
    corresponding dense mask, in O(Q·K) memory.
    """
    batch, queries, dim = query.shape
    heads = attn.num_heads
    head_dim = dim // heads
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
    q = F.linear(query, w_q, b_q).view(batch, queries, heads, 1, head_dim).transpose(1, 2)
    k = F.linear(key, w_k, b_k).view(batch, -1, heads, head_dim).transpose(1, 2)  # [B, H, L, d]
    v = F.linear(value, w_v, b_v).view(batch, -1, heads, head_dim).transpose(1, 2)
    taps = index.shape[-1]
    flat = index.reshape(batch, 1, queries * taps, 1).expand(batch, heads, queries * taps, head_dim)
    k_loc = k.gather(2, flat).view(batch, heads, queries, taps, head_dim)
    v_loc = v.gather(2, flat).view(batch, heads, queries, taps, head_dim)
    logits = (q * head_dim ** -0.5) @ k_loc.transpose(-1, -2)  # [B, H, Q, 1, K]
    logits = logits.masked_fill(~valid[:, None, :, None, :], float("-inf"))
    out = (logits.softmax(dim=-1) @ v_loc).reshape(batch, heads, queries, head_dim)
    return attn.out_proj(out.transpose(1, 2).reshape(batch, queries, dim))


class _AttentionSlot(nn.Module):
    """Holds the packed ``attn`` parameters under the mmcv name ``attentions.0.attn``."""

    def __init__(self, embed_dims: int, num_heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(embed_dims, num_heads, batch_first=True)


class _EncoderLayer(nn.Module):
    """Parameter container of the (cross_attn, norm, ffn, norm) PETR decoder layer."""

    def __init__(self, embed_dims: int, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.attentions = nn.ModuleList([_AttentionSlot(embed_dims, num_heads)])
        self.ffns = nn.ModuleList([Ffn(embed_dims, ffn_dim)])
        self.norms = nn.ModuleList([nn.LayerNorm(embed_dims), nn.LayerNorm(embed_dims)])


class _Encoder(nn.Module):
    """Parameter container of the one-layer PETR decoder with its ``post_norm``."""

    def __init__(self, embed_dims: int, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([_EncoderLayer(embed_dims, num_heads, ffn_dim)])
        self.post_norm = nn.LayerNorm(embed_dims)


class AqrWeightGenerator(nn.Module):
    """One local-attention encoder layer + sigmoid predictor → per-query [LiDAR, camera] weights (§6.4, §6.5)."""

    def __init__(self, embed_dims: int, num_heads: int, ffn_dim: int, window_sizes: tuple[int, int],
                 bev_shape: tuple[int, int], pers_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.window_sizes = tuple(window_sizes)
        self.bev_shape = tuple(bev_shape)
        self.pers_shape = tuple(pers_shape)
        self.encoder = _Encoder(embed_dims, num_heads, ffn_dim)
        self.weight_predictor = nn.Linear(embed_dims, 2)
        # Present in the checkpoints but never used in the forward pass (§6.4).
        self.bev_type_embed = nn.Parameter(torch.randn(embed_dims))
        self.rv_type_embed = nn.Parameter(torch.randn(embed_dims))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.constant_(self.weight_predictor.bias, 1.5)

    def encode(self, memory: Tensor, pos: Tensor, query_pos: Tensor, proj: Projection) -> Tensor:
        """Encoder output [B, Q, C] (after ``post_norm``) with gathered local attention."""
        layer = self.encoder.layers[0]
        index, valid = local_key_indices(proj, self.window_sizes, self.bev_shape, self.pers_shape)
        # The layer's query is zero, so the attention query is query_pos and the residual vanishes.
        attended = gathered_attention(layer.attentions[0].attn, query_pos, memory + pos, memory, index, valid)
        hidden = layer.norms[0](attended)
        hidden = layer.norms[1](hidden + layer.ffns[0](hidden))
        return self.encoder.post_norm(hidden)

    def forward(self, memory: Tensor, pos: Tensor, query_pos: Tensor, proj: Projection) -> Tensor:
        """memory/pos [B, L, C] (BEV then camera tokens, unmodulated), query_pos [B, Q, C] → sigmoid weights
        [B, Q, 2] ([..., 0] LiDAR, [..., 1] camera)."""
        return self.weight_predictor(self.encode(memory, pos, query_pos, proj)).sigmoid()


def gaussian_kernel(sigma: float) -> Tensor:
    """Odd ``int(6σ + 1)``-wide 2-D gaussian normalised to sum 1, float32 (§6.6)."""
    size = int(6 * sigma + 1)
    size += 1 - size % 2
    taps = torch.arange(-(size // 2), size // 2 + 1, dtype=torch.float32)
    yy, xx = torch.meshgrid(taps, taps, indexing="ij")
    kernel = torch.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2))
    return kernel / kernel.sum()


class WeightRenderer(nn.Module):
    """Splat per-query weights as gaussians onto the BEV map and the per-view camera maps (§6.6).

    One scatter-add onto a shared canvas (BEV on top, then each view below a gap of k//2 zero rows, so
    no gaussian crosses from one map into another) and one zero-padded convolution with the kernel.
    """

    def __init__(self, cfg: AqrConfig, bev_shape: tuple[int, int], pers_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.cfg = cfg
        self.bev_shape = tuple(bev_shape)
        self.pers_shape = tuple(pers_shape)
        self.register_buffer("gaussian_kernel", gaussian_kernel(cfg.gaussian_sigma))

    def _postprocess(self, weight_map: Tensor) -> Tensor:
        """Zero values below the threshold, then clamp to [0, max_weight_clamp] when normalize_weights."""
        cfg = self.cfg
        weight_map = torch.where(weight_map < cfg.min_weight_threshold, 0.0, weight_map)
        return weight_map.clamp(0.0, cfg.max_weight_clamp) if cfg.normalize_weights else weight_map

    def forward(self, lidar_w: Tensor, camera_w: Tensor, proj: Projection) -> tuple[Tensor, Tensor]:
        """lidar_w, camera_w [B, Q] → (bev_map [B, H, W], pers_map [B, V, h, w]) in float32; differentiable
        in the weights. Runs outside autocast so the threshold and the pile-ups keep fp32 precision."""
        with torch.autocast(lidar_w.device.type, enabled=False):
            return self._render(lidar_w.float(), camera_w.float(), proj)

    def _render(self, lidar_w: Tensor, camera_w: Tensor, proj: Projection) -> tuple[Tensor, Tensor]:
        """The scatter-add + convolution of :meth:`forward`."""
        batch = lidar_w.shape[0]
        bev_h, bev_w = self.bev_shape
        views, feat_h, feat_w = self.pers_shape
        half = self.gaussian_kernel.shape[-1] // 2
        width = max(bev_w, feat_w)
        block = half + feat_h
        height = bev_h + views * block
        # The original skips a query when `w.item() < threshold` in double precision; on float32 weights the
        # same decision is `w >= the smallest float32 not below the threshold` (float32(0.01) is below 0.01).
        thr32 = torch.tensor(self.cfg.min_weight_threshold, dtype=torch.float32)
        if thr32.item() < self.cfg.min_weight_threshold:
            thr32 = torch.nextafter(thr32, torch.tensor(float("inf")))
        thr = thr32.item()

        lidar_w, camera_w = lidar_w.clamp(0.0, 1.0), camera_w.clamp(0.0, 1.0)
        row, col = proj.bev_rc.unbind(-1)
        bev_keep = (lidar_w >= thr) & (row >= 0) & (row < bev_h) & (col >= 0) & (col < bev_w)
        bev_cell = row * width + col
        view, h, w = proj.pers_vhw.unbind(-1)
        cam_keep = ((camera_w >= thr) & (view >= 0) & (view < views)
                    & (h >= 0) & (h < feat_h) & (w >= 0) & (w < feat_w))
        cam_cell = (bev_h + view * block + half + h) * width + w

        keep = torch.cat((bev_keep, cam_keep), dim=1)
        cells = torch.cat((bev_cell, cam_cell), dim=1)
        offset = torch.arange(batch, device=cells.device)[:, None] * (height * width)
        cells = torch.where(keep, cells, 0) + offset
        values = torch.where(keep, torch.cat((lidar_w, camera_w), dim=1), 0.0)
        canvas = values.new_zeros(batch * height * width).index_add(0, cells.reshape(-1), values.reshape(-1))
        kernel = self.gaussian_kernel.float()[None, None]
        canvas = F.conv2d(canvas.view(batch, 1, height, width), kernel, padding=half)[:, 0]

        bev_map = self._postprocess(canvas[:, :bev_h, :bev_w])
        pers_map = canvas[:, bev_h:].reshape(batch, views, block, width)[:, :, half:, :feat_w]
        if self.cfg.postprocess_perspective:
            pers_map = self._postprocess(pers_map)
        return bev_map, pers_map.contiguous()


class FeatureModulator(nn.Module):
    """Element-wise modulation with a residual: ``x * W + residual_weight * x`` (§6.7); no parameters."""

    def __init__(self, residual_weight: float) -> None:
        super().__init__()
        self.residual_weight = residual_weight

    def forward(self, x: Tensor, x_img: Tensor, bev_map: Tensor, pers_map: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, C, H, W], x_img [B*V, C, h, w] (index b*V + v), maps [B, H, W] / [B, V, h, w] → modulated copies."""
        r = self.residual_weight
        bev = bev_map[:, None].to(x.dtype)
        pers = pers_map.reshape(-1, 1, *pers_map.shape[-2:]).to(x_img.dtype)
        return x * bev + r * x, x_img * pers + r * x_img
