"""TEST DOUBLE of the small part of the ``tf2_ros`` Python API that aqr_ros uses.

``tf2_ros`` has no PyPI wheel, so tests on machines without a ROS 2 distribution put this package on
``sys.path`` (after everything else, so a real install wins). It is not tf2: it supports only what the
node calls, namely ``Buffer(cache_time=...)``, ``Buffer.lookup_transform`` / ``can_transform`` with a
zero timeout (``Time()`` = latest common time, otherwise linear/slerp interpolation inside the cached
interval), chaining through the frame tree, the two-time ``lookup_transform_full`` through a fixed frame,
``TransformListener(buffer, node)`` subscribing ``/tf`` and ``/tf_static`` (tf2_msgs/TFMessage) and its
``unregister``, and the tf2 exception types.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Optional

import numpy as np
from geometry_msgs.msg import TransformStamped
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from tf2_msgs.msg import TFMessage

from aqr_ros.pipeline.rotations import matrix_from_quaternion, quaternion_from_matrix

__all__ = [
    "Buffer", "ConnectivityException", "ExtrapolationException", "LookupException", "TransformException",
    "TransformListener",
]


class TransformException(Exception):
    """Base of the tf2 lookup errors."""


class LookupException(TransformException):
    """A frame is unknown."""


class ConnectivityException(TransformException):
    """The two frames are not in one tree."""


class ExtrapolationException(TransformException):
    """The requested time is outside the cached interval."""


def _slerp(q0: np.ndarray, q1: np.ndarray, a: float) -> np.ndarray:
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + a * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - a) * theta) * q0 + np.sin(a * theta) * q1) / np.sin(theta)


def _stamp_ns(time: Any) -> int:
    """Nanoseconds of an rclpy Time or a builtin_interfaces/Time message."""
    return time.nanoseconds if isinstance(time, Time) else Time.from_msg(time).nanoseconds


def _transform_msg(T: np.ndarray, target_frame: str, source_frame: str, stamp_ns: int) -> TransformStamped:
    """TransformStamped of the 4x4 ``T`` (target <- source) stamped ``stamp_ns``."""
    out = TransformStamped()
    out.header.frame_id = target_frame
    out.header.stamp = Time(nanoseconds=stamp_ns).to_msg()
    out.child_frame_id = source_frame
    out.transform.translation.x, out.transform.translation.y, out.transform.translation.z = T[:3, 3].tolist()
    qx, qy, qz, qw = quaternion_from_matrix(T[:3, :3]).tolist()
    out.transform.rotation.x, out.transform.rotation.y = qx, qy
    out.transform.rotation.z, out.transform.rotation.w = qz, qw
    return out


class Buffer:
    """Parent/child transforms with a time history per child; lookups never block (test double)."""

    def __init__(self, cache_time: Optional[Duration] = None, node: Any = None) -> None:
        self._cache_ns = (cache_time or Duration(seconds=10)).nanoseconds
        self._lock = threading.Lock()
        self._parent: dict[str, str] = {}
        # child -> deque of (stamp_ns, translation[3], quaternion[4]); static ones have stamp None
        self._history: dict[str, deque] = {}
        self._static: set[str] = set()

    def clear(self) -> None:
        """Forget the dynamic transforms; static ones stay (as tf2's static cache does)."""
        with self._lock:
            for child in [c for c in self._history if c not in self._static]:
                del self._history[child]
                del self._parent[child]

    def set_transform(self, transform: TransformStamped, authority: str) -> bool:
        """Store a dynamic transform."""
        return self._store(transform, static=False)

    def set_transform_static(self, transform: TransformStamped, authority: str) -> bool:
        """Store a static transform (valid at every time)."""
        return self._store(transform, static=True)

    def _store(self, t: TransformStamped, static: bool) -> bool:
        child, parent = t.child_frame_id.lstrip("/"), t.header.frame_id.lstrip("/")
        stamp = Time.from_msg(t.header.stamp).nanoseconds
        tr = np.array([t.transform.translation.x, t.transform.translation.y, t.transform.translation.z])
        r = t.transform.rotation
        q = np.array([r.x, r.y, r.z, r.w], dtype=np.float64)
        with self._lock:
            self._parent[child] = parent
            hist = self._history.setdefault(child, deque())
            if static:
                self._static.add(child)
                hist.clear()
                hist.append((stamp, tr, q))
                return True
            self._static.discard(child)
            if hist and stamp < hist[-1][0]:
                return False
            hist.append((stamp, tr, q))
            while hist and hist[-1][0] - hist[0][0] > self._cache_ns:
                hist.popleft()
        return True

    def _chain(self, frame: str) -> list[str]:
        chain = [frame]
        while chain[-1] in self._parent:
            chain.append(self._parent[chain[-1]])
            if len(chain) > 1000:
                raise ConnectivityException(f"loop in the tf tree at {frame!r}")
        return chain

    def _link_at(self, child: str, stamp_ns: int) -> np.ndarray:
        """4x4 parent <- child at ``stamp_ns`` (0 = latest)."""
        hist = self._history[child]
        if child in self._static or stamp_ns == 0:
            _, tr, q = hist[-1]
        else:
            if stamp_ns < hist[0][0] or stamp_ns > hist[-1][0]:
                raise ExtrapolationException(
                    f"lookup of {child!r} at {stamp_ns * 1e-9:.3f} s outside the cached interval "
                    f"[{hist[0][0] * 1e-9:.3f}, {hist[-1][0] * 1e-9:.3f}] s")
            times = [h[0] for h in hist]
            i = int(np.searchsorted(times, stamp_ns))
            if times[i] == stamp_ns:
                _, tr, q = hist[i]
            else:
                (t0, tr0, q0), (t1, tr1, q1) = hist[i - 1], hist[i]
                a = (stamp_ns - t0) / (t1 - t0)
                tr, q = tr0 + a * (tr1 - tr0), _slerp(q0, q1, a)
        T = np.eye(4)
        T[:3, :3] = matrix_from_quaternion(q)
        T[:3, 3] = tr
        return T

    def _latest_common_ns(self, links: list[str]) -> int:
        dynamic = [self._history[c][-1][0] for c in links if c not in self._static]
        return min(dynamic) if dynamic else 0

    def _matrix(self, target: str, source: str, stamp_ns: int) -> tuple[np.ndarray, int]:
        target, source = target.lstrip("/"), source.lstrip("/")
        with self._lock:
            known = set(self._parent) | set(self._parent.values())
            for frame in (target, source):
                if frame not in known:
                    raise LookupException(f'"{frame}" passed to lookup_transform argument does not exist')
            up_s, up_t = self._chain(source), self._chain(target)
            common = next((f for f in up_s if f in up_t), None)
            if common is None:
                raise ConnectivityException(f"{source!r} and {target!r} are not part of the same tree")
            links_s = up_s[:up_s.index(common)]
            links_t = up_t[:up_t.index(common)]
            when = stamp_ns or self._latest_common_ns(links_s + links_t)
            T_common_source = np.eye(4)
            for child in links_s:
                T_common_source = self._link_at(child, when) @ T_common_source
            T_common_target = np.eye(4)
            for child in links_t:
                T_common_target = self._link_at(child, when) @ T_common_target
        return np.linalg.inv(T_common_target) @ T_common_source, when

    def lookup_transform(self, target_frame: str, source_frame: str, time: Time,
                         timeout: Optional[Duration] = None) -> TransformStamped:
        """``target_frame`` <- ``source_frame`` at ``time`` (``Time()`` = latest); raises a TransformException."""
        T, when = self._matrix(target_frame, source_frame, _stamp_ns(time))
        return _transform_msg(T, target_frame, source_frame, when)

    def lookup_transform_full(self, target_frame: str, target_time: Time, source_frame: str, source_time: Time,
                              fixed_frame: str, timeout: Optional[Duration] = None) -> TransformStamped:
        """``target_frame`` at ``target_time`` <- ``source_frame`` at ``source_time`` through ``fixed_frame``, the
        frame taken as not moving: ``T_target_fixed(target_time) @ T_fixed_source(source_time)``, stamped with the
        target time as tf2 does; ``Time()`` = latest; raises a TransformException."""
        T_fixed_source, _ = self._matrix(fixed_frame, source_frame, _stamp_ns(source_time))
        T_target_fixed, when = self._matrix(target_frame, fixed_frame, _stamp_ns(target_time))
        return _transform_msg(T_target_fixed @ T_fixed_source, target_frame, source_frame, when)

    def can_transform(self, target_frame: str, source_frame: str, time: Time,
                      timeout: Optional[Duration] = None) -> bool:
        """Whether :meth:`lookup_transform` would succeed now."""
        try:
            self.lookup_transform(target_frame, source_frame, time)
        except TransformException:
            return False
        return True


class TransformListener:
    """Feeds a :class:`Buffer` from ``/tf`` and ``/tf_static`` (test double; no own spin thread)."""

    def __init__(self, buffer: Buffer, node: Node, *, spin_thread: bool = False, qos: Any = None,
                 static_qos: Any = None, callback_group: Any = None) -> None:
        self.buffer = buffer
        self._node = node
        dynamic = qos or QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST)
        static = static_qos or QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST,
                                          durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                          reliability=ReliabilityPolicy.RELIABLE)
        self._subs = [
            node.create_subscription(TFMessage, "/tf", self._on_tf, dynamic, callback_group=callback_group),
            node.create_subscription(TFMessage, "/tf_static", self._on_static, static,
                                     callback_group=callback_group),
        ]

    def unregister(self) -> None:
        """Destroy the /tf and /tf_static subscriptions (as tf2_ros' listener does)."""
        for sub in self._subs:
            self._node.destroy_subscription(sub)
        self._subs = []

    def _on_tf(self, msg: TFMessage) -> None:
        for t in msg.transforms:
            self.buffer.set_transform(t, "default_authority")

    def _on_static(self, msg: TFMessage) -> None:
        for t in msg.transforms:
            self.buffer.set_transform_static(t, "default_authority")
