"""aqr_nuscenes_to_bag: nuScenes scenes as rosbag2 bags the aqr_ros node can replay (one bag per scene).

    python -m aqr_ros.tools.nuscenes_to_bag --dataroot /data/nuscenes --version v1.0-mini --out bags/

Per scene, in timestamp order: every LIDAR_TOP sample_data (key frames and sweeps) as a PointCloud2 (x, y, z,
intensity float32 as in the file, ring uint16; frame ``lidar_top``); every camera image as a CompressedImage with
the original JPEG bytes (frame ``cam_*_optical``; nuScenes camera frames are optical frames) and its CameraInfo
(K from calibrated_sensor, P = [K | 0], zero plumb_bob distortion); ``/tf_static`` base_link → each sensor
(transient local, so ``ros2 bag play`` latches it); ``/tf`` map → base_link from every sample_data's ego pose;
``/gt/detections`` the key frame's annotations in the LiDAR frame (detection classes only); optionally
``/clock``. Stamps are the sample_data timestamps. Files are streamed one message at a time; a missing file is
reported by name and its message left out, the rest of the scene is still written.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from geometry_msgs.msg import Point, Pose, PoseWithCovariance, Quaternion, Vector3
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header
from vision_msgs.msg import (BoundingBox3D, Detection3D, Detection3DArray, ObjectHypothesis,
                             ObjectHypothesisWithPose)

from aqr_ros.pipeline.rotations import quaternion_from_matrix
from aqr_ros.ros.to_msg import (camera_info_msg, pointcloud2_from_structured, stamp_from_nanoseconds, tf_message_type,
                                transform_stamped)
from aqr_ros.tools.bag_io import STORAGES, TRANSIENT_LOCAL, BagError, BagWriter
from aqr_ros.tools.cli import make_parser
from aqr_ros.tools.progress import ProgressLine
from aqr_ros.tools.nuscenes_tables import NuScenesError, NuScenesTables, Record, detection_class, pose_matrix
from aqr_ros.tools.synthetic_rig import invert_rigid

#: Point layout of the clouds: the file's x, y, z, intensity and its ring index as uint16 (18 bytes, packed).
POINT_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4"), ("ring", "<u2")])
#: Columns of a nuScenes ``.pcd.bin``: x, y, z, intensity, ring index (float32 each).
PCD_COLUMNS = 5


@dataclass(frozen=True)
class BagLayout:
    """Topic and frame names of the bags; camera channel ``CAM_FRONT`` → ``/cam_front/<image_suffix>``,
    ``/cam_front/camera_info``, frame ``cam_front<camera_frame_suffix>``."""

    lidar_channel: str = "LIDAR_TOP"
    lidar_topic: str = "/lidar_top/points"
    lidar_frame: str = "lidar_top"
    image_suffix: str = "image_raw/compressed"
    camera_frame_suffix: str = "_optical"
    base_frame: str = "base_link"
    map_frame: str = "map"
    gt_topic: str = "/gt/detections"
    tf_topic: str = "/tf"
    tf_static_topic: str = "/tf_static"
    clock_topic: str = "/clock"

    def camera_namespace(self, channel: str) -> str:
        """Topic namespace of a camera channel: ``CAM_FRONT`` → ``/cam_front``."""
        return "/" + channel.lower()

    def image_topic(self, channel: str) -> str:
        """CompressedImage topic of a camera channel."""
        return f"{self.camera_namespace(channel)}/{self.image_suffix}"

    def info_topic(self, channel: str) -> str:
        """CameraInfo topic of a camera channel."""
        return f"{self.camera_namespace(channel)}/camera_info"

    def frame(self, channel: str) -> str:
        """tf frame of a channel's data: the LiDAR frame, or the camera's optical frame."""
        return self.lidar_frame if channel == self.lidar_channel else channel.lower() + self.camera_frame_suffix


#: ``--help`` of every :class:`BagLayout` field (each is an option of the same name).
LAYOUT_HELP = {
    "lidar_channel": "nuScenes channel of the LiDAR (cameras: every CAM_* channel)",
    "lidar_topic": "PointCloud2 topic",
    "lidar_frame": "frame of the clouds and the ground truth",
    "image_suffix": "image topic in each camera namespace (/cam_front/<suffix>)",
    "camera_frame_suffix": "camera frame = lower-case channel + this",
    "base_frame": "ego frame (parent of the sensor frames on /tf_static)",
    "map_frame": "global frame (parent of the ego frame on /tf)",
    "gt_topic": "Detection3DArray topic of the key frames' annotations",
    "tf_topic": "ego poses topic",
    "tf_static_topic": "sensor calibration topic (recorded transient local)",
    "clock_topic": "clock topic (with --clock)",
}


@dataclass
class SceneReport:
    """What the conversion of one scene wrote and skipped, and how long it took."""

    scene: str
    bag: Path
    #: Messages written per topic.
    counts: dict[str, int] = field(default_factory=dict)
    #: sample_data converted (messages from a file that was there).
    sample_data: int = 0
    #: Files named by sample_data that were missing or unreadable, each with the reason.
    missing: list[str] = field(default_factory=list)
    #: Annotations left out because their category has no detection class.
    ignored_annotations: int = 0
    #: Bytes read from sensor files, bytes of serialized messages written.
    bytes_read: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    #: Why no bag was written at all (e.g. it exists already), else empty.
    error: str = ""

    @property
    def messages(self) -> int:
        """All messages written into the bag."""
        return sum(self.counts.values())


def read_lidar_file(path: Path) -> np.ndarray:
    """The points of a nuScenes ``.pcd.bin`` as :data:`POINT_DTYPE` (ring cast to uint16), or ValueError why not."""
    raw = np.fromfile(path, dtype="<f4")
    if raw.size % PCD_COLUMNS:
        raise ValueError(f"{raw.size * 4} bytes is not a whole number of {PCD_COLUMNS}-float32 points")
    columns = raw.reshape(-1, PCD_COLUMNS)
    points = np.empty(len(columns), dtype=POINT_DTYPE)
    for i, name in enumerate(("x", "y", "z", "intensity")):
        points[name] = columns[:, i]
    points["ring"] = columns[:, 4]
    return points


def ground_truth(tables: NuScenesTables, lidar_data: Record, layout: BagLayout,
                 stamp_ns: int) -> tuple[Detection3DArray, int]:
    """(Detection3DArray of the key frame's annotations in the LiDAR frame at ``lidar_data``, annotations ignored).

    Geometric centre and orientation through the key frame's ego pose and the LiDAR calibration, size (length,
    width, height) from nuScenes' (width, length, height), ``id`` the instance token, ``class_id`` the detection
    class with score 1; annotations of categories without a detection class are left out and counted.
    """
    T_lidar_global = invert_rigid(pose_matrix(tables.ego_pose(lidar_data))
                                  @ pose_matrix(tables.calibrated_sensor(lidar_data)))
    header = Header(frame_id=layout.lidar_frame, stamp=stamp_from_nanoseconds(stamp_ns))
    detections, ignored = [], 0
    for ann in tables.annotations(lidar_data["sample_token"]):
        name = detection_class(tables.category(ann))
        if name is None:
            ignored += 1
            continue
        T = T_lidar_global @ pose_matrix(ann)
        qx, qy, qz, qw = quaternion_from_matrix(T[:3, :3])
        cx, cy, cz = T[:3, 3]
        pose = Pose(position=Point(x=float(cx), y=float(cy), z=float(cz)),
                    orientation=Quaternion(x=float(qx), y=float(qy), z=float(qz), w=float(qw)))
        width, length, height = (float(v) for v in ann["size"])
        hypothesis = ObjectHypothesisWithPose(hypothesis=ObjectHypothesis(class_id=name, score=1.0),
                                              pose=PoseWithCovariance(pose=pose))
        detections.append(Detection3D(header=header, results=[hypothesis], id=ann["instance_token"],
                                      bbox=BoundingBox3D(center=pose, size=Vector3(x=length, y=width, z=height))))
    return Detection3DArray(header=header, detections=detections), ignored


def _static_transforms(calibrations: dict[str, Record], layout: BagLayout, stamp_ns: int) -> object:
    """TFMessage base_link → every channel's frame from its calibrated_sensor."""
    stamp = stamp_from_nanoseconds(stamp_ns)
    return tf_message_type()(transforms=[
        transform_stamped(pose_matrix(calib), layout.base_frame, layout.frame(channel), stamp)
        for channel, calib in sorted(calibrations.items())])


def convert_scene(tables: NuScenesTables, scene_name: str, bag_path: Path, layout: BagLayout = BagLayout(),
                  storage: str = "mcap", clock: bool = False,
                  warn: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
                  progress: bool = True) -> SceneReport:
    """Write one scene's bag at ``bag_path``; missing files are ``warn``-ed about and left out, never fatal."""
    scene = tables.scene(scene_name)
    report = SceneReport(scene_name, bag_path)
    channels = {c for c in tables.channels(scene) if c == layout.lidar_channel or c.startswith("CAM_")}
    records = tables.sample_data(scene, channels)
    started = time.monotonic()
    bar = ProgressLine(scene_name, "sample_data", len(records)) if progress else None
    TFMessage = tf_message_type()
    # Every sensor's calibration goes into the first /tf_static; a calibration changing later adds another.
    calibrations: dict[str, Record] = {}
    for sd in records:
        calibrations.setdefault(tables.channel(sd), tables.calibrated_sensor(sd))
    last_clock = None
    try:
        writer = BagWriter(bag_path, storage)
    except BagError as exc:
        report.error = str(exc)
        return report
    with writer:
        for done, sd in enumerate(records, start=1):
            channel = tables.channel(sd)
            stamp_ns = int(sd["timestamp"]) * 1000
            stamp = stamp_from_nanoseconds(stamp_ns)
            calib = tables.calibrated_sensor(sd)
            if done == 1 or calibrations[channel]["token"] != calib["token"]:
                calibrations[channel] = calib
                writer.write(layout.tf_static_topic, _static_transforms(calibrations, layout, stamp_ns),
                             stamp_ns, TRANSIENT_LOCAL)
            if clock and stamp_ns != last_clock:
                writer.write(layout.clock_topic, Clock(clock=stamp), stamp_ns)
                last_clock = stamp_ns
            writer.write(layout.tf_topic, TFMessage(transforms=[transform_stamped(
                pose_matrix(tables.ego_pose(sd)), layout.map_frame, layout.base_frame, stamp)]), stamp_ns)
            path = tables.path(sd)
            frame = layout.frame(channel)
            try:
                if channel == layout.lidar_channel:
                    points = read_lidar_file(path)
                    report.bytes_read += points.size * PCD_COLUMNS * 4
                    writer.write(layout.lidar_topic, pointcloud2_from_structured(points, frame, stamp), stamp_ns)
                else:
                    data = path.read_bytes()
                    report.bytes_read += len(data)
                    writer.write(layout.image_topic(channel), CompressedImage(
                        header=Header(frame_id=frame, stamp=stamp), format="jpeg", data=data), stamp_ns)
                    writer.write(layout.info_topic(channel), camera_info_msg(
                        np.asarray(calib["camera_intrinsic"], dtype=np.float64), sd["width"], sd["height"], frame,
                        stamp), stamp_ns)
                report.sample_data += 1
            except (OSError, ValueError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                report.missing.append(f"{path}: {reason}")
                if bar is not None:
                    bar.clear()
                warn(f"{scene_name}: cannot read {path} ({reason}): its {channel} message at "
                     f"{stamp_ns * 1e-9:.6f} s is left out")
            if channel == layout.lidar_channel and sd["is_key_frame"]:
                gt, ignored = ground_truth(tables, sd, layout, stamp_ns)
                report.ignored_annotations += ignored
                writer.write(layout.gt_topic, gt, stamp_ns)
            if bar is not None:
                bar.update(done, final=done == len(records), MB=report.bytes_read / 1e6)
    report.counts = dict(writer.counts)
    report.bytes_written = writer.bytes_written
    report.seconds = time.monotonic() - started
    return report


def summary_line(report: SceneReport) -> str:
    """One line per scene: the bag, messages, throughput, and what was left out."""
    if report.error:
        return f"{report.scene}: not written: {report.error}"
    seconds = max(report.seconds, 1e-9)
    line = (f"{report.scene}: {report.bag} ({report.messages} messages, {report.sample_data} sample_data in "
            f"{report.seconds:.1f} s: {report.sample_data / seconds:.1f} sample_data/s, "
            f"{report.bytes_read / seconds / 1e6:.1f} MB/s read, {report.bytes_written / seconds / 1e6:.1f} MB/s "
            "written)")
    if report.missing:
        line += f"; {len(report.missing)} missing file(s) left out"
    if report.ignored_annotations:
        line += f"; {report.ignored_annotations} annotation(s) without a detection class left out"
    return line


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``aqr_nuscenes_to_bag``: exit code 1 only when no bag could be written at all."""
    defaults = BagLayout()
    parser = make_parser("aqr_nuscenes_to_bag", __doc__.splitlines()[0])
    parser.add_argument("--dataroot", type=Path, required=True, help="nuScenes root (holds <version>/, samples/, "
                        "sweeps/)")
    parser.add_argument("--version", default="v1.0-mini", help="dataset version (table folder)")
    parser.add_argument("--scenes", nargs="+", metavar="SCENE", help="scene names (default: every scene)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the bags (<out>/<scene name>)")
    parser.add_argument("--storage", choices=sorted(STORAGES), default="mcap", help="rosbag2 storage plugin")
    parser.add_argument("--clock", action="store_true", help="also write /clock at every sample_data stamp")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    names = parser.add_argument_group("topics and frames")
    for name, text in LAYOUT_HELP.items():
        names.add_argument("--" + name.replace("_", "-"), default=getattr(defaults, name), help=text)
    args = parser.parse_args(argv)
    layout = BagLayout(**{name: getattr(args, name) for name in BagLayout.__dataclass_fields__})
    try:
        tables = NuScenesTables(args.dataroot, args.version)
        scenes = [scene["name"] for scene in tables.iter_scenes(args.scenes)]
    except NuScenesError as exc:
        print(f"aqr_nuscenes_to_bag: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    reports = []
    for name in scenes:
        try:
            reports.append(convert_scene(tables, name, args.out / name, layout, args.storage, args.clock,
                                         progress=not args.no_progress))
        except NuScenesError as exc:  # a malformed table: the bag keeps what was written before
            reports.append(SceneReport(name, args.out / name, error=f"stopped: {exc}"))
    for report in reports:
        print(summary_line(report))
    total = sum(r.seconds for r in reports)
    written = [r for r in reports if not r.error and r.messages]
    if written and total > 0:
        print(f"total: {len(written)} bag(s), {sum(r.sample_data for r in reports)} sample_data in {total:.1f} s: "
              f"{sum(r.sample_data for r in reports) / total:.1f} sample_data/s, "
              f"{sum(r.bytes_read for r in reports) / total / 1e6:.1f} MB/s read")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
