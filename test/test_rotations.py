"""aqr_ros.pipeline.rotations: known values, round trips, and precision at and near 180° turns."""

import numpy as np
import pytest

from aqr_ros.pipeline.rotations import (
    matrix_from_quaternion,
    quaternion_from_matrix,
    quaternion_from_yaw,
    quaternion_product,
    yaw_from_quaternion,
)


def axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' formula: the rotation by ``angle`` about ``axis`` (independent of the code under test)."""
    u = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    K = np.array([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
    return np.eye(3) + np.sin(angle) * K + (1.0 - np.cos(angle)) * K @ K


def axis_angle_quaternion(axis: np.ndarray, angle: float) -> np.ndarray:
    u = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    return np.r_[u * np.sin(angle / 2.0), np.cos(angle / 2.0)]


def same_rotation(a: np.ndarray, b: np.ndarray) -> bool:
    """q and -q are the same rotation."""
    return np.allclose(a, b, atol=1e-12) or np.allclose(a, -b, atol=1e-12)


RNG = np.random.default_rng(11)
RANDOM_AXES = RNG.normal(size=(30, 3))
RANDOM_ANGLES = RNG.uniform(-np.pi, np.pi, 30)
#: Axes with components of mixed signs and zeros: a 180° turn about them has R - R.T = 0.
AXES_180 = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, -1, 0), (1, 1, 0), (0, 1, -1), (1, -2, 3), (-3, 1, 1e-9),
            *RANDOM_AXES[:10]]


def test_known_values():
    np.testing.assert_allclose(quaternion_from_yaw(np.pi / 2), [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-15)
    np.testing.assert_allclose(matrix_from_quaternion([0, 0, np.sqrt(0.5), np.sqrt(0.5)]),
                               [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)
    np.testing.assert_allclose(matrix_from_quaternion([np.sqrt(0.5), 0, 0, np.sqrt(0.5)]),
                               [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-15)
    np.testing.assert_allclose(quaternion_from_matrix(np.diag([1.0, -1.0, -1.0])), [1, 0, 0, 0])
    np.testing.assert_allclose(quaternion_from_matrix(np.diag([-1.0, 1.0, -1.0])), [0, 1, 0, 0])
    np.testing.assert_allclose(quaternion_from_matrix(np.diag([-1.0, -1.0, 1.0])), [0, 0, 1, 0])
    np.testing.assert_array_equal(quaternion_from_matrix(np.eye(3)), [0, 0, 0, 1])
    assert yaw_from_quaternion([0, 0, np.sin(0.3), np.cos(0.3)]) == pytest.approx(0.6)
    assert yaw_from_quaternion([0, 0, 1, 0]) == pytest.approx(np.pi)


@pytest.mark.parametrize("k", range(len(RANDOM_AXES)))
def test_matrix_and_quaternion_agree_with_axis_angle(k):
    axis, angle = RANDOM_AXES[k], RANDOM_ANGLES[k]
    R, q = axis_angle_matrix(axis, angle), axis_angle_quaternion(axis, angle)
    np.testing.assert_allclose(matrix_from_quaternion(q), R, atol=1e-14)
    got = quaternion_from_matrix(R)
    assert got[3] >= 0 and same_rotation(got, q)
    np.testing.assert_allclose(matrix_from_quaternion(got), R, atol=1e-14)


def test_round_trips_from_random_quaternions():
    for q in RNG.normal(size=(200, 4)):
        unit = q / np.linalg.norm(q)
        R = matrix_from_quaternion(q)  # not unit: normalised first
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-14)
        assert np.linalg.det(R) == pytest.approx(1.0)
        back = quaternion_from_matrix(R)
        np.testing.assert_allclose(back, unit if unit[3] >= 0 else -unit, atol=1e-14)


@pytest.mark.parametrize("axis", AXES_180)
@pytest.mark.parametrize("offset", [0.0, 1e-12, 1e-8, 1e-4, -1e-8])
def test_precision_at_and_near_half_turns(axis, offset):
    angle = np.pi - offset
    R = axis_angle_matrix(axis, angle)
    q = quaternion_from_matrix(R)
    assert abs(np.linalg.norm(q) - 1.0) < 1e-15
    assert same_rotation(q, axis_angle_quaternion(axis, angle))
    np.testing.assert_allclose(matrix_from_quaternion(q), R, atol=1e-14)


def test_quaternion_product_composes_rotations_and_broadcasts():
    a = axis_angle_quaternion([1, 2, 3], 0.7)
    b = axis_angle_quaternion([-2, 0, 1], 2.9)
    np.testing.assert_allclose(matrix_from_quaternion(quaternion_product(a, b)),
                               matrix_from_quaternion(a) @ matrix_from_quaternion(b), atol=1e-14)
    np.testing.assert_allclose(quaternion_product(a, [0, 0, 0, 1]), a, atol=1e-15)
    yaws = quaternion_from_yaw(np.array([0.1, -2.0, 3.0]))
    batch = quaternion_product(a, yaws)
    assert batch.shape == (3, 4)
    for k in range(3):
        np.testing.assert_allclose(batch[k], quaternion_product(a, yaws[k]), atol=1e-15)


def test_yaw_round_trip_and_wrap():
    yaws = np.linspace(-3 * np.pi, 3 * np.pi, 101)
    q = quaternion_from_yaw(yaws)
    assert q.shape == (101, 4)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0)
    got = yaw_from_quaternion(q)
    assert np.all((got > -np.pi - 1e-12) & (got <= np.pi + 1e-12))
    np.testing.assert_allclose(np.cos(got), np.cos(yaws), atol=1e-12)
    np.testing.assert_allclose(np.sin(got), np.sin(yaws), atol=1e-12)
    # The heading of the rotated +x axis, also after a pitch that keeps it out of the ground plane.
    tilted = quaternion_product(quaternion_from_yaw(1.2), axis_angle_quaternion([0, 1, 0], 0.4))
    heading = matrix_from_quaternion(tilted)[:, 0]
    assert yaw_from_quaternion(tilted) == pytest.approx(np.arctan2(heading[1], heading[0]))


def test_rejects_what_is_no_rotation():
    with pytest.raises(ValueError, match="zero or non-finite"):
        matrix_from_quaternion([0.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="zero or non-finite"):
        matrix_from_quaternion([np.nan, 0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="zero or non-finite"):
        matrix_from_quaternion([np.inf, 0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="3x3"):
        quaternion_from_matrix(np.eye(4))
