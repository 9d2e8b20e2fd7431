"""Position encodings of the CMT head against docs/golden.md §C and hand-built camera geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aqr_ros.model.positional import (
    bev_coords,
    camera_ray_coords,
    depth_bins,
    inverse_sigmoid,
    invert_lidar2img,
    pos2embed,
    query_ray_coords,
)

PC_RANGE = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)
PAD_SHAPE = (320, 800)


def _rig(yaw: float = 0.0, t: tuple[float, float, float] = (1.0, 0.2, 1.6)) -> tuple[np.ndarray, np.ndarray]:
    """A camera looking along LiDAR +x rotated by ``yaw`` about z: (K' 4x4, lidar2cam 4x4), float64."""
    k = np.eye(4)
    k[0, 0], k[1, 1], k[0, 2], k[1, 2] = 633.2085, 633.2085, 408.1335, 115.7535
    # camera axes in the LiDAR frame: x right = -y_lidar, y down = -z_lidar, z forward = +x_lidar (then yaw).
    cam_to_lidar_rot = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    c, s = math.cos(yaw), math.sin(yaw)
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    cam_to_lidar = np.eye(4)
    cam_to_lidar[:3, :3] = rz @ cam_to_lidar_rot
    cam_to_lidar[:3, 3] = t
    return k, np.linalg.inv(cam_to_lidar)


def _normalized(p: np.ndarray) -> np.ndarray:
    lo, hi = np.array(PC_RANGE[:3]), np.array(PC_RANGE[3:])
    return (p - lo) / (hi - lo)


def _metric(p: np.ndarray) -> np.ndarray:
    lo, hi = np.array(PC_RANGE[:3]), np.array(PC_RANGE[3:])
    return p * (hi - lo) + lo


def test_inverse_sigmoid_matches_mmdet_semantics() -> None:
    x = torch.tensor([-0.3, 0.0, 1e-7, 0.25, 0.5, 0.9, 1.0, 1.7])
    got = inverse_sigmoid(x)
    expected = [math.log(1e-5), math.log(1e-5), math.log(1e-5), math.log(0.25 / 0.75), 0.0,
                math.log(0.9 / 0.1), math.log(1 / 1e-5), math.log(1 / 1e-5)]
    torch.testing.assert_close(got, torch.tensor(expected), atol=1e-5, rtol=1e-5)
    inner = torch.tensor([0.01, 0.3, 0.77, 0.99])
    torch.testing.assert_close(inverse_sigmoid(inner).sigmoid(), inner)


def test_bev_coords_golden() -> None:
    coords = bev_coords(128, 128)
    assert coords.shape == (16384, 2)
    assert coords[0].tolist() == [0.00390625, 0.00390625]
    assert coords[1].tolist() == [0.01171875, 0.00390625]
    assert coords[127, 0].item() == 0.99609375
    assert coords[128].tolist() == [0.00390625, 0.01171875]  # row-major: next row, y grows
    # non-square grids: x follows the column count, y the row count
    rect = bev_coords(2, 4)
    assert rect[5].tolist() == [1.5 / 4, 1.5 / 2]


def test_pos2embed_golden_example() -> None:
    emb = pos2embed(torch.tensor([[0.5, 0.25]]), num_feats=256)[0]
    assert emb.shape == (512,)
    expected = {0: 1.0, 1: -0.0, 2: 0.999926, 3: 0.012176, 254: 0.709281, 255: 0.704926, 256: -0.0,
                257: -1.0, 258: 0.024351, 259: -0.999703, 511: -0.00616}
    for index, value in expected.items():
        assert emb[index].item() == pytest.approx(value, abs=1e-5), index


def test_pos2embed_batched_shapes_and_y_first() -> None:
    pos = torch.rand(2, 7, 3)
    emb = pos2embed(pos, num_feats=16)
    assert emb.shape == (2, 7, 32)
    swapped = pos2embed(pos[..., [1, 0]], num_feats=16)
    torch.testing.assert_close(emb[..., :16], swapped[..., 16:])  # first half encodes y, second x


def test_depth_bins_linear() -> None:
    bins = depth_bins(64, 54.0)
    assert bins.shape == (64,)
    assert bins[0].item() == 1.0
    assert bins[-1].item() == 53.171875
    assert torch.equal(bins[1:] - bins[:-1], torch.full((63,), 0.828125))


def test_invert_lidar2img_is_float32_inverse_of_float64() -> None:
    k, l2c = _rig(0.4)
    l2i = torch.from_numpy(np.stack([k @ l2c, np.eye(4)])).float()
    inv = invert_lidar2img(l2i)
    assert inv.dtype == torch.float32
    expected = torch.from_numpy(np.linalg.inv(l2i.double().numpy())).float()
    # float64 LU agrees with numpy to 1e-12 (an fp32 inverse would be off by ~3e-7 here)
    torch.testing.assert_close(inv, expected, rtol=0, atol=1e-12)


def test_camera_ray_coords_map_back_to_constructed_points() -> None:
    k, l2c = _rig(0.3)
    lidar2img = k @ l2c
    img2lidar = invert_lidar2img(torch.from_numpy(np.stack([lidar2img, np.eye(4)])).float())
    depths = depth_bins(64, 54.0)
    coords = camera_ray_coords(img2lidar, (20, 50), PAD_SHAPE, depths, PC_RANGE)
    assert coords.shape == (2, 20, 50, 192)
    cam_to_lidar = np.linalg.inv(l2c)
    k_inv = np.linalg.inv(k[:3, :3])
    for i, j, d in [(0, 0, 0), (7, 31, 10), (19, 49, 63), (3, 12, 40)]:
        u, v, depth = 16.0 * j, 16.0 * i, float(depths[d])
        p_cam = k_inv @ np.array([u * depth, v * depth, depth])
        p_lidar = (cam_to_lidar @ np.append(p_cam, 1.0))[:3]
        got = coords[0, i, j, d * 3:(d + 1) * 3].double().numpy()
        np.testing.assert_allclose(got, _normalized(p_lidar), atol=2e-6)
        # and projecting the returned point gives back the pixel (u, v) at depth d
        projected = lidar2img @ np.append(_metric(got), 1.0)
        np.testing.assert_allclose(projected[:3], [u * depth, v * depth, depth], rtol=1e-5, atol=1e-2)
    # identity view: the ray point of pixel (u, v) at depth d is (u*d, v*d, d) itself
    i, j, d = 5, 9, 2
    depth = float(depths[d])
    np.testing.assert_allclose(coords[1, i, j, d * 3:(d + 1) * 3].double().numpy(),
                               _normalized(np.array([16.0 * j * depth, 16.0 * i * depth, depth])), atol=2e-6)


def _query_inputs(points_lidar: np.ndarray, yaws: list[float]) -> tuple[torch.Tensor, ...]:
    mats = [k @ l2c for k, l2c in (_rig(y) for y in yaws)]
    lidar2img = torch.from_numpy(np.stack(mats)[None]).float()  # [1, V, 4, 4]
    ref = torch.from_numpy(_normalized(points_lidar)[None]).float()  # [1, Q, 3]
    return ref, lidar2img, invert_lidar2img(lidar2img)


def test_query_ray_coords_visibility() -> None:
    points = np.array([
        [15.0, 1.0, 0.5],    # in front of view 0, inside the image
        [-15.0, 1.0, 0.5],   # behind view 0: u, v of the z-divided point land inside, but z < 0
        [3.0, 30.0, 0.5],    # in front of view 0 but far left of the image
        [15.0, 0.5, 8.0],    # in front of view 0 but above the (cropped) image top
    ])
    # the second point projected through view 0 lands inside the image after the division by z < 0
    k, l2c = _rig(0.0)
    p = (k @ l2c) @ np.append(points[1], 1.0)
    assert p[2] < 0 and 0 <= p[0] / p[2] < 800 and 0 <= p[1] / p[2] < 320
    ref, lidar2img, img2lidar = _query_inputs(points, [0.0, math.pi])
    coords, visible = query_ray_coords(ref, lidar2img, img2lidar, PAD_SHAPE, depth_bins(64, 54.0), PC_RANGE)
    assert coords.shape == (1, 2, 4, 192)
    assert visible.tolist() == [[[True, False, False, False], [False, True, False, False]]]


def test_query_ray_coords_lie_on_the_camera_ray() -> None:
    points = np.array([[15.0, 1.0, 0.5], [22.0, -4.0, -1.0]])
    yaw = 0.1
    ref, lidar2img, img2lidar = _query_inputs(points, [yaw])
    depths = depth_bins(64, 54.0)
    coords, visible = query_ray_coords(ref, lidar2img, img2lidar, PAD_SHAPE, depths, PC_RANGE)
    assert visible.all()
    _, l2c = _rig(yaw)
    centre = np.linalg.inv(l2c)[:3, 3]
    for q, point in enumerate(points):
        cam_depth = (l2c @ np.append(point, 1.0))[2]
        for d in (0, 17, 63):
            expected = centre + (point - centre) * float(depths[d]) / cam_depth
            got = coords[0, 0, q, d * 3:(d + 1) * 3].double().numpy()
            np.testing.assert_allclose(got, _normalized(expected), atol=2e-6)
