"""Integration-test harness: starts the real aqr_node process and talks to it over DDS on loopback.

The test process plays a small sensor rig (the synthetic rig's calibration, half-resolution camera
images, a fixed random cloud) through its own rclpy node and records every output of the node under
test. Used by the ``test_node_*.py`` modules; each takes its ROS domain from conftest's ``ros_domain``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, ShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Float64
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection3DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from aqr_ros.ros.to_msg import camera_info_msg, image_from_array, pointcloud2_from_structured, transform_stamped
from aqr_ros.ros.to_msg import nanoseconds_from_stamp as ns_of
from aqr_ros.ros.to_msg import stamp_from_nanoseconds as stamp_msg
from aqr_ros.tools.processes import NODE_STOP_S, stop
from aqr_ros.tools.synthetic_rig import BASE_FRAME, CAMERA_NAMES, LIDAR_FRAME, ODOM_FRAME, Rig
from conftest import REPO_ROOT, TINY_CONFIG

#: Camera images are sent at half the rig's resolution (the node must handle any resolution).
IMAGE_SCALE = 0.5
SEC = 1_000_000_000
#: odom → base_link is also sent this far ahead of each frame, as a fast odometry source is: the node looks a
#: cloud's pose up without waiting, and the /tf message of the frame's own stamp may be handled after the cloud.
TF_LEAD_NS = 2 * SEC


def node_command(namespace: str, params: dict[str, Any], remaps: dict[str, str]) -> list[str]:
    """Arguments for ``python`` starting the node with the shipped params file plus overrides and remaps."""
    args = ["-m", "aqr_ros.ros.node", "--ros-args", "--params-file", str(REPO_ROOT / "config" / "aqr.yaml"),
            "-p", "model.allow_random_weights:=true"]  # the tests' tiny models run on random weights
    if namespace:
        args += ["-r", f"__ns:={namespace}"]
    for name, value in params.items():
        args += ["-p", f"{name}:={value}"]
    for src, dst in remaps.items():
        args += ["-r", f"{src}:={dst}"]
    return args


def rig_remaps(prefix: str = "/rig") -> dict[str, str]:
    """Remaps of the node's inputs onto the harness topics under ``prefix``."""
    remaps = {"~/input/pointcloud": f"{prefix}/lidar/points"}
    for i, name in enumerate(CAMERA_NAMES):
        remaps[f"~/input/camera{i}/image"] = f"{prefix}/{name}/image"
        remaps[f"~/input/camera{i}/camera_info"] = f"{prefix}/{name}/camera_info"
    return remaps


def start_node(args: Sequence[str], domain_id: int) -> "OutputLog":
    """Start ``python <args>`` in its own process group on ``domain_id`` with the source tree and test doubles.

    Mirrors conftest's ``ros_env``/``spawn_python`` for module-scoped fixtures; stop it with :func:`stop_node`.
    """
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["PYTHONUNBUFFERED"] = "1"
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *paths, str(REPO_ROOT / "test" / "doubles")])
    proc = subprocess.Popen([sys.executable, *args], env=env, cwd=str(REPO_ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return OutputLog(proc)


def stop_node(log: "OutputLog") -> None:
    """SIGINT the node's process group, then SIGKILL it if it has not exited within NODE_STOP_S."""
    stop(log.proc, NODE_STOP_S)
    log.join()


class OutputLog:
    """Reads the node process's combined stdout/stderr in a thread so the pipe never fills."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
        except (ValueError, OSError):  # the pipe was closed by stop_node after a timed-out join
            return

    def text(self) -> str:
        """Everything printed so far."""
        return "\n".join(self.lines)

    def join(self) -> None:
        """Wait for the reader to reach the end of the output (after the process exited)."""
        self._thread.join(timeout=10)
        self.proc.stdout.close()


@dataclass
class Recorded:
    """Messages received from the node under test, in arrival order."""

    detections: list[Detection3DArray] = field(default_factory=list)
    markers: list[MarkerArray] = field(default_factory=list)
    label_info: list[LabelInfo] = field(default_factory=list)
    diagnostics: list[DiagnosticArray] = field(default_factory=list)
    processing_ms: list[Float64] = field(default_factory=list)
    images: dict[str, list[Image]] = field(default_factory=dict)


class RigHarness:
    """A test-side rclpy node publishing rig inputs and recording the node's outputs, spun in a thread."""

    def __init__(self, domain_id: int, node_ns: str, node_name: str = "aqr_node", prefix: str = "/rig",
                 seed: int = 0) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node("aqr_test_harness", context=self.context)
        self.rig = Rig.nuscenes_like()
        self.prefix = prefix
        #: Publish /clock at every frame stamp (for nodes with use_sim_time).
        self.publish_clock = False
        #: Stamp of the newest frame published (tests step on from it).
        self.last_stamp = 0
        self.base = f"{node_ns.rstrip('/')}/{node_name}"
        self.rec = Recorded()
        self._lock = threading.RLock()
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        n = self.node
        self.cloud_pub = n.create_publisher(PointCloud2, f"{prefix}/lidar/points", qos)
        self.image_pubs = [n.create_publisher(Image, f"{prefix}/{c}/image", qos) for c in CAMERA_NAMES]
        self.info_pubs = [n.create_publisher(CameraInfo, f"{prefix}/{c}/camera_info", qos) for c in CAMERA_NAMES]
        self.tf_pub = n.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))
        self.tf_static_pub = n.create_publisher(
            TFMessage, "/tf_static", QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                                reliability=ReliabilityPolicy.RELIABLE))
        self.clock_pub = n.create_publisher(Clock, "/clock", QoSProfile(depth=10))
        self._subscribe(Detection3DArray, "output/detections", self.rec.detections)
        self._subscribe(MarkerArray, "output/markers", self.rec.markers)
        self._subscribe(Float64, "debug/processing_time_ms", self.rec.processing_ms)
        self._subscribe(LabelInfo, "output/label_info", self.rec.label_info,
                        QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                   reliability=ReliabilityPolicy.RELIABLE))
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        rng = np.random.default_rng(seed)
        self.cloud_points = self._random_cloud(rng, 20000)
        h, w = int(900 * IMAGE_SCALE), int(1600 * IMAGE_SCALE)
        self.images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in CAMERA_NAMES]
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(n)
        self._closing = False
        self._spin_error: BaseException | None = None
        self._spin = threading.Thread(target=self._spin_until_shutdown, daemon=True)
        self._spin.start()

    # ----------------------------------------------------------------- set-up

    @staticmethod
    def _random_cloud(rng: np.random.Generator, num: int) -> np.ndarray:
        dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4"), ("ring", "<u2")])
        pts = np.zeros(num, dtype=dtype)
        pts["x"] = rng.uniform(-40, 40, num)
        pts["y"] = rng.uniform(-40, 40, num)
        pts["z"] = rng.uniform(-1.8, 1.0, num)
        pts["intensity"] = rng.uniform(0, 100, num)
        pts["ring"] = rng.integers(0, 32, num)
        return pts

    def _subscribe(self, msg_type: type, rel: str, sink: list, qos: Any = 10) -> None:
        def store(msg: Any) -> None:
            with self._lock:
                sink.append(msg)
        self.node.create_subscription(msg_type, f"{self.base}/{rel}", store, qos)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        if any(s.name.startswith(self.base.rsplit("/", 1)[-1]) for s in msg.status):
            with self._lock:
                self.rec.diagnostics.append(msg)

    def subscribe_image(self, rel: str) -> None:
        """Record images of ``<node>/<rel>`` (e.g. ``debug/weight_map/bev``) in ``rec.images[rel]``."""
        self.rec.images.setdefault(rel, [])
        self._subscribe(Image, rel, self.rec.images[rel])

    def _spin_until_shutdown(self) -> None:
        """Spin until :meth:`close`. An error is kept for :meth:`check`: raised here it would only be printed."""
        try:
            self.executor.spin()
        except (ExternalShutdownException, ShutdownException):
            pass
        except Exception as exc:
            # rclpy may raise InvalidHandle from a guard condition destroyed while close() shuts the
            # executor down; anything raised before close() is a real error.
            if not self._closing:
                self._spin_error = exc

    def check(self) -> None:
        """Fail the calling test if the spin thread died (nothing would be received any more).

        Every method that publishes, waits or reads what was received calls it first.
        """
        if self._spin_error is not None:
            raise AssertionError(f"the harness stopped spinning: {self._spin_error!r}") from self._spin_error

    def close(self) -> None:
        """Stop spinning and shut the harness context down."""
        self._closing = True
        self.executor.shutdown(timeout_sec=2.0)
        self._spin.join(timeout=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    # -------------------------------------------------------------- publishing

    def publish_static_tf(self, cameras: Iterable[int] = range(6)) -> None:
        """Latched rig transforms: base_link → lidar_top and → each listed camera's optical frame."""
        keep = {self.rig.camera_frame_ids[i] for i in cameras} | {LIDAR_FRAME}
        transforms = [transform_stamped(T, parent, child, 0.0)
                      for parent, child, T in self.rig.static_transforms() if child in keep]
        self.tf_static_pub.publish(TFMessage(transforms=transforms))

    def camera_info(self, i: int, stamp_ns: int, K: np.ndarray | None = None) -> CameraInfo:
        """Half-resolution camera_info of camera ``i``: the rig's K scaled with the image, or ``K`` as given."""
        info = self.rig.camera_info(i)
        if K is None:
            K = info.K.copy()
            K[:2] *= IMAGE_SCALE
        h, w = self.images[i].shape[:2]
        return camera_info_msg(K, w, h, info.frame_id, stamp_msg(stamp_ns))

    def cloud(self, stamp_ns: int) -> PointCloud2:
        """The harness cloud stamped ``stamp_ns`` in lidar_top."""
        return pointcloud2_from_structured(self.cloud_points, LIDAR_FRAME, stamp_msg(stamp_ns))

    def image(self, i: int, stamp_ns: int) -> Image:
        """Camera ``i``'s bgr8 image stamped ``stamp_ns``."""
        return image_from_array(self.images[i], "bgr8", self.rig.camera_frame_ids[i], stamp_msg(stamp_ns))

    def publish_odom(self, stamp_ns: int) -> None:
        """odom → base_link (ego standing at the origin) at ``stamp_ns`` and :data:`TF_LEAD_NS` later."""
        self.tf_pub.publish(TFMessage(transforms=[transform_stamped(np.eye(4), ODOM_FRAME, BASE_FRAME, stamp_msg(t))
                                                  for t in (stamp_ns, stamp_ns + TF_LEAD_NS)]))

    def publish_frame(self, stamp_ns: int, cameras: Sequence[int] = range(6), cloud: PointCloud2 | None = None,
                      images: dict[int, Any] | None = None, infos: dict[int, CameraInfo] | None = None) -> None:
        """Publish odom tf, camera_info and images of ``cameras``, then the cloud, all at ``stamp_ns``.

        ``images`` / ``infos`` replace the default message of a camera (bad-input tests).
        """
        self.check()
        self.last_stamp = max(self.last_stamp, stamp_ns)
        if self.publish_clock:
            self.clock_pub.publish(Clock(clock=stamp_msg(stamp_ns)))
        self.publish_odom(stamp_ns)
        for i in cameras:
            self.info_pubs[i].publish((infos or {}).get(i) or self.camera_info(i, stamp_ns))
            self.image_pubs[i].publish((images or {}).get(i) or self.image(i, stamp_ns))
        time.sleep(0.02)
        msg = self.cloud(stamp_ns) if cloud is None else cloud
        msg.header.stamp = stamp_msg(stamp_ns)
        self.cloud_pub.publish(msg)

    # ----------------------------------------------------------------- waiting

    def next_stamp(self, step_ns: int = SEC // 2) -> int:
        """A stamp ``step_ns`` after the newest frame published so far."""
        return self.last_stamp + step_ns

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str, proc: Any = None) -> None:
        """Poll ``predicate`` until true; fail naming ``what`` (and the node's output) on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            with self._lock:
                if predicate():
                    return
            if proc is not None and proc.proc.poll() is not None:
                raise AssertionError(f"node exited ({proc.proc.returncode}) while waiting for {what}:\n{proc.text()}")
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}"
                             + (f"\nnode output:\n{proc.text()}" if proc is not None else ""))

    def detections_at(self, stamp_ns: int) -> list[Detection3DArray]:
        """Received detection arrays stamped ``stamp_ns``."""
        self.check()
        with self._lock:
            return [d for d in self.rec.detections if ns_of(d.header.stamp) == stamp_ns]

    def publish_until_output(self, first_ns: int, timeout: float, proc: OutputLog, period_ns: int = SEC // 2,
                             **kw: Any) -> tuple[int, Detection3DArray]:
        """Publish frames at ``first_ns``, ``first_ns + period_ns``, ... until one is answered; (stamp, detections).

        Each frame gets 2 s to be answered before the next is sent, so a slow first frame is not flooded.
        """
        deadline = time.monotonic() + timeout
        stamp = first_ns
        while True:
            self.publish_frame(stamp, **kw)
            wait_until = min(deadline, time.monotonic() + 2.0)
            while time.monotonic() < wait_until:
                self.check()
                with self._lock:
                    answered = [ns_of(d.header.stamp) for d in self.rec.detections]
                got = [s for s in answered if first_ns <= s <= stamp]
                if got:
                    return got[-1], self.detections_at(got[-1])[0]
                if proc.proc.poll() is not None:
                    raise AssertionError(f"node exited ({proc.proc.returncode}):\n{proc.text()}")
                time.sleep(0.05)
            if time.monotonic() >= deadline:
                raise AssertionError(f"no detections for frames from {first_ns} to {stamp} within {timeout} s\n"
                                     f"node output:\n{proc.text()}")
            stamp += period_ns

    def last_status(self) -> dict[str, str]:
        """Key-values (plus 'level' and 'message') of the newest diagnostics status of the node."""
        self.check()
        with self._lock:
            status = self.rec.diagnostics[-1].status[0]
        values = {kv.key: kv.value for kv in status.values}
        values["level"] = str(status.level[0] if isinstance(status.level, bytes) else status.level)
        values["message"] = status.message
        return values

    def wait_status(self, predicate: Callable[[dict[str, str]], bool], timeout: float, what: str,
                    proc: OutputLog) -> dict[str, str]:
        """Wait until a diagnostics status satisfies ``predicate``; return its key-values."""
        self.wait_for(lambda: bool(self.rec.diagnostics) and predicate(self._status_locked()), timeout, what, proc)
        return self.last_status()

    def publish_until_status(self, predicate: Callable[[dict[str, str]], bool], timeout: float, what: str,
                             proc: OutputLog, period_s: float = 2.0) -> dict[str, str]:
        """Publish a frame every ``period_s`` until a diagnostics status satisfies ``predicate``; its key-values."""
        deadline = time.monotonic() + timeout
        while True:
            self.publish_frame(self.next_stamp(SEC))
            try:
                return self.wait_status(predicate, min(period_s, max(0.0, deadline - time.monotonic())), what, proc)
            except AssertionError:
                if proc.proc.poll() is not None or time.monotonic() >= deadline:
                    raise

    def _status_locked(self) -> dict[str, str]:
        status = self.rec.diagnostics[-1].status[0]
        values = {kv.key: kv.value for kv in status.values}
        values["level"] = str(status.level[0])
        values["message"] = status.message
        return values
