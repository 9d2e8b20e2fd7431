"""Position encodings of the CMT head (docs/model.md §5.3–5.5): BEV sine encoding, camera ray coordinates.

All functions are pure tensor maths, vectorized over views, queries and feature cells, and never
synchronize with the host (matrix inverses use ``torch.linalg.inv_ex``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """mmdet's inverse sigmoid: clamp to [0, 1], then ``log(max(x, eps) / max(1 - x, eps))``."""
    x = x.clamp(min=0.0, max=1.0)
    return torch.log(x.clamp(min=eps) / (1.0 - x).clamp(min=eps))


def pos2embed(pos: Tensor, num_feats: int = 256) -> Tensor:
    """CMT sine encoding of normalized (x, y) in ``pos[..., :2]`` → ``[..., 2*num_feats]``, y first.

    No temperature: ``dim_t[i] = 1 + 2*floor(i/2)/num_feats``; sin on even, cos on odd indices.
    """
    pos = pos * (2 * math.pi)
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=pos.device)
    dim_t = 2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats + 1

    def encode(u: Tensor) -> Tensor:
        a = u[..., None] / dim_t
        return torch.stack((a[..., 0::2].sin(), a[..., 1::2].cos()), dim=-1).flatten(-2)

    return torch.cat((encode(pos[..., 1]), encode(pos[..., 0])), dim=-1)


def bev_coords(h: int, w: int, device: torch.device | str | None = None) -> Tensor:
    """Normalized BEV cell centres ``((j+0.5)/w, (i+0.5)/h)`` flattened row-major → ``[h*w, 2]`` (x, y)."""
    ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y), dim=-1).reshape(h * w, 2)


def depth_bins(depth_num: int, max_depth: float, device: torch.device | str | None = None) -> Tensor:
    """Linear (not LID) depth bins ``1 + k*(max_depth - 1)/depth_num`` for k < depth_num → ``[depth_num]``."""
    k = torch.arange(depth_num, dtype=torch.float32, device=device)
    return 1 + k * (max_depth - 1) / depth_num


def invert_lidar2img(lidar2img: Tensor) -> Tensor:
    """``inv(lidar2img)`` per matrix, computed in float64 and cast to float32, without a host sync."""
    inverse, _ = torch.linalg.inv_ex(lidar2img.double())
    return inverse.float()


def _normalize(points: Tensor, pc_range: Sequence[float]) -> Tensor:
    """``(p - min) / (max - min)`` per axis over the point-cloud range, no clamping."""
    lo = points.new_tensor(pc_range[:3])
    hi = points.new_tensor(pc_range[3:])
    return (points - lo) / (hi - lo)


def camera_ray_coords(
    img2lidar: Tensor,
    feat_shape: tuple[int, int],
    pad_shape: tuple[int, int],
    depths: Tensor,
    pc_range: Sequence[float],
) -> Tensor:
    """Ray points of every feature cell's top-left pixel at every depth, in normalized LiDAR coordinates.

    ``img2lidar [N, 4, 4]`` → ``[N, h, w, D*3]`` flattened as ``d*3 + axis`` (the rv_embedding input).
    """
    h, w = feat_shape
    pad_h, pad_w = pad_shape
    dev = img2lidar.device
    with torch.autocast(device_type=dev.type, enabled=False):
        return _camera_rays(img2lidar.float(), h, w, pad_h, pad_w, depths.float(), pc_range)


def _camera_rays(img2lidar: Tensor, h: int, w: int, pad_h: int, pad_w: int, depths: Tensor,
                 pc_range: Sequence[float]) -> Tensor:
    dev = img2lidar.device
    v = torch.arange(h, dtype=torch.float32, device=dev) * pad_h / h
    u = torch.arange(w, dtype=torch.float32, device=dev) * pad_w / w
    vv, uu, dd = torch.meshgrid(v, u, depths, indexing="ij")
    pixels = torch.stack((uu * dd, vv * dd, dd, torch.ones_like(dd)), dim=-1)  # [h, w, D, 4]
    points = pixels @ img2lidar[:, None, None].transpose(-1, -2)  # [N, h, w, D, 4]
    return _normalize(points[..., :3], pc_range).flatten(-2)


def query_ray_coords(
    ref: Tensor,
    lidar2img: Tensor,
    img2lidar: Tensor,
    pad_shape: tuple[int, int],
    depths: Tensor,
    pc_range: Sequence[float],
) -> tuple[Tensor, Tensor]:
    """Project normalized reference points into every view and lift the pixel back along its ray.

    ``ref [B, Q, 3]`` in [0, 1], ``lidar2img``/``img2lidar [B, V, 4, 4]`` →
    (coords ``[B, V, Q, D*3]`` normalized like :func:`camera_ray_coords`, visible ``[B, V, Q]`` bool:
    in front of the camera and inside the padded image).
    """
    with torch.autocast(device_type=ref.device.type, enabled=False):
        return _query_rays(ref.float(), lidar2img.float(), img2lidar.float(), pad_shape, depths.float(), pc_range)


def _query_rays(ref: Tensor, lidar2img: Tensor, img2lidar: Tensor, pad_shape: tuple[int, int], depths: Tensor,
                pc_range: Sequence[float]) -> tuple[Tensor, Tensor]:
    pad_h, pad_w = pad_shape
    lo = ref.new_tensor(pc_range[:3])
    hi = ref.new_tensor(pc_range[3:])
    metric = ref * (hi - lo) + lo
    homog = torch.cat((metric, torch.ones_like(metric[..., :1])), dim=-1)  # [B, Q, 4]
    proj = homog[:, None] @ lidar2img.transpose(-1, -2)  # [B, V, Q, 4]
    z = proj[..., 2:3]
    z_ok = z > 0
    image = proj[..., :3] / (z + torch.where(z_ok, 1e-6, -1e-6))  # (u, v, ~1)
    u, v = image[..., 0], image[..., 1]
    visible = z_ok[..., 0] & (u >= 0) & (u < pad_w) & (v >= 0) & (v < pad_h)
    rays = image[..., None, :] * depths[:, None]  # [B, V, Q, D, 3]
    rays = torch.cat((rays, torch.ones_like(rays[..., :1])), dim=-1)
    back = rays @ img2lidar[:, :, None].transpose(-1, -2)  # [B, V, Q, D, 4]
    return _normalize(back[..., :3], pc_range).flatten(-2), visible
