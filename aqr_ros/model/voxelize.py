"""Hard voxelization with the mean voxel feature (spconv ``PointToVoxel`` + ``HardSimpleVFE``, docs/model.md §3.1).

The original CUDA hash voxelizer orders voxels by hash-table slot and points by atomic-add order, so
it is not deterministic once a voxel holds more than ``max_points_per_voxel`` points or a frame has
more than ``max_voxels`` voxels. This implementation is deterministic: points keep their input order
(key frame first), and voxels are ordered by their first point. Everything is vectorized (sort,
unique, scatter) and runs on the device of the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .config import LidarConfig


@dataclass(frozen=True)
class Voxels:
    """Voxelized point cloud: ``features`` [M, F] float32 (mean of the kept points), ``coords`` [M, 3]
    int32 in (z, y, x) order, ``num_points`` [M] int32 (points kept per voxel, at most the cap)."""

    features: Tensor
    coords: Tensor
    num_points: Tensor

    def select(self, mask: Tensor) -> Voxels:
        """The voxels where the boolean ``mask`` [M] is true, in the same order."""
        return Voxels(self.features[mask], self.coords[mask], self.num_points[mask])


def voxel_cells(xyz: Tensor, cfg: LidarConfig) -> Tensor:
    """Per-point voxel cell (x, y, z) as float32 ``floor((p - min) / size)``, the original's op order."""
    pmin = torch.tensor(cfg.point_cloud_range[:3], dtype=torch.float32, device=xyz.device)
    size = torch.tensor(cfg.voxel_size, dtype=torch.float32, device=xyz.device)
    return torch.floor((xyz.to(torch.float32) - pmin) / size)


def voxelize(points: Tensor, cfg: LidarConfig) -> Voxels:
    """Hard-voxelize ``points`` [N, F] (x, y, z, ...) on the full ``cfg.grid_size`` grid and average each voxel.

    Points with a non-finite value or a cell outside ``[0, grid)`` are dropped (range min included, max
    excluded). Each voxel keeps its first ``max_points_per_voxel`` points in input order; only the first
    ``max_voxels`` voxels, ordered by their first point, are kept. The result may still hold cells outside
    ``cfg.sparse_shape``; :func:`drop_outside_sparse_shape` removes them before the sparse encoder.
    """
    num_features = cfg.num_point_features
    if points.ndim != 2 or points.shape[1] != num_features:
        raise ValueError(f"points must have shape [N, {num_features}], got {list(points.shape)}")
    points = points.to(torch.float32)
    device = points.device
    max_points, max_voxels = cfg.max_points_per_voxel, cfg.max_voxels
    grid_x, grid_y, grid_z = cfg.grid_size

    cells = voxel_cells(points[:, :3], cfg)
    grid = torch.tensor((grid_x, grid_y, grid_z), dtype=torch.float32, device=device)
    inside = torch.isfinite(points).all(dim=1) & (cells >= 0).all(dim=1) & (cells < grid).all(dim=1)
    points, cells = points[inside], cells[inside].long()

    keys = (cells[:, 2] * grid_y + cells[:, 1]) * grid_x + cells[:, 0]
    # Stable sort: points of one voxel become contiguous and stay in input order.
    order = torch.argsort(keys, stable=True)
    _, group_of_sorted, counts = torch.unique_consecutive(keys[order], return_inverse=True, return_counts=True)
    starts = torch.cumsum(counts, dim=0) - counts
    rank_in_voxel = torch.arange(order.numel(), device=device) - starts[group_of_sorted]
    first_point = order[starts]

    # Voxel slots follow the first point of each voxel; the cap keeps the earliest voxels.
    voxel_order = torch.argsort(first_point)[:max_voxels]
    num_voxels = voxel_order.numel()
    slot_of_group = torch.full_like(counts, num_voxels)
    slot_of_group[voxel_order] = torch.arange(num_voxels, device=device)
    slot = slot_of_group[group_of_sorted]
    kept = (rank_in_voxel < max_points) & (slot < num_voxels)

    # The [M, max_points, F] zero-padded buffer summed over points is exactly HardSimpleVFE's mean.
    buffer = points.new_zeros(num_voxels, max_points, num_features)
    buffer[slot[kept], rank_in_voxel[kept]] = points[order[kept]]
    num_points = counts[voxel_order].clamp(max=max_points).to(torch.int32)
    features = buffer.sum(dim=1) / num_points.to(torch.float32).view(-1, 1)
    coords = cells[first_point[voxel_order]].flip(1).to(torch.int32)
    return Voxels(features=features, coords=coords, num_points=num_points)


def drop_outside_sparse_shape(voxels: Voxels, sparse_shape: tuple[int, int, int]) -> Voxels:
    """Drop voxels whose (z, y, x) cell lies outside the encoder's ``sparse_shape``.

    The r50 config voxelizes a 1080x1080 grid but its encoder is 1024x1024 (docs/model.md §3.2): the original
    feeds the extra voxels to spconv, where they only alias at full resolution and vanish at the first
    strided conv, so dropping them here (LiDAR covers x, y < 48.4 m) is the recommended equivalent.
    """
    shape = torch.tensor(sparse_shape, dtype=voxels.coords.dtype, device=voxels.coords.device)
    return voxels.select((voxels.coords < shape).all(dim=1))
