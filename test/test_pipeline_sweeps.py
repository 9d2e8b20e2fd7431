"""Sweep accumulation: order, time lag, ego-motion compensation, resets, intensity scaling."""

import numpy as np
import pytest

from aqr_ros.pipeline.calibration import axes_to_model, points_to_model
from aqr_ros.pipeline.sweeps import SweepAccumulator, scale_intensity


def pose(x: float, y: float, yaw: float) -> np.ndarray:
    """LiDAR pose in the fixed frame: planar position and heading."""
    T = np.eye(4)
    c, s = np.cos(yaw), np.sin(yaw)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:2, 3] = [x, y]
    return T


def cloud(n: int, value: float) -> np.ndarray:
    """n points whose every coordinate and intensity is ``value`` (identifies the sweep)."""
    return np.full((n, 4), value, dtype=np.float32)


def test_key_frame_first_then_most_recent_with_positive_lags():
    acc = SweepAccumulator(num_sweeps=10)
    for i, t in enumerate([1.7e9, 1.7e9 + 0.05, 1.7e9 + 0.1]):  # epoch stamps: lags are taken in float64
        assert acc.push(cloud(i + 2, float(i)), t) is False
    batch = acc.build()
    assert batch.points.dtype == np.float32 and batch.points.shape == (2 + 3 + 4, 5)
    np.testing.assert_array_equal(batch.points[:, 3], [2] * 4 + [1] * 3 + [0] * 2)
    np.testing.assert_allclose(batch.points[:, 4], [0.0] * 4 + [0.05] * 3 + [0.1] * 2, atol=1e-6)
    assert batch.num_sweeps == 2
    # No poses at all: used as is and reported.
    assert batch.num_uncompensated == 2
    np.testing.assert_array_equal(batch.points[4:7, :3], 1.0)


def test_keeps_at_most_num_sweeps_previous_clouds():
    acc = SweepAccumulator(num_sweeps=2)
    for i in range(5):
        acc.push(cloud(1, float(i)), float(i))
    batch = acc.build()
    np.testing.assert_array_equal(batch.points[:, 3], [4, 3, 2])
    assert len(acc) == 3 and batch.num_sweeps == 2


def test_zero_sweeps_gives_key_frame_only():
    acc = SweepAccumulator(num_sweeps=0)
    acc.push(cloud(2, 1.0), 1.0)
    acc.push(cloud(3, 2.0), 2.0)
    batch = acc.build()
    assert batch.points.shape == (3, 5) and batch.num_sweeps == 0


def test_motion_compensation_puts_a_static_point_where_it_is_now():
    world = np.array([20.0, 5.0, 1.0, 1.0])
    T_then, T_now = pose(0.0, 0.0, 0.0), pose(1.5, 0.3, np.deg2rad(10.0))
    seen_then = np.linalg.inv(T_then) @ world
    seen_now = np.linalg.inv(T_now) @ world
    acc = SweepAccumulator(num_sweeps=1)
    acc.push(np.array([[*seen_then[:3], 7.0]], dtype=np.float32), 10.0, T_then)
    acc.push(np.array([[*seen_now[:3], 9.0]], dtype=np.float32), 10.1, T_now)
    batch = acc.build()
    assert batch.num_uncompensated == 0 and batch.num_sweeps == 1
    np.testing.assert_allclose(batch.points[0, :3], seen_now[:3], atol=1e-5)
    np.testing.assert_allclose(batch.points[1, :3], seen_now[:3], atol=1e-4)
    assert batch.points[1, 3] == 7.0 and batch.points[1, 4] == pytest.approx(0.1)
    # Without compensation the old observation would be far off.
    assert np.linalg.norm(seen_then[:3] - seen_now[:3]) > 1.0


def test_a_missing_pose_leaves_that_sweep_uncompensated():
    acc = SweepAccumulator(num_sweeps=3)
    acc.push(cloud(1, 1.0), 1.0, pose(0, 0, 0))
    acc.push(cloud(1, 2.0), 1.1, None)
    acc.push(cloud(1, 3.0), 1.2, pose(5.0, 0, 0))
    batch = acc.build()
    assert batch.num_sweeps == 2 and batch.num_uncompensated == 1
    np.testing.assert_allclose(batch.points[1, :3], 2.0)  # no pose: as is
    np.testing.assert_allclose(batch.points[2, :3], [1.0 - 5.0, 1.0, 1.0], atol=1e-6)


def test_model_axes_are_folded_into_every_sweep():
    rng = np.random.default_rng(1)
    acc = SweepAccumulator(num_sweeps=2)
    for t in range(3):
        acc.push(rng.normal(size=(6, 4)).astype(np.float32), float(t), pose(t * 0.5, 0.0, t * 0.1))
    in_ros = acc.build().points
    in_model = acc.build(axes_to_model("rep103")).points
    np.testing.assert_allclose(in_model, points_to_model(in_ros, "rep103"), atol=1e-5)


def test_time_going_backwards_resets_history():
    acc = SweepAccumulator(num_sweeps=5)
    acc.push(cloud(1, 1.0), 50.0)
    acc.push(cloud(1, 2.0), 50.1)
    assert acc.push(cloud(1, 3.0), 10.0) is True
    batch = acc.build()
    assert len(acc) == 1 and batch.num_sweeps == 0
    np.testing.assert_array_equal(batch.points[:, 3], [3.0])


def test_same_stamp_replaces_the_key_frame():
    acc = SweepAccumulator(num_sweeps=5)
    acc.push(cloud(1, 1.0), 1.0)
    assert acc.push(cloud(2, 2.0), 1.0) is False
    np.testing.assert_array_equal(acc.build().points[:, 3], [2.0, 2.0])


def test_max_lag_leaves_out_stale_sweeps():
    acc = SweepAccumulator(num_sweeps=5, max_lag_s=0.5)
    for t, v in [(0.0, 1.0), (1.0, 2.0), (1.3, 3.0)]:
        acc.push(cloud(1, v), t)
    np.testing.assert_array_equal(acc.build().points[:, 3], [3.0, 2.0])


def test_empty_accumulator_and_bad_inputs():
    acc = SweepAccumulator(num_sweeps=3)
    assert acc.build().points.shape == (0, 5)
    with pytest.raises(ValueError):
        acc.push(np.zeros((3, 5), dtype=np.float32), 0.0)
    with pytest.raises(ValueError):
        acc.push(np.zeros((3, 4), dtype=np.float32), 0.0, np.eye(3))
    with pytest.raises(ValueError):
        SweepAccumulator(num_sweeps=-1)


def test_scale_intensity_multiplies_and_clips():
    pts = np.array([[0, 0, 0, 0.5], [0, 0, 0, 0.1], [0, 0, 0, -3.0]], dtype=np.float32)
    out = scale_intensity(pts, 255.0)
    np.testing.assert_allclose(out[:, 3], [127.5, 25.5, 0.0], rtol=1e-6)
    np.testing.assert_allclose(scale_intensity(np.array([[0, 0, 0, 4000.0]]), 1.0)[:, 3], [255.0])
    assert pts[0, 3] == 0.5
