"""aqr_rig_publisher: plays the synthetic sensor rig over DDS in real time (or scaled), like a small sensor bag.

Publishes ``lidar_top/points`` (PointCloud2, frame lidar_top, 20 Hz), ``<cam>/image_raw`` (bgr8) and
``<cam>/camera_info`` for the six cameras (12 Hz each, phase-shifted) — relative names, so ``/lidar_top/points``
etc. in the root namespace and movable with ``--ros-args -r __ns:=/x`` — the rig's static transforms on
``/tf_static`` (transient local), ``odom → base_link`` on ``/tf`` at every sensor stamp, and optionally
``/clock``. ``--scene`` picks the fixed street (``template``, the default) or a scene drawn from the random street
distribution (``random``); ``--seed`` seeds either. Messages are rendered ahead of being due, into a bounded queue
(``--prebuffer`` seconds of sensor data, or the whole sequence with ``--prebuffer all``), so the publish times follow
the sensor times while memory stays bounded; stamps are set when publishing starts. A progress line (frames rendered
and published, and their rates) is logged every few seconds.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Optional

import rclpy
from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.utilities import remove_ros_args
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from aqr_ros.ros.to_msg import (camera_info_msg, image_from_array, pointcloud2_from_structured, stamp_from_seconds,
                                tf_message_type, transform_stamped)
from aqr_ros.tools.cli import make_parser
from aqr_ros.tools.rig_scenes import SCENE_KINDS, make_scene
from aqr_ros.tools.synthetic_rig import (BASE_FRAME, CAMERA_NAMES, LIDAR_FRAME, LIDAR_PERIOD, ODOM_FRAME,
                                        CameraFrame, LidarFrame, SyntheticRig)

NODE_NAME = "aqr_rig_publisher"
#: Sensor topics are relative: /lidar_top/points etc. in the root namespace, movable with ``-r __ns:=/x``.
LIDAR_TOPIC = "lidar_top/points"
#: Lateness (s) above which the run is reported as not keeping to the sensor timing.
_LATE_WARNING = 0.02
#: Lateness (s) at which a warning says, during the run, that rendering cannot keep up.
_BEHIND_WARNING = 1.0
#: Wall seconds between progress lines.
PROGRESS_PERIOD = 2.0
#: Default ``--prebuffer``: seconds of sensor data rendered ahead (about 16 MB of images per LiDAR frame).
DEFAULT_PREBUFFER_S = 1.0


@dataclass
class _Ready:
    """One rendered sensor event: its time since start, the headers to stamp, and (publish, message) pairs."""

    t: float
    headers: list[Header]
    sends: list[tuple[Callable, object]]
    lidar: bool


class Progress:
    """Counts of rendered and published LiDAR frames, logged as one line every :data:`PROGRESS_PERIOD` seconds so a
    long run never looks hung. The renderer thread only writes ``rendered`` and ``rendered_at``."""

    def __init__(self, frames: int, rate: float, log: Callable[[str], None]) -> None:
        self.frames, self.rate, self.log = frames, rate, log
        self.rendered = self.published = 0
        self.started = time.monotonic()
        self.publishing_since: float | None = None
        #: When the renderer finished (None while it runs); the render rate is measured up to it.
        self.rendered_at: float | None = None
        self._next = self.started + PROGRESS_PERIOD

    def line(self, now: float) -> str:
        """``rendered a/N LiDAR frames (r/s), published b/N (p/s, x real time)``."""
        text = f"rendered {self.rendered}/{self.frames} LiDAR frames ({self.render_rate(now):.1f}/s)"
        if self.publishing_since is None:
            return f"{text}; publishing starts when the prebuffer is full"
        rate = self.published / max(now - self.publishing_since, 1e-9)
        return (f"{text}, published {self.published}/{self.frames} ({rate:.1f}/s, "
                f"{rate * LIDAR_PERIOD:.2f}x real time; asked for {self.rate:g}x)")

    def render_rate(self, now: float) -> float:
        """LiDAR frames rendered per wall second so far."""
        end = now if self.rendered_at is None else self.rendered_at
        return self.rendered / max(end - self.started, 1e-9)

    def tick(self) -> None:
        """Log the progress line when it is due."""
        now = time.monotonic()
        if now >= self._next:
            self._next = now + PROGRESS_PERIOD
            self.log(self.line(now))


def prebuffer_seconds(text: str) -> float | None:
    """``--prebuffer``: positive seconds, or ``all`` (None: the whole sequence)."""
    if text.strip().lower() == "all":
        return None
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0.0:
        raise argparse.ArgumentTypeError(f"invalid prebuffer {text!r}: positive seconds, or 'all'")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of aqr_rig_publisher."""
    parser = make_parser(NODE_NAME, __doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40, help="number of LiDAR frames (20 Hz) to publish")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (2 = twice real time)")
    parser.add_argument("--seed", type=int, default=0, help="scene seed (and LiDAR noise seed)")
    parser.add_argument("--scene", choices=SCENE_KINDS, default="template",
                        help="template: the fixed street jittered by --seed; random: a street drawn by --seed from "
                             "the random scene distribution (aqr_ros.tools.rig_scenes)")
    parser.add_argument("--no-noise", action="store_true", help="publish noise-free LiDAR sweeps")
    parser.add_argument("--use-sim-time-clock", action="store_true", help="also publish /clock at every stamp")
    parser.add_argument("--drop-camera", type=int, action="append", default=[], choices=range(len(CAMERA_NAMES)),
                        metavar="I", help="never publish camera I (0..5, model order); repeatable")
    parser.add_argument("--start-time", type=float, default=None,
                        help="stamp of the first LiDAR frame in seconds (default: the wall clock at start)")
    parser.add_argument("--live-stamps", action="store_true",
                        help="stamp with the playback clock (start + t / rate), like a live sensor, instead of "
                             "rig time (start + t); the same unless --rate is not 1")
    parser.add_argument("--qos", choices=("reliable", "best_effort"), default="reliable",
                        help="reliability of the sensor topics (depth 5)")
    parser.add_argument("--prebuffer",
                        type=prebuffer_seconds, default=DEFAULT_PREBUFFER_S, metavar="SECONDS|all",
                        help="sensor seconds rendered ahead of publishing, in a bounded queue (about 16 MB of "
                             "images per LiDAR frame); 'all' renders the whole sequence first (exact timing on a "
                             "slow machine, memory grows with --frames)")
    parser.add_argument("--wait-for-subscribers", type=int, default=0, metavar="N",
                        help=f"wait (up to --wait-timeout s) until {LIDAR_TOPIC} has N subscribers and every camera "
                             "topic and /tf one")
    parser.add_argument("--wait-timeout", type=float, default=10.0, help="seconds to wait for subscribers")
    parser.add_argument("--linger", type=float, default=0.5,
                        help="seconds to stay up after the last frame so reliable data is delivered")
    return parser


@dataclass(frozen=True)
class FrameMessages:
    """One rendered rig frame as ROS messages, stamped 0: the ego pose (odom -> base_link) and either the cloud or
    the image with its camera_info."""

    odom: TransformStamped
    cloud: Optional[PointCloud2] = None
    image: Optional[Image] = None
    info: Optional[CameraInfo] = None

    @property
    def headers(self) -> list[Header]:
        """Every header to stamp when the frame goes out."""
        return [msg.header for msg in (self.odom, self.cloud, self.image, self.info) if msg is not None]


def frame_messages(rig: SyntheticRig, frame: LidarFrame | CameraFrame) -> FrameMessages:
    """The messages of one rendered rig frame, as the publisher sends them (and tests replay them offline)."""
    odom = transform_stamped(frame.T_odom_base, ODOM_FRAME, BASE_FRAME, 0.0)
    if isinstance(frame, LidarFrame):
        return FrameMessages(odom, cloud=pointcloud2_from_structured(frame.points, LIDAR_FRAME, 0.0))
    info = rig.camera_info(frame.camera)
    return FrameMessages(odom, image=image_from_array(frame.image, "bgr8", info.frame_id, 0.0),
                         info=camera_info_msg(info.K, info.width, info.height, info.frame_id, 0.0, D=info.D, R=info.R,
                                              P=info.P, distortion_model=info.distortion_model))


class RigPublisher(Node):
    """The publishing node: one publisher per topic; renders the rig into messages and sends them when due."""

    def __init__(self, options: argparse.Namespace):
        super().__init__(NODE_NAME)
        self.options = options
        self.rig = SyntheticRig(seed=options.seed, noise=not options.no_noise,
                                scene=make_scene(options.scene, options.seed))
        self.cameras = tuple(i for i in range(len(CAMERA_NAMES)) if i not in options.drop_camera)
        reliability = (ReliabilityPolicy.RELIABLE if options.qos == "reliable" else ReliabilityPolicy.BEST_EFFORT)
        sensor_qos = QoSProfile(depth=5, reliability=reliability)
        TFMessage = tf_message_type()
        self._tf_type = TFMessage
        self.lidar_pub = self.create_publisher(PointCloud2, LIDAR_TOPIC, sensor_qos)
        self.image_pubs = {i: self.create_publisher(Image, f"{CAMERA_NAMES[i]}/image_raw", sensor_qos)
                           for i in self.cameras}
        self.info_pubs = {i: self.create_publisher(CameraInfo, f"{CAMERA_NAMES[i]}/camera_info",
                                                   sensor_qos) for i in self.cameras}
        self.tf_pub = self.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))
        self.tf_static_pub = self.create_publisher(
            TFMessage, "/tf_static", QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.clock_pub = (self.create_publisher(Clock, "/clock", QoSProfile(depth=10))
                          if options.use_sim_time_clock else None)

    def render(self, frame: LidarFrame | CameraFrame) -> _Ready:
        """Messages of one rendered frame (stamps are filled in when it is published)."""
        msgs = frame_messages(self.rig, frame)
        tf = (self.tf_pub.publish, self._tf_type(transforms=[msgs.odom]))
        if msgs.cloud is not None:
            return _Ready(frame.t, msgs.headers, [tf, (self.lidar_pub.publish, msgs.cloud)], True)
        return _Ready(frame.t, msgs.headers, [tf, (self.image_pubs[frame.camera].publish, msgs.image),
                                              (self.info_pubs[frame.camera].publish, msgs.info)], False)

    def publish_static(self, stamp: float) -> None:
        """All static transforms of the rig in one latched /tf_static message."""
        self.tf_static_pub.publish(self._tf_type(transforms=[
            transform_stamped(T, parent, child, stamp) for parent, child, T in self.rig.rig.static_transforms()]))

    def publish_ready(self, ready: _Ready, start_time: float) -> None:
        """Stamp and publish one event (and /clock first when enabled)."""
        scale = self.options.rate if self.options.live_stamps else 1.0
        stamp = stamp_from_seconds(start_time + ready.t / scale)
        if self.clock_pub is not None:
            self.clock_pub.publish(Clock(clock=stamp))
        for header in ready.headers:
            header.stamp = stamp
        for publish, msg in ready.sends:
            publish(msg)

    def wait_for_subscribers(self) -> bool:
        """Block until the LiDAR topic has ``--wait-for-subscribers`` subscribers and every camera topic and /tf at
        least one (a volatile message sent before its reader matched is lost), or the timeout passes."""
        deadline = time.monotonic() + self.options.wait_timeout
        others = [*self.image_pubs.values(), *self.info_pubs.values(), self.tf_pub]
        while (self.lidar_pub.get_subscription_count() < self.options.wait_for_subscribers
               or min(pub.get_subscription_count() for pub in others) < 1):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


def _renderer(node: RigPublisher, out: queue.Queue, stop: threading.Event, progress: Progress) -> None:
    """Render every frame in time order into ``out``; ``None`` marks the end."""
    for frame in node.rig.frames(node.options.frames, cameras=node.cameras):
        ready = node.render(frame)
        progress.rendered += ready.lidar
        while not stop.is_set():
            try:
                out.put(ready, timeout=0.1)
                break
            except queue.Full:
                continue
        if stop.is_set():
            return
    progress.rendered_at = time.monotonic()
    out.put(None)


def events_ahead(rig: SyntheticRig, frames: int, cameras: tuple[int, ...], prebuffer: float | None) -> int:
    """Size of the render-ahead queue: the published events in the first ``prebuffer`` seconds (at least one), or 0,
    unbounded, for None (the whole sequence)."""
    if prebuffer is None:
        return 0
    return max(1, sum(1 for e in rig.schedule(frames) if e.t < prebuffer and (e.sensor < 0 or e.sensor in cameras)))


def play(node: RigPublisher) -> tuple[int, float]:
    """Render ahead and publish every event at its due time; returns (events published, worst lateness in s)."""
    options = node.options
    ahead = events_ahead(node.rig, options.frames, node.cameras, options.prebuffer)
    ready_queue: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()
    progress = Progress(options.frames, options.rate, node.get_logger().info)
    worker = threading.Thread(target=_renderer, args=(node, ready_queue, stop, progress), daemon=True)
    ahead_text = (f"all {options.frames} LiDAR frames" if options.prebuffer is None
                  else f"{options.prebuffer:g} s ({ahead} sensor events)")
    node.get_logger().info(f"rendering {ahead_text} ahead of publishing at rate {options.rate:g}")
    worker.start()
    while worker.is_alive() and (ahead == 0 or ready_queue.qsize() < ahead):
        progress.tick()
        time.sleep(0.01)

    if options.wait_for_subscribers:
        node.get_logger().info(f"waiting up to {options.wait_timeout:g} s for {options.wait_for_subscribers} "
                               f"subscriber(s) on {LIDAR_TOPIC}")
    if options.wait_for_subscribers and not node.wait_for_subscribers():
        node.get_logger().warning(f"fewer than {options.wait_for_subscribers} subscribers on {LIDAR_TOPIC} after "
                                  f"{options.wait_timeout:g} s; publishing anyway")
    start_time = time.time() if options.start_time is None else options.start_time
    node.publish_static(start_time)
    wall0 = progress.publishing_since = time.monotonic()
    published, worst = 0, 0.0
    try:
        while (ready := _next_ready(ready_queue, progress)) is not None:
            due = wall0 + ready.t / options.rate
            while (delay := due - time.monotonic()) > 0.0:
                time.sleep(min(delay, PROGRESS_PERIOD))
                progress.tick()
            late = time.monotonic() - due
            if late > _BEHIND_WARNING >= worst:
                rate = progress.render_rate(time.monotonic()) * LIDAR_PERIOD
                node.get_logger().warning(f"rendering is slower than playback ({rate:.2f}x real time against "
                                          f"--rate {options.rate:g}): publishing lags the sensor times; use "
                                          f"--rate {rate * 0.8:.2g} or --prebuffer all")
            worst = max(worst, late)
            node.publish_ready(ready, start_time)
            published += 1
            progress.published += ready.lidar
            progress.tick()
    finally:
        stop.set()
    node.get_logger().info(progress.line(time.monotonic()))
    return published, worst


def _next_ready(ready_queue: queue.Queue, progress: Progress) -> _Ready | None:
    """The next rendered event (None at the end), logging progress while the renderer is behind."""
    while True:
        try:
            return ready_queue.get(timeout=0.1)
        except queue.Empty:
            progress.tick()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``aqr_rig_publisher [--frames N] [--rate R] ... [--ros-args ...]``."""
    args = ["aqr_rig_publisher", *(sys.argv[1:] if argv is None else argv)]
    options = build_parser().parse_args(remove_ros_args(args)[1:])
    if options.frames < 1 or options.rate <= 0.0:
        print(f"{NODE_NAME}: --frames must be >= 1 and --rate > 0", file=sys.stderr)
        return 2
    rclpy.init(args=args)
    try:
        node = RigPublisher(options)
    except RuntimeError as exc:
        print(f"{NODE_NAME}: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    try:
        published, worst = play(node)
        node.get_logger().info(f"published {published} sensor events ({options.frames} LiDAR frames of "
                               f"{LIDAR_PERIOD * 1e3:.0f} ms) at rate {options.rate:g}; worst lateness "
                               f"{worst * 1e3:.1f} ms")
        if worst > _LATE_WARNING:
            node.get_logger().warning("rendering could not keep up: publish times lagged the sensor times; "
                                      "raise --prebuffer (or 'all': render everything first) or lower --rate")
        time.sleep(options.linger)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
