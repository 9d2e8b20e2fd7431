"""Non-blocking tf access for the node: 4x4 matrices, cached camera extrinsics, LiDAR poses, and camera
extrinsics corrected for the ego motion between an image's exposure and the cloud stamp.

Uses ``tf2_ros.Buffer`` and ``TransformListener`` (from a ROS 2 install; tests put a clearly named
double on the path). Lookups use a zero timeout, so no executor callback ever waits for tf.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
from geometry_msgs.msg import TransformStamped
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.time import Time

from aqr_ros.pipeline.rotations import matrix_from_quaternion

try:
    import tf2_ros
except ImportError:  # pragma: no cover - exercised only on broken installs
    tf2_ros = None


class TfUnavailableError(RuntimeError):
    """tf2_ros cannot be imported."""


def transform_to_matrix(t: TransformStamped) -> np.ndarray:
    """4x4 float64 matrix of a TransformStamped (``p_header_frame = T @ p_child_frame``)."""
    q = t.transform.rotation
    T = np.eye(4)
    T[:3, :3] = matrix_from_quaternion((q.x, q.y, q.z, q.w))
    tr = t.transform.translation
    T[:3, 3] = (tr.x, tr.y, tr.z)
    return T


@dataclass(frozen=True)
class Lookup:
    """Result of one lookup: the matrix, or why there is none; for camera extrinsics, which kind it is."""

    matrix: Optional[np.ndarray]
    reason: str = ""
    #: :meth:`TfSource.camera_extrinsic`: "time-corrected via <fixed frame>" or "static: <why not corrected>".
    source: str = ""


class TfSource:
    """tf buffer and listener on ``node`` with zero-timeout lookups and a per-pair extrinsics cache."""

    def __init__(self, node: Node, refresh_period_s: float = 0.0, cache_time_s: float = 10.0) -> None:
        """``refresh_period_s`` > 0 re-reads cached extrinsics that old (in the node clock); 0 caches forever."""
        if tf2_ros is None:
            raise TfUnavailableError("tf2_ros is not importable: install the tf2_ros package of your ROS 2 "
                                     "distribution")
        self._node = node
        self._refresh_ns = int(refresh_period_s * 1e9)
        self.buffer = tf2_ros.Buffer(cache_time=Duration(seconds=cache_time_s))
        self.listener = tf2_ros.TransformListener(self.buffer, node, spin_thread=False)
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[np.ndarray, int]] = {}

    def lookup(self, target: str, source: str, stamp: Optional[Time] = None) -> Lookup:
        """``T_target_source`` at ``stamp`` (None = latest available) without waiting."""
        if not target or not source:
            return Lookup(None, f"empty frame id (target {target!r}, source {source!r})")
        try:
            t = self.buffer.lookup_transform(target, source, stamp if stamp is not None else Time())
        except tf2_ros.TransformException as exc:
            return Lookup(None, f"no tf {source} -> {target}: {exc}")
        return Lookup(transform_to_matrix(t))

    def extrinsic(self, target: str, source: str) -> Lookup:
        """Cached latest ``T_target_source`` (static calibration), looked up again after the refresh period."""
        now = self._node.get_clock().now().nanoseconds
        key = (target, source)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and (self._refresh_ns <= 0 or now - cached[1] < self._refresh_ns):
            return Lookup(cached[0])
        result = self.lookup(target, source)
        if result.matrix is None:
            return Lookup(cached[0], "") if cached is not None else result
        with self._lock:
            self._cache[key] = (result.matrix, now)
        return result

    def camera_extrinsic(self, camera_frame: str, lidar_frame: str, image_stamp: Time, cloud_stamp: Time,
                         fixed_frame: str) -> Lookup:
        """``T(camera at image_stamp <- lidar at cloud_stamp)`` through ``fixed_frame`` without waiting.

        This includes the ego motion between the exposure and the cloud, as the nuScenes training's lidar2img
        (through the global frame) did. Without a ``fixed_frame`` (time correction off) or either pose, it is the
        cached static :meth:`extrinsic`; ``source`` says which, ``reason`` why there is none at all.
        """
        static = self.extrinsic(camera_frame, lidar_frame)
        if static.matrix is None:
            return static
        if not fixed_frame:
            return replace(static, source="static: time correction off (tf.time_correct_extrinsics false or "
                                          "tf.fixed_frame empty)")
        try:
            t = self.buffer.lookup_transform_full(camera_frame, image_stamp, lidar_frame, cloud_stamp, fixed_frame,
                                                  Duration())
        except tf2_ros.TransformException as exc:
            return replace(static, source=f"static: no pose in {fixed_frame} at the image and cloud stamps ({exc})")
        return Lookup(transform_to_matrix(t), source=f"time-corrected via {fixed_frame}")

    def close(self) -> None:
        """Stop listening to /tf and /tf_static (lifecycle cleanup); the node keeps running."""
        self.listener.unregister()

    def forget(self) -> None:
        """Drop the cached extrinsics and the buffered transforms (time jumped back)."""
        with self._lock:
            self._cache.clear()
        self.buffer.clear()
