"""Hard voxelization + mean VFE (docs/model.md §3.1) and the 1080/1024 sparse-shape truncation (§3.2)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from aqr_ros.model.config import LidarConfig, load_config
from aqr_ros.model.voxelize import drop_outside_sparse_shape, voxel_cells, voxelize


@pytest.fixture(scope="module")
def cfg() -> LidarConfig:
    return load_config("cmt_aqr_voxel0100_r50_800x320").lidar


#: A 4 x 4 x 2 grid of 1 m cells with at most 3 points per voxel, for hand-computed cases.
SMALL = LidarConfig(
    point_cloud_range=(0.0, 0.0, 0.0, 4.0, 4.0, 2.0),
    voxel_size=(1.0, 1.0, 1.0),
    max_points_per_voxel=3,
    max_voxels=100,
    sparse_shape=(2, 4, 4),
)


def pts(*rows: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 5)


def test_config_geometry_matches_golden(cfg: LidarConfig) -> None:
    assert cfg.grid_size == (1080, 1080, 40)
    assert cfg.sparse_shape == (41, 1024, 1024)
    assert (cfg.max_points_per_voxel, cfg.max_voxels) == (10, 160000)


def test_hand_computed_example() -> None:
    points = pts(
        (1.5, 0.2, 0.5, 10.0, 0.0),   # cell x1 y0 z0 (voxel A)
        (3.9, 3.9, 1.9, 20.0, 0.1),   # cell x3 y3 z1 (voxel B)
        (1.1, 0.9, 0.1, 30.0, 0.2),   # voxel A again
        (0.0, 2.0, 1.0, 40.0, 0.3),   # cell x0 y2 z1 (voxel C), exactly on cell borders
    )
    v = voxelize(points, SMALL)
    assert v.coords.dtype == torch.int32 and v.num_points.dtype == torch.int32
    assert v.features.dtype == torch.float32
    assert v.coords.tolist() == [[0, 0, 1], [1, 3, 3], [1, 2, 0]]  # (z, y, x), by first point
    assert v.num_points.tolist() == [2, 1, 1]
    torch.testing.assert_close(v.features[0], torch.tensor([1.3, 0.55, 0.3, 20.0, 0.1]))
    torch.testing.assert_close(v.features[1:], points[[1, 3]])


def test_coords_are_zyx(cfg: LidarConfig) -> None:
    # x = -54 + 3.05 -> 30, y = -54 + 2.05 -> 20, z = -5 + 0.25 -> 1
    v = voxelize(pts((-50.95, -51.95, -4.75, 0.0, 0.0)), cfg)
    assert v.coords.tolist() == [[1, 20, 30]]


def test_range_borders_min_included_max_excluded(cfg: LidarConfig) -> None:
    below = torch.nextafter(torch.tensor(-54.0), torch.tensor(-100.0)).item()
    points = pts(
        (-54.0, -54.0, -5.0, 1.0, 0.0),   # all minima: kept in cell 0
        (54.0, 0.0, 0.0, 2.0, 0.0),       # x max: dropped
        (0.0, 54.0, 0.0, 3.0, 0.0),       # y max: dropped
        (0.0, 0.0, 3.0, 4.0, 0.0),        # z max: dropped
        (below, 0.0, 0.0, 5.0, 0.0),      # just below x min: dropped
        (0.0, 0.0, -5.0001, 6.0, 0.0),    # just below z min: dropped
        (53.95, 53.95, 2.9, 7.0, 0.0),    # last cell of every axis: kept
    )
    v = voxelize(points, cfg)
    assert v.coords.tolist() == [[0, 0, 0], [39, 1079, 1079]]
    assert v.features[:, 3].tolist() == [1.0, 7.0]


def test_cells_use_the_float32_formula(cfg: LidarConfig) -> None:
    # float32: (-31.6f + 54) / 0.1f rounds to 224.0 exactly; in float64 the same point gives 223.
    x = torch.tensor([-31.6], dtype=torch.float32)
    assert ((x.double() + 54.0) / 0.1).floor().item() == 223.0
    assert voxel_cells(torch.tensor([[-31.6, 0.0, 0.0]]), cfg)[0, 0].item() == 224.0
    assert voxelize(pts((-31.6, 0.0, 0.0, 0.0, 0.0)), cfg).coords[0, 2].item() == 224


def test_more_points_than_cap_keeps_first_in_order() -> None:
    n = 5  # cap is 3
    points = torch.zeros(n, 5)
    points[:, :3] = torch.tensor([2.5, 1.5, 0.5])
    points[:, 3] = torch.arange(n, dtype=torch.float32) * 10.0  # 0, 10, 20, 30, 40
    v = voxelize(points, SMALL)
    assert v.num_points.tolist() == [3]
    assert v.features[0, 3].item() == pytest.approx(10.0)  # mean of 0, 10, 20


def test_ten_point_cap_on_the_real_config(cfg: LidarConfig) -> None:
    points = torch.zeros(13, 5)
    points[:, :3] = torch.tensor([0.05, 0.05, 0.1])
    points[:, 4] = torch.arange(13, dtype=torch.float32)
    v = voxelize(points, cfg)
    assert v.num_points.tolist() == [10]
    assert v.features[0, 4].item() == pytest.approx(4.5)  # mean of 0..9, not 0..12


def test_voxel_order_follows_first_point_and_cap_keeps_earliest() -> None:
    cells = [(3, 0, 0), (0, 0, 0), (3, 0, 0), (1, 1, 1), (2, 2, 0), (0, 3, 1), (0, 0, 0)]
    points = torch.tensor([[x + 0.5, y + 0.5, z + 0.5, float(i), 0.0] for i, (x, y, z) in enumerate(cells)])
    v = voxelize(points, SMALL)
    assert v.coords.tolist() == [[0, 0, 3], [0, 0, 0], [1, 1, 1], [0, 2, 2], [1, 3, 0]]
    assert v.num_points.tolist() == [2, 2, 1, 1, 1]
    capped = voxelize(points, dataclasses.replace(SMALL, max_voxels=3))
    assert capped.coords.tolist() == [[0, 0, 3], [0, 0, 0], [1, 1, 1]]
    assert capped.features[:, 3].tolist() == [1.0, 3.5, 3.0]  # dropped voxels leak nothing


def test_non_finite_points_are_dropped() -> None:
    nan, inf = float("nan"), float("inf")
    points = pts(
        (0.5, 0.5, 0.5, 1.0, 0.0),
        (nan, 0.5, 0.5, 100.0, 0.0),
        (0.5, 0.5, 0.5, nan, 0.0),      # only the intensity is NaN: dropped, would poison the mean
        (0.5, 0.5, 0.5, 5.0, inf),
        (-inf, 0.5, 0.5, 100.0, 0.0),
        (0.5, 0.5, 0.5, 3.0, 0.0),
    )
    v = voxelize(points, SMALL)
    assert v.num_points.tolist() == [2]
    assert v.features.tolist() == [[0.5, 0.5, 0.5, 2.0, 0.0]]


def test_empty_and_all_outside(cfg: LidarConfig) -> None:
    for points in (torch.zeros(0, 5), pts((100.0, 0.0, 0.0, 0.0, 0.0))):
        v = voxelize(points, cfg)
        assert v.features.shape == (0, 5) and v.coords.shape == (0, 3) and v.num_points.shape == (0,)
        assert drop_outside_sparse_shape(v, cfg.sparse_shape).coords.shape == (0, 3)


def test_wrong_point_shape_is_an_error(cfg: LidarConfig) -> None:
    with pytest.raises(ValueError, match=r"\[N, 5\]"):
        voxelize(torch.zeros(4, 4), cfg)


def test_drop_outside_sparse_shape_truncates_at_48_4_m(cfg: LidarConfig) -> None:
    points = pts(
        (48.35, 0.0, 0.0, 1.0, 0.0),    # x index 1023: kept
        (48.45, 0.0, 0.0, 2.0, 0.0),    # x index 1024: dropped
        (0.0, 48.45, 0.0, 3.0, 0.0),    # y index 1024: dropped
        (-54.0, 48.35, 2.9, 4.0, 0.0),  # y index 1023, z index 39: kept
    )
    v = voxelize(points, cfg)
    assert v.features.shape[0] == 4
    kept = drop_outside_sparse_shape(v, cfg.sparse_shape)
    assert kept.coords.tolist() == [[25, 540, 1023], [39, 1023, 0]]
    assert kept.features[:, 3].tolist() == [1.0, 4.0]
    assert kept.num_points.tolist() == [1, 1]


def test_random_cloud_against_a_per_voxel_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    scale, shift = torch.tensor([5.0, 5.0, 2.5, 255.0, 0.5]), torch.tensor([0.5, 0.5, 0.25, 0.0, 0.0])
    points = torch.rand(400, 5, generator=gen) * scale - shift  # about 1/3 of the points fall outside
    v = voxelize(points, SMALL)
    cells = torch.floor(points[:, :3])
    inside = ((cells >= 0) & (cells < torch.tensor([4.0, 4.0, 2.0]))).all(1)
    expected: dict[tuple[int, int, int], list[int]] = {}
    for i in torch.nonzero(inside).flatten().tolist():
        x, y, z = (int(c) for c in cells[i])
        expected.setdefault((z, y, x), []).append(i)
    assert v.coords.tolist() == [list(k) for k in expected]  # dicts keep first-insertion order
    for j, rows in enumerate(expected.values()):
        assert v.num_points[j].item() == min(len(rows), 3)
        torch.testing.assert_close(v.features[j], points[rows[:3]].mean(0))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(cfg: LidarConfig) -> None:
    gen = torch.Generator().manual_seed(1)
    points = torch.randn(50000, 5, generator=gen) * torch.tensor([20.0, 20.0, 1.0, 50.0, 0.1])
    cpu, gpu = voxelize(points, cfg), voxelize(points.cuda(), cfg)
    assert torch.equal(cpu.coords, gpu.coords.cpu()) and torch.equal(cpu.num_points, gpu.num_points.cpu())
    torch.testing.assert_close(cpu.features, gpu.features.cpu())
