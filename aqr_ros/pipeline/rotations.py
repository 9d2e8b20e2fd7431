"""Rotation maths shared by the pipeline, the ROS layer, the tools and the tests (numpy only, no ROS).

Quaternions are (x, y, z, w) arrays, the order of geometry_msgs/Quaternion, acting on column vectors
(``v' = R @ v``); a yaw is the angle about +z, counter-clockwise from +x, in radians.
"""

from __future__ import annotations

import numpy as np


def quaternion_from_matrix(R: np.ndarray) -> np.ndarray:
    """Unit quaternion with w >= 0 of a 3x3 rotation matrix.

    Shepperd's method: the largest of w², x², y², z² is taken from the diagonal and the others from
    off-diagonal sums, so no component loses precision, 180° turns included.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3):
        raise ValueError(f"expected a 3x3 rotation matrix, got shape {R.shape}")
    trace = R[0, 0] + R[1, 1] + R[2, 2]
    k = int(np.argmax([trace, R[0, 0], R[1, 1], R[2, 2]]))
    q = np.zeros(4)
    if k == 0:
        w = np.sqrt(1.0 + trace) / 2.0
        q[:3] = (R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1])
        q[:3] /= 4.0 * w
        q[3] = w
    else:
        i, j, m = k - 1, k % 3, (k + 1) % 3
        q[i] = np.sqrt(max(1.0 + R[i, i] - R[j, j] - R[m, m], 0.0)) / 2.0
        q[j] = (R[j, i] + R[i, j]) / (4.0 * q[i])
        q[m] = (R[m, i] + R[i, m]) / (4.0 * q[i])
        q[3] = (R[m, j] - R[j, m]) / (4.0 * q[i])
    q /= np.linalg.norm(q)
    return -q if q[3] < 0.0 else q


def matrix_from_quaternion(q: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix of a quaternion (x, y, z, w), normalised first (tf quaternions drift from unit length)."""
    x, y, z, w = np.asarray(q, dtype=np.float64).reshape(4)
    n = x * x + y * y + z * z + w * w
    if not (np.isfinite(n) and n > 0.0):
        raise ValueError(f"quaternion {(x, y, z, w)} has no rotation (zero or non-finite norm)")
    s = 2.0 / n
    return np.array([[1.0 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
                     [s * (x * y + z * w), 1.0 - s * (x * x + z * z), s * (y * z - x * w)],
                     [s * (x * z - y * w), s * (y * z + x * w), 1.0 - s * (x * x + y * y)]])


def quaternion_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a ⊗ b`` (rotate by ``b``, then by ``a``), broadcast over leading axes."""
    ax, ay, az, aw = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bx, by, bz, bw = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz], axis=-1)


def quaternion_from_yaw(yaw: np.ndarray | float) -> np.ndarray:
    """[..., 4] quaternions of rotations by ``yaw`` about +z."""
    half = np.asarray(yaw, dtype=np.float64) / 2.0
    zeros = np.zeros_like(half)
    return np.stack([zeros, zeros, np.sin(half), np.cos(half)], axis=-1)


def yaw_from_quaternion(q: np.ndarray) -> np.ndarray:
    """Yaw in (-pi, pi] of unit [..., 4] quaternions: the ZYX Euler yaw, i.e. the heading of the rotated +x
    axis about +z when the rotation keeps z up."""
    x, y, z, w = np.moveaxis(np.asarray(q, dtype=np.float64), -1, 0)
    return np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
