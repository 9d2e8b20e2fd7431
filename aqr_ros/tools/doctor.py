"""aqr_doctor: check the sensors before running the node, without loading a model.

    python -m aqr_ros.tools.doctor [--params-file config/aqr.yaml] [--lidar-topic /lidar_top/points]
        [--camera-namespaces /cam_front,...] [--image-suffix image_raw] [--compressed true|false]
        [--duration 3] [--out aqr_doctor]

Listens to the topics the node would subscribe to (the same options and defaults as launch/aqr.launch.py, the
same QoS and parameters as the node) and to tf, then reports per topic the rate, stamps, frame ids, image
encodings and point fields, camera_info validity, camera-LiDAR stamp offsets, the tf extrinsics and fixed frame,
the intensity range, the room in /dev/shm and the LiDAR axis convention (:mod:`aqr_ros.tools.doctor_checks`).
It projects a recent cloud (of the last 0.5 s, the one with the closest image in every camera) into each camera
with the node's own calibration code and writes one overlay image per camera, plus ``report.json``, into
``--out``. Exit code 0 without ERROR, 1 with one, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np
import rclpy
import yaml
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import Subscription
from rclpy.time import Time
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

from aqr_ros.pipeline.undistort import LensCalibration, rectification
from aqr_ros.resources import ResourceError
from aqr_ros.ros.from_msg import (ConversionError, camera_info_lens, compressed_to_bgr, image_to_bgr,
                                  pointcloud2_to_array)
from aqr_ros.ros.launch_args import (CHOICES, DEFAULT_CAMERAS, DEFAULT_IMAGE_SUFFIX, DEFAULT_LIDAR_TOPIC,
                                     camera_namespaces, camera_remaps, compressed_images, file_parameter)
from aqr_ros.ros.params import SPECS, NodeParams, ParameterError, validate
from aqr_ros.ros.tf_source import TfSource, TfUnavailableError
from aqr_ros.ros.to_msg import nanoseconds_from_stamp
from aqr_ros.tools import doctor_checks as dc
from aqr_ros.tools.cli import make_parser
from aqr_ros.tools.processes import params_file as shipped_params_file

NODE_NAME = "aqr_doctor"
#: Messages kept per topic for decoding and the overlays (the rest is counted and stamped only): 0.5 s of 12 Hz
#: images, 0.5 s of 20 Hz clouds to pick the one best synchronised with them.
_KEPT = 6
_KEPT_CLOUDS = 10
#: Where Fast DDS maps its shared-memory segments (Linux).
SHARED_MEMORY = Path("/dev/shm")
#: Longest wait (s) for tf after the sensors, until the fixed-frame pose at the newest stamp has arrived.
_TF_SETTLE_S = 2.0


@dataclass
class Heard:
    """What arrived on one topic: arrival times (s since the epoch, local clock), header stamps (s), frame ids, the
    last messages."""

    receive: list[float] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)
    kept: int = _KEPT
    latest: deque = field(init=False)

    def __post_init__(self) -> None:
        self.latest = deque(maxlen=self.kept)

    def add(self, msg: Any, received: float) -> None:
        """Record ``msg``, received at ``received`` (s since the epoch)."""
        self.receive.append(received)
        self.stamps.append(nanoseconds_from_stamp(msg.header.stamp) * 1e-9)
        self.frames.append(msg.header.frame_id)
        self.latest.append(msg)


@dataclass(frozen=True)
class Topics:
    """The resolved input topics, as the launch file remaps the node's inputs."""

    cloud: str
    namespaces: tuple[str, ...]
    images: tuple[str, ...]
    infos: tuple[str, ...]

    @classmethod
    def from_launch(cls, lidar_topic: str, namespaces: str, image_suffix: str, compressed: bool) -> Topics:
        """``lidar_topic``; per namespace ``<ns>/<image_suffix>[/compressed]`` and ``<ns>/camera_info``."""
        remaps = camera_remaps(namespaces, image_suffix, compressed)  # the launch file's, image and info per camera
        return cls(lidar_topic, tuple(camera_namespaces(namespaces)), tuple(topic for _, topic in remaps[0::2]),
                   tuple(topic for _, topic in remaps[1::2]))


def _recorder(heard: Heard) -> Callable[..., None]:
    """Subscription callback storing into ``heard`` with the middleware's reception time where rclpy passes it
    (Iron and newer: a busy executor does not skew ages and rates), else the time the callback runs."""
    if hasattr(getattr(Subscription, "CallbackType", None), "WithMessageInfo"):
        return lambda msg, info: heard.add(msg, info["received_timestamp"] * 1e-9)
    return lambda msg: heard.add(msg, time.time())


class DoctorNode(Node):
    """Subscribes to the node's inputs with the node's input QoS, and to tf through the node's :class:`TfSource`."""

    def __init__(self, topics: Topics, params: NodeParams) -> None:
        super().__init__(NODE_NAME)
        self.topics = topics
        self.params = params
        qos = QoSProfile(depth=params.input_depth, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE if params.input_reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        image_type = CompressedImage if params.compressed_images else Image
        self.heard: dict[str, Heard] = {t: Heard() for t in (*topics.images, *topics.infos)}
        self.heard[topics.cloud] = Heard(kept=_KEPT_CLOUDS)
        self._sensor_subs = [self.create_subscription(PointCloud2, topics.cloud, _recorder(self.heard[topics.cloud]),
                                                      qos)]
        self._sensor_subs += [self.create_subscription(image_type, topic, _recorder(self.heard[topic]), qos)
                              for topic in topics.images]
        self._sensor_subs += [self.create_subscription(CameraInfo, topic, _recorder(self.heard[topic]), qos)
                              for topic in topics.infos]
        self.tf = TfSource(self)

    def stop_sensors(self) -> None:
        """Unsubscribe from the sensors (tf stays), so that a busy executor spends its time on tf alone."""
        for sub in self._sensor_subs:
            self.destroy_subscription(sub)
        self._sensor_subs = []

    def tf_caught_up(self) -> bool:
        """Whether tf has the LiDAR's pose in tf.fixed_frame at the newest stamp heard (true when there is no
        fixed frame or no cloud): the overlays and the fixed-frame check look poses up at those stamps."""
        cloud = self.heard[self.topics.cloud].latest
        if not self.params.fixed_frame or not cloud:
            return True
        newest = max(nanoseconds_from_stamp(h.latest[-1].header.stamp) for h in self.heard.values() if h.latest)
        lookup = self.tf.lookup(self.params.fixed_frame, cloud[-1].header.frame_id, Time(nanoseconds=newest))
        return lookup.matrix is not None

    def anything_heard(self) -> bool:
        """Whether any input topic has delivered a message."""
        return any(h.receive for h in self.heard.values())

    def silence_hint(self, topic: str, option: str) -> str:
        """Why ``topic`` may be silent: nobody publishes it (the closest published names), or a QoS mismatch."""
        publishers = self.count_publishers(topic)
        if publishers:
            return (f"{publishers} publisher(s) but nothing arrived: a QoS mismatch? (qos.input_reliability is "
                    f"{'reliable' if self.params.input_reliable else 'best_effort'})")
        names = [name for name, _ in self.get_topic_names_and_types() if self.count_publishers(name)]
        close = difflib.get_close_matches(topic, names, n=2, cutoff=0.8)
        return (f"nothing publishes it: check {option}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))


def listen(node: DoctorNode, duration: float, wait: float) -> float:
    """Spin until ``duration`` s after the first message (at most ``wait`` s for it), then up to :data:`_TF_SETTLE_S`
    more for tf alone; returns the seconds the sensors were listened to after the first message (or the whole wait)."""
    start = time.monotonic()
    first: Optional[float] = None
    while True:
        now = time.monotonic()
        if first is None and node.anything_heard():
            first = now
        if first is None and now - start > wait:
            listened = now - start
            break
        if first is not None and now - first > duration:
            listened = now - first
            break
        rclpy.spin_once(node, timeout_sec=0.02)
    node.stop_sensors()
    settled = time.monotonic() + _TF_SETTLE_S
    while time.monotonic() < settled and not node.tf_caught_up():
        rclpy.spin_once(node, timeout_sec=0.02)
    return listened


def _decode(msg: Any, compressed: bool) -> tuple[Optional[np.ndarray], Optional[str]]:
    """(BGR image, None) or (None, why not), as the node decodes it."""
    try:
        return (compressed_to_bgr(msg) if compressed else image_to_bgr(msg)), None
    except ConversionError as exc:
        return None, str(exc)


def _nearest(messages: Sequence[Any], stamp_s: float, offset: float) -> Any:
    """The message whose stamp minus ``offset`` is closest to ``stamp_s``."""
    return min(messages, key=lambda m: abs(nanoseconds_from_stamp(m.header.stamp) * 1e-9 - offset - stamp_s))


def best_synchronised(clouds: Sequence[Any], images: Sequence[Sequence[Any]], offsets: Sequence[float]) -> Any:
    """Of the kept clouds, the one whose worst camera has the closest image (the newest among equals): the newest
    cloud's images may still be on their way, and a moving object drifts between a cloud and an older image."""
    def worst_dt(cloud: Any) -> float:
        t = nanoseconds_from_stamp(cloud.header.stamp) * 1e-9
        return max((abs(nanoseconds_from_stamp(_nearest(msgs, t, offset).header.stamp) * 1e-9 - offset - t)
                    for msgs, offset in zip(images, offsets) if msgs), default=0.0)

    return min(reversed(clouds), key=worst_dt)


def _overlay(node: DoctorNode, path: Path, topic: str, image: np.ndarray, image_header: Header, lens: LensCalibration,
             camera_frame: str, points: np.ndarray, cloud_header: Header) -> dc.Check:
    """Project ``points`` into ``image`` as the node would fuse them (undistorted as configured, the extrinsic
    time-corrected through tf.fixed_frame when enabled) and write the overlay to ``path``."""
    p = node.params
    image_stamp = nanoseconds_from_stamp(image_header.stamp)
    cloud_stamp = nanoseconds_from_stamp(cloud_header.stamp)
    ext = node.tf.camera_extrinsic(camera_frame, cloud_header.frame_id, Time(nanoseconds=image_stamp),
                                   Time(nanoseconds=cloud_stamp), p.fixed_frame if p.time_correct_extrinsics else "")
    rect = rectification(lens, p.rectified_images)
    uv, depth = dc.project_points(points, ext.matrix, rect.K, lens.size, p.lidar_axes)
    cv2.imwrite(str(path), dc.draw_overlay(rect.apply(np.ascontiguousarray(image)), uv, depth))
    check = dc.overlay_check(topic, len(depth), str(path), (image_stamp - cloud_stamp) * 1e-9, ext.source)
    check.values.update(cloud_stamp_ns=cloud_stamp, image_stamp_ns=image_stamp)
    return check


def examine(node: DoctorNode, listened: float, out_dir: Path) -> tuple[list[dc.Check], list[str]]:
    """Every check on what ``node`` heard, and the overlay images written into ``out_dir`` (absolute paths)."""
    p, topics = node.params, node.topics
    checks: list[dc.Check] = []
    overlays: list[str] = []

    def heard_checks(topic: str, option: str, stamped: bool = True) -> Heard:
        """Rate, stamps (unless the node ignores them: camera_info) and frame ids of ``topic``."""
        heard = node.heard[topic]
        checks.append(dc.rate_check(topic, heard.receive, listened, node.silence_hint(topic, option)))
        stamps = dc.stamp_check(topic, heard.stamps, heard.receive, p.stale_timeout) if stamped else None
        checks.extend(c for c in (stamps, dc.frame_check(topic, heard.frames)) if c is not None)
        return heard

    shm = shared_memory(SHARED_MEMORY)
    if shm is not None:
        checks.append(shm)
    cloud_heard = heard_checks(topics.cloud, "--lidar-topic (the node's ~/input/pointcloud remap)")
    cloud_msg = best_synchronised(cloud_heard.latest, [node.heard[t].latest for t in topics.images],
                                  p.camera_offsets) if cloud_heard.latest else None
    points = np.zeros((0, 4), dtype=np.float32)
    lidar_frame = cloud_msg.header.frame_id if cloud_msg is not None else ""
    if cloud_msg is not None:
        names = [f.name for f in cloud_msg.fields]
        try:
            cloud = pointcloud2_to_array(cloud_msg, ("x", "y", "z", "intensity"))
        except ConversionError as exc:
            checks.append(dc.cloud_fields_check(topics.cloud, names, str(exc)))
        else:
            points = cloud.points
            checks.append(dc.cloud_fields_check(topics.cloud, names, None))
            if "intensity" not in cloud.missing_fields:
                checks.append(dc.intensity_check(topics.cloud, points[:, 3], p.intensity_scale))
    cloud_stamp = nanoseconds_from_stamp(cloud_msg.header.stamp) if cloud_msg is not None else 0

    if lidar_frame:
        fixed = p.fixed_frame
        at_stamp = node.tf.lookup(fixed, lidar_frame, Time(nanoseconds=cloud_stamp)) if fixed else None
        latest = node.tf.lookup(fixed, lidar_frame) if fixed else None
        checks.append(dc.fixed_frame_check(fixed, lidar_frame, at_stamp.matrix if at_stamp else None,
                                           latest.matrix if latest else None, at_stamp.reason if at_stamp else ""))

    camera_option = "--camera-namespaces / --image-suffix / --compressed (the node's camera remaps)"
    front: tuple[Optional[np.ndarray], str] = (None, "")
    for i, (image_topic, info_topic) in enumerate(zip(topics.images, topics.infos)):
        image_heard = heard_checks(image_topic, camera_option)
        info_heard = heard_checks(info_topic, "--camera-namespaces (the node's camera_info remaps)", stamped=False)
        image = image_msg = None
        if image_heard.latest:
            image_msg = (_nearest(image_heard.latest, cloud_stamp * 1e-9, p.camera_offsets[i])
                         if cloud_msg is not None else image_heard.latest[-1])
            image, error = _decode(image_msg, p.compressed_images)
            encoding = image_msg.format if p.compressed_images else image_msg.encoding
            checks.append(dc.image_check(image_topic, encoding, None if image is None else image.shape[:2], error))
        if cloud_heard.stamps and image_heard.stamps:
            sync = dc.sync_check(i, image_topic, cloud_heard.stamps, cloud_heard.receive, image_heard.stamps,
                                 image_heard.receive, p.camera_offsets[i], p.max_camera_lidar_delay)
            if sync is not None:
                checks.append(sync)
        info = info_heard.latest[-1] if info_heard.latest else None
        lens = node_lens(info, p.rectified_images, info_topic, checks)
        if lens is not None:
            checks.append(dc.camera_info_check(
                info_topic, lens.K, lens.size, lens.D, lens.model, info.header.frame_id, p.rectified_images,
                image_msg.header.frame_id if image_msg is not None else None,
                image.shape[:2] if image is not None else None))
        # The node takes the optical frame from camera_info; without one the image's frame is the best guess.
        camera_frame = info.header.frame_id if info is not None else image_msg.header.frame_id if image_msg else ""
        if not lidar_frame or not camera_frame:
            continue
        static = node.tf.extrinsic(camera_frame, lidar_frame)
        checks.append(dc.extrinsic_check(camera_frame, lidar_frame, static.matrix, static.reason))
        if i == 0:
            front = (static.matrix, camera_frame)
        if static.matrix is None or lens is None or image is None or lens.size != tuple(image.shape[:2]):
            continue
        path = out_dir / f"overlay_camera{i}_{topics.namespaces[i].strip('/').replace('/', '_')}.png"
        checks.append(_overlay(node, path, image_topic, image, image_msg.header, lens, camera_frame, points,
                               cloud_msg.header))
        overlays.append(str(path))

    if cloud_msg is not None:
        checks.append(dc.axes_check(topics.cloud, p.lidar_axes, points, front[0], front[1]))
    return checks, overlays


def shared_memory(path: Path) -> Optional[dc.Check]:
    """:func:`doctor_checks.shared_memory_check` of ``path`` and the Fast DDS files in it; None where there is no
    such folder (not Linux)."""
    if not path.is_dir():
        return None
    stat = os.statvfs(path)
    sizes = []
    for entry in path.iterdir():
        if entry.name.startswith(("fastdds_", "sem.fastdds_")):
            try:
                sizes.append(entry.stat().st_size)
            except FileNotFoundError:  # a process removed its segment meanwhile
                continue
    return dc.shared_memory_check(str(path), stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize,
                                  sum(sizes), len(sizes))


def node_lens(info: Optional[CameraInfo], rectified: bool, topic: str,
          checks: list[dc.Check]) -> Optional[LensCalibration]:
    """The lens the node reads from ``info`` (binning and ROI applied); None when nothing was heard, or with an
    ERROR check when the node rejects it."""
    if info is None:
        return None
    try:
        return camera_info_lens(info, rectified)
    except ConversionError as exc:
        checks.append(dc.Check("camera_info", topic, dc.Level.ERROR, f"{exc}: the node rejects this camera_info",
                               {"frame_id": info.header.frame_id}))
        return None


def load_params(path: Path, compressed: str, num_cameras: int) -> NodeParams:
    """The node's parameters from ``path`` (any node section, as the node reads it), ``compressed`` overriding
    ``input.compressed_images`` when given; ParameterError naming the parameter when a value is invalid."""
    values = {spec.name: value for spec in SPECS if (value := file_parameter(path, spec.name)) is not None}
    values["input.compressed_images"] = compressed_images({"compressed": compressed}, path)
    return validate(values, num_cameras=num_cameras)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of aqr_doctor (launch/aqr.launch.py's names and defaults)."""
    try:
        default_params = str(shipped_params_file())
    except ResourceError:
        default_params = "config/aqr.yaml"
    parser = make_parser(NODE_NAME, __doc__.splitlines()[0])
    parser.add_argument("--params-file", default=default_params, help="the node's parameter file")
    parser.add_argument("--lidar-topic", default=DEFAULT_LIDAR_TOPIC, help="PointCloud2 input")
    parser.add_argument("--camera-namespaces", default=DEFAULT_CAMERAS,
                        help="comma-separated camera namespaces in model view order")
    parser.add_argument("--image-suffix", default=DEFAULT_IMAGE_SUFFIX, help="image topic in each namespace")
    parser.add_argument("--compressed", default="", choices=CHOICES["compressed"],
                        help="listen to .../compressed (empty: input.compressed_images of the parameter file)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds to listen after the first message")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the first message")
    parser.add_argument("--out", default="aqr_doctor", help="folder for the overlays and report.json")
    return parser


def report_text(checks: Sequence[dc.Check], listened: float, params_path: Path, json_path: Path,
                overlays: Sequence[str]) -> str:
    """The text report: one line per check, then the counts and where the files are."""
    counts = {level: sum(c.level == level for c in checks) for level in dc.Level}
    lines = [f"{NODE_NAME}: listened {listened:.1f} s with the parameters of {params_path}", ""]
    lines += [c.line() for c in checks]
    lines += ["", f"{counts[dc.Level.OK]} OK, {counts[dc.Level.WARN]} WARN, {counts[dc.Level.ERROR]} ERROR: "
              f"{dc.worst(checks).name}", f"report: {json_path}"]
    lines += [f"overlay: {path}" for path in overlays]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``aqr_doctor [options] [--ros-args ...]``; 0 without ERROR, 1 with one, 2 for bad arguments."""
    args = [NODE_NAME, *(sys.argv[1:] if argv is None else argv)]
    parser = build_parser()
    options = parser.parse_args(remove_ros_args(args)[1:])
    if options.duration <= 0 or options.wait <= 0:
        parser.error("--duration and --wait must be positive")
    params_path = Path(options.params_file).resolve()
    if not params_path.is_file():
        parser.error(f"--params-file {params_path}: no such file")
    num_cameras = len(camera_namespaces(options.camera_namespaces))
    if not num_cameras:
        parser.error("--camera-namespaces: no namespace given")
    try:
        params = load_params(params_path, options.compressed, num_cameras)
    except (ParameterError, OSError, AttributeError, yaml.YAMLError) as exc:
        parser.error(f"--params-file {params_path}: {exc}")
    topics = Topics.from_launch(options.lidar_topic, options.camera_namespaces, options.image_suffix,
                                params.compressed_images)
    out_dir = Path(options.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    rclpy.init(args=args)
    try:
        node = DoctorNode(topics, params)
    except TfUnavailableError as exc:
        print(f"{NODE_NAME}: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    try:
        listened = listen(node, options.duration, options.wait)
        checks, overlays = examine(node, listened, out_dir)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()

    json_path = out_dir / "report.json"
    verdict = dc.worst(checks)
    json_path.write_text(json.dumps({
        "params_file": str(params_path), "listened_s": listened, "verdict": verdict.name,
        "topics": {"cloud": topics.cloud, "images": list(topics.images), "camera_infos": list(topics.infos)},
        "checks": [c.as_json() for c in checks], "overlays": overlays}, indent=2))
    print(report_text(checks, listened, params_path, json_path, overlays))
    return 1 if verdict is dc.Level.ERROR else 0


if __name__ == "__main__":
    sys.exit(main())
