"""The demo: the node and the synthetic rig as separate processes talking over real DDS on loopback.

Starts ``aqr_node`` (the real node; by default the rig-trained ``aqr_cmt_rig_small`` model) and
``aqr_rig_publisher`` (a held-out random scene: cloud, six cameras, camera_info, tf), listens to the node's
outputs from this process, and counts a frame only once it is warm: every camera fused and the sweep history
full, as the node's per-frame ``~/debug/frame_report`` says. Warm-up frames are shown and not counted; each counted
frame gets its seven weight-map pictures and a JSON of its detections with their AQR weights and ground truth.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image, PointCloud2
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import MarkerArray

from aqr_ros.model import ConfigError, ModelConfig, load_config
from aqr_ros.model.checkpoint import CheckpointError, bind_config, read_carried_config
from aqr_ros.pipeline.rotations import yaw_from_quaternion
from aqr_ros.resources import share_dir
from aqr_ros.ros.to_msg import QUERY_WEIGHTS_DTYPE, nanoseconds_from_stamp
from aqr_ros.tools.cli import add_device_argument, add_precision_argument, make_parser
from aqr_ros.tools.processes import (NODE, NODE_STOP_S, child_env, log_problems, node_arguments, shipped_parameter,
                                    spawn, stop)
from aqr_ros.tools.rig_scenes import SCENE_KINDS, make_scene
from aqr_ros.tools.synthetic_rig import LIDAR_FRAME, LIDAR_PERIOD, SyntheticRig

SEC = 1_000_000_000
#: Config of the model trained on the synthetic rig (models/README.md), the demo's default.
RIG_CONFIG = "aqr_cmt_rig_small"
#: The nuScenes config to name for real sensors.
NUSCENES_CONFIG = "cmt_aqr_voxel0100_r50_800x320"
#: A detection matches a ground-truth box of its class whose centre is this close in the x-y plane (m).
MATCH_DISTANCE = 2.0
#: Ground-truth objects this close to the LiDAR (m, x-y plane) are counted in the final "found" line.
FOUND_RANGE = 30.0
#: Seconds a frame waits for its pictures, weights, markers and status before it is decided without them.
SETTLE_S = 3.0
#: CPU playback speed: a cloud every 0.05 s / 0.08 = 0.625 s. The rig_small forward takes ~0.35 s on two idle
#: cores; in the node, pictures included, on 2 cores shared with a training job, 0.5-0.7 s, and it still took
#: consecutive clouds (one arriving while it works is taken next), so it neither starves nor falls behind.
CPU_RATE = 0.08
#: The files a run writes at the top of ``--out``, and in each frame folder besides the pictures.
OUTPUT_FILES = ("summary.json", "aqr_node.log", "rig_publisher.log")
FRAME_FILES = ("detections.json",)
FRAME_FOLDER = re.compile(r"frame_\d{3,}")
PICTURE_FILE = re.compile(r"weight_map_(bev|camera\d+)\.png")
#: A log line of a child that :func:`print_failure` shows (rclpy's severity tag).
PROBLEM_LINE = re.compile(r"\[(FATAL|ERROR)\]")
#: The units of detections.json (README "What the demo shows" describes every field).
UNITS = {"center": "m", "size_lwh": "m", "yaw": "rad", "velocity": "m/s", "distance": "m", "dt_ms": "ms",
         "processing_ms": "ms", "stamp_ns": "ns", "rig_time_s": "s", "score": "0..1",
         "lidar_weight": "0..1", "camera_weight": "0..1"}


@dataclass(frozen=True)
class FrameState:
    """The node's report of one published frame, from its ``~/debug/frame_report`` (stamped like the frame)."""

    #: Per camera (model view order): its name and state ("fused", "late", "missing", "rejected: ...", ...).
    camera_names: tuple[str, ...]
    camera_state: tuple[str, ...]
    #: Per camera image-minus-cloud time (ms), None when it had no image.
    camera_dt_ms: tuple[Optional[float], ...]
    sweeps: int
    processing_ms: float

    def fused(self) -> list[int]:
        """Indices of the fused cameras."""
        return [i for i, state in enumerate(self.camera_state) if state == "fused"]


def parse_frame_report(msg: Any, views: int) -> FrameState | None:
    """The frame state a :func:`~aqr_ros.ros.diagnostics.frame_report` message carries, None when it lacks a key."""
    values = {kv.key: kv.value for status in msg.status for kv in status.values}
    names, states, dts = [], [], []
    for i in range(views):
        key = next((k for k in values if k.startswith(f"camera{i} ") and k != f"camera{i} dt_ms"), None)
        if key is None or "sweeps" not in values or "total ms" not in values:
            return None
        dt = values.get(f"camera{i} dt_ms", "n/a")
        names.append(key.split(" ", 1)[1])
        states.append(values[key])
        dts.append(None if dt == "n/a" else float(dt))
    return FrameState(tuple(names), tuple(states), tuple(dts), int(values["sweeps"]), float(values["total ms"]))


def not_counted_reason(state: FrameState | None, num_sweeps: int) -> str | None:
    """Why a frame is not counted (a warm-up frame, or no status), None when it counts: every camera fused and
    ``num_sweeps`` sweeps accumulated."""
    if state is None:
        return "no frame report: the node's ~/debug/frame_report of the frame did not arrive"
    unfused = len(state.camera_state) - len(state.fused())
    reasons = ([f"{unfused} of {len(state.camera_state)} cameras not fused"] if unfused else []) + (
        [f"past sweeps {state.sweeps}/{num_sweeps}"] if state.sweeps < num_sweeps else [])
    return "warm-up: " + ", ".join(reasons) if reasons else None


def camera_summary(state: FrameState) -> str:
    """The camera indices grouped by state, e.g. ``fused 0; missing 1 2 3 4 5``."""
    groups: dict[str, list[str]] = {}
    for i, camera_state in enumerate(state.camera_state):
        groups.setdefault(camera_state, []).append(str(i))
    return "; ".join(f"{camera_state} {' '.join(ids)}" for camera_state, ids in groups.items())


@dataclass
class FrameRecord:
    """Everything received for one processed frame, keyed by the cloud stamp."""

    stamp_ns: int
    frame_id: str
    #: Monotonic time its detections arrived (the frame waits SETTLE_S for the rest).
    arrived: float
    detections: list[dict[str, Any]]
    #: The node's report of the frame (camera states, sweeps, processing time), once it arrives.
    state: FrameState | None = None
    #: Decoder query of each detection (rank order) and velocity per query, from the markers; None until they arrive.
    queries: list[int] | None = None
    velocities: dict[int, list[float]] | None = None
    #: The ~/debug/aqr_weights rows (row = query index); None until they arrive.
    weights: np.ndarray | None = None
    #: RGB picture per name: "bev" and "camera{i}" (the fused cameras' overlays).
    pictures: dict[str, np.ndarray] = field(default_factory=dict)

    def missing(self, views: int) -> list[str]:
        """What has not arrived yet (empty when the frame is complete); pictures of the fused cameras only."""
        cameras = self.state.fused() if self.state is not None else range(views)
        absent = [f"{name} picture" for name in ("bev", *(f"camera{i}" for i in cameras)) if name not in self.pictures]
        if self.weights is None:
            absent.append("aqr_weights")
        if self.velocities is None:
            absent.append("markers")
        if self.state is None:
            absent.append("frame report")
        return absent


def _rounded(values: Sequence[float], digits: int = 3) -> list[float]:
    return [round(float(v), digits) for v in values]


def _detection(det: Any) -> dict[str, Any]:
    """One Detection3D as JSON fields (the weights, velocity and ground truth are joined later)."""
    c, s = det.bbox.center, det.bbox.size
    q = c.orientation
    hyp = det.results[0].hypothesis
    return {"class": hyp.class_id, "score": round(float(hyp.score), 4),
            "center": _rounded((c.position.x, c.position.y, c.position.z)), "size_lwh": _rounded((s.x, s.y, s.z)),
            "yaw": round(float(yaw_from_quaternion((q.x, q.y, q.z, q.w))), 4)}


def _rgb(msg: Any) -> np.ndarray:
    """[H, W, 3] view of an rgb8 Image."""
    return np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[:, :msg.width * 3].reshape(
        msg.height, msg.width, 3)


class DemoListener:
    """rclpy node in the demo process collecting the aqr_node outputs per cloud stamp.

    A camera overlay carries its image's stamp, which may lie within the fusion tolerance of two processed
    clouds; it belongs to the frame processed last when it arrives (the node publishes a frame's detections
    first, then its pictures), provided its stamp is within ``max_delay_ns`` of that frame's cloud stamp.
    The node's frame report (camera states, sweeps, processing time) is stamped like the frame's detections.
    """

    def __init__(self, node: Any, views: int, max_delay_ns: int) -> None:
        self.views = views
        self.max_delay_ns = max_delay_ns
        self.frames: dict[int, FrameRecord] = {}
        #: Cloud stamps in the order their detections arrived (the node's processing order).
        self.order: list[int] = []
        #: Overlays that fit no processed frame (should stay 0).
        self.stray_overlays = 0
        node.create_subscription(Detection3DArray, f"{NODE}/output/detections", self._on_detections, 10)
        node.create_subscription(MarkerArray, f"{NODE}/output/markers", self._on_markers, 10)
        node.create_subscription(PointCloud2, f"{NODE}/debug/aqr_weights", self._on_weights, 10)
        node.create_subscription(DiagnosticArray, f"{NODE}/debug/frame_report", self._on_frame_report, 10)
        node.create_subscription(Image, f"{NODE}/debug/weight_map/bev", self._on_bev, 10)
        for i in range(views):
            node.create_subscription(Image, f"{NODE}/debug/weight_map/camera{i}",
                                     lambda m, i=i: self._on_camera(i, m), 10)

    def _on_detections(self, msg: Any) -> None:
        stamp = nanoseconds_from_stamp(msg.header.stamp)
        self.frames[stamp] = FrameRecord(stamp, msg.header.frame_id, time.monotonic(),
                                         [_detection(d) for d in msg.detections])
        self.order.append(stamp)

    def _on_frame_report(self, msg: Any) -> None:
        rec = self.frames.get(nanoseconds_from_stamp(msg.header.stamp))
        if rec is not None:
            rec.state = parse_frame_report(msg, self.views)

    def _on_markers(self, msg: Any) -> None:
        rec = self.frames.get(nanoseconds_from_stamp(msg.markers[0].header.stamp)) if msg.markers else None
        if rec is None:
            return
        rec.queries = [m.id for m in msg.markers if m.ns == "labels"]  # the labels come in detection order
        rec.velocities = {m.id: _rounded((m.points[1].x - m.points[0].x, m.points[1].y - m.points[0].y,
                                          m.points[1].z - m.points[0].z))
                          for m in msg.markers if m.ns == "velocity"}

    def _on_weights(self, msg: Any) -> None:
        rec = self.frames.get(nanoseconds_from_stamp(msg.header.stamp))
        if rec is not None and msg.point_step == QUERY_WEIGHTS_DTYPE.itemsize:
            rec.weights = np.frombuffer(bytes(msg.data), dtype=QUERY_WEIGHTS_DTYPE)

    def _on_bev(self, msg: Any) -> None:
        rec = self.frames.get(nanoseconds_from_stamp(msg.header.stamp))
        if rec is not None and msg.encoding == "rgb8":
            rec.pictures["bev"] = _rgb(msg)

    def _on_camera(self, camera: int, msg: Any) -> None:
        stamp = nanoseconds_from_stamp(msg.header.stamp)
        rec = self.frames[self.order[-1]] if self.order else None
        name = f"camera{camera}"
        if (rec is None or msg.encoding != "rgb8" or name in rec.pictures
                or abs(stamp - rec.stamp_ns) > self.max_delay_ns):
            self.stray_overlays += 1
            return
        rec.pictures[name] = _rgb(msg)


class GroundTruth:
    """The rig's ground truth of the played scene, in lidar_top, and the matching of detections to it."""

    def __init__(self, scene: str, seed: int) -> None:
        self.rig = SyntheticRig(seed, scene=make_scene(scene, seed))

    def boxes(self, t: float) -> tuple[np.ndarray, list[str]]:
        """[M, 9] boxes (x, y, z_bottom, l, w, h, yaw, vx, vy) and class names at rig time ``t``."""
        boxes, names = self.rig.ground_truth_boxes(t)
        return boxes, list(names)

    @staticmethod
    def match(det: dict[str, Any], boxes: np.ndarray, names: list[str]) -> tuple[int, dict[str, Any]] | None:
        """(index, JSON entry) of the nearest box of the detection's class within MATCH_DISTANCE, else None."""
        same = np.array([n == det["class"] for n in names], dtype=bool)
        dist = np.hypot(boxes[:, 0] - det["center"][0], boxes[:, 1] - det["center"][1])
        dist = np.where(same, dist, np.inf)
        if not len(dist) or dist.min() > MATCH_DISTANCE:
            return None
        k = int(np.argmin(dist))
        b = boxes[k]
        return k, {"class": names[k], "center": _rounded((b[0], b[1], b[2] + b[5] / 2.0)),
                   "size_lwh": _rounded(b[3:6]), "yaw": round(float(b[6]), 4), "velocity": _rounded((b[7], b[8], 0.0)),
                   "distance": round(float(dist[k]), 3)}


@dataclass
class FrameResult:
    """A counted frame's JSON record and its ground-truth tally."""

    record: dict[str, Any]
    gt_near: int
    gt_found: int


def rig_time(stamp_ns: int, start_ns: int) -> float:
    """Rig time (s) of a cloud stamp: whole LiDAR periods since the rig publisher's ``--start-time``."""
    return round((stamp_ns - start_ns) / (LIDAR_PERIOD * SEC)) * LIDAR_PERIOD


def evaluate_frame(index: int, rec: FrameRecord, start_ns: int, gt: GroundTruth) -> FrameResult:
    """The ``index``-th counted frame's record: detections joined with their query's AQR weights (row
    ``query_index`` of ~/debug/aqr_weights), velocity and ground-truth match; the cameras and sweeps."""
    t = rig_time(rec.stamp_ns, start_ns)
    boxes, names = gt.boxes(t)
    found: set[int] = set()
    detections = []
    for det, query in zip(rec.detections, rec.queries or []):
        row = rec.weights[query]
        match = GroundTruth.match(det, boxes, names) if rec.frame_id == LIDAR_FRAME else None
        if match is not None:
            found.add(match[0])
        detections.append({**det, "query_index": query, "velocity": rec.velocities.get(query, [0.0, 0.0, 0.0]),
                           "lidar_weight": round(float(row["lidar_weight"]), 4),
                           "camera_weight": round(float(row["camera_weight"]), 4),
                           "gt": None if match is None else match[1]})
    near = set(np.flatnonzero(np.hypot(boxes[:, 0], boxes[:, 1]) < FOUND_RANGE).tolist())
    state = rec.state
    record = {"frame": index, "stamp_ns": rec.stamp_ns, "rig_time_s": round(t, 3), "frame_id": rec.frame_id,
              "units": UNITS, "processing_ms": state.processing_ms,
              "past_sweeps": state.sweeps,
              "cameras_fused": [f"camera{i}" for i in state.fused()],
              "cameras": {f"camera{i}": {"name": name, "state": s, "dt_ms": dt} for i, (name, s, dt)
                          in enumerate(zip(state.camera_names, state.camera_state, state.camera_dt_ms))},
              "ground_truth_within_30m": len(near), "ground_truth_found": len(found & near),
              "detections": detections}
    return FrameResult(record, len(near), len(found & near))


def write_frame(folder: Path, rec: FrameRecord, result: FrameResult) -> None:
    """The frame's pictures (PNG) and detections.json."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in rec.pictures:
        cv2.imwrite(str(folder / f"weight_map_{name}.png"), cv2.cvtColor(rec.pictures[name], cv2.COLOR_RGB2BGR))
    (folder / "detections.json").write_text(json.dumps(result.record, indent=1))


def print_frame(folder: Path, result: FrameResult, num_sweeps: int, top: int) -> None:
    """One line for a counted frame (cameras, sweeps, processing time, matches) and its best ``top`` detections."""
    record = result.record
    dets = record["detections"]
    matched = sum(d["gt"] is not None for d in dets)
    dts = " ".join(f"{c['dt_ms']:+.0f}" for c in record["cameras"].values() if c["dt_ms"] is not None)
    print(f"frame {record['frame']}: rig t={record['rig_time_s']:.2f} s  cameras fused "
          f"{len(record['cameras_fused'])}/{len(record['cameras'])} (dt ms {dts})  past sweeps "
          f"{record['past_sweeps']}/{num_sweeps}  node {record['processing_ms']:.0f} ms  {len(dets)} detections, "
          f"{matched} match ground truth, found {result.gt_found}/{result.gt_near} objects within "
          f"{FOUND_RANGE:.0f} m  -> {folder}")
    for d in sorted(dets, key=lambda d: -d["score"])[:top]:
        gt = (f"gt {d['gt']['class']} at {d['gt']['distance']:.2f} m" if d["gt"] is not None else "no gt match")
        x, y, z = d["center"]
        print(f"    {d['class']:<14} {d['score']:.2f} at ({x:7.2f}, {y:7.2f}, {z:5.2f})  "
              f"L {d['lidar_weight']:.2f} C {d['camera_weight']:.2f}  {gt}")


def print_not_counted(rec: FrameRecord, t: float, reason: str, num_sweeps: int) -> None:
    """One line for a frame shown but not counted: why, and the node's camera states and sweeps."""
    state = rec.state
    seen = (f"  cameras {camera_summary(state)}  past sweeps {state.sweeps}/{num_sweeps}" if state is not None else "")
    print(f"  not counted ({reason}): rig t={t:.2f} s{seen}")


def shipped_checkpoint(config: ModelConfig) -> Path:
    """The trained weights shipped for ``config``: ``models/weights/<name>.safetensors`` (source tree or share)."""
    return share_dir() / "models" / "weights" / f"{config.name}.safetensors"


def resolve_checkpoint(args: argparse.Namespace, config: ModelConfig) -> str:
    """The checkpoint to load ('' for --random-weights); raises SystemExit naming the option at fault."""
    if args.random_weights:
        if args.checkpoint is not None:
            raise SystemExit("aqr_demo: --checkpoint and --random-weights exclude each other")
        return ""
    path = Path(args.checkpoint).expanduser().resolve() if args.checkpoint else shipped_checkpoint(config)
    if args.checkpoint and not path.is_file():
        raise SystemExit(f"aqr_demo: --checkpoint: no such file {path}")
    if not path.is_file():
        raise SystemExit(
            f"aqr_demo: the trained weights of {config.name} are missing: {path}\n"
            "  Train them with the command in models/README.md (python -m aqr_ros.tools.train_rig --out "
            f"{path}),\n  pass --checkpoint PATH, or pass --random-weights to see the data path with random weights.")
    return str(path)


@dataclass(frozen=True)
class OutputFolder:
    """The absolute ``--out`` folder, how many files of a previous demo run were removed, and what was kept."""

    path: Path
    removed: int
    kept: list[str]


def prepare_output(out: Path) -> OutputFolder:
    """``out`` made absolute against the working directory and created; the files a previous demo run wrote
    there (:data:`OUTPUT_FILES`, and the pictures and :data:`FRAME_FILES` of ``frame_NNN`` folders) removed,
    everything else kept and listed."""
    out = out.expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise SystemExit(f"aqr_demo: --out: {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    removed, kept = 0, []
    for entry in sorted(out.iterdir()):
        if entry.is_file() and not entry.is_symlink() and entry.name in OUTPUT_FILES:
            entry.unlink()
            removed += 1
        elif entry.is_dir() and not entry.is_symlink() and FRAME_FOLDER.fullmatch(entry.name):
            for inner in sorted(entry.iterdir()):
                if inner.is_file() and not inner.is_symlink() and (inner.name in FRAME_FILES
                                                                   or PICTURE_FILE.fullmatch(inner.name)):
                    inner.unlink()
                    removed += 1
                else:
                    kept.append(f"{entry.name}/{inner.name}")
            if not any(entry.iterdir()):
                entry.rmdir()
        else:
            kept.append(entry.name)
    return OutputFolder(out, removed, kept)


def build_parser(cuda: bool) -> argparse.ArgumentParser:
    """Command-line options (``--help`` shows the defaults); the CPU defaults keep a run short and every
    processed frame complete."""
    parser = make_parser("aqr_demo", __doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20 if cuda else 5,
                        help="counted frames to write; warm-up frames are shown, not counted "
                             "(default: 20 with CUDA, else 5)")
    parser.add_argument("--config", help=f"model config name or YAML (default: the checkpoint's own when it "
                        f"carries one, else {RIG_CONFIG})")
    parser.add_argument("--checkpoint", default=None,
                        help="model checkpoint (.pth/.safetensors) (default: models/weights/<config>.safetensors)")
    parser.add_argument("--random-weights", action="store_true",
                        help="run the model with random weights (meaningless boxes; shows the data path)")
    parser.add_argument("--scene", choices=SCENE_KINDS, default="random", help="rig scene kind")
    parser.add_argument("--seed", type=int, default=9000, help="rig scene seed (9000-9019 are held out of training)")
    add_device_argument(parser)
    add_precision_argument(parser, help="the node's model.precision: fp16 runs under CUDA autocast, fp32 on a CPU")
    parser.add_argument("--rate", type=float, default=1.0 if cuda else CPU_RATE,
                        help="rig playback speed, 1 = real time; slower on a CPU so the node takes consecutive clouds "
                             f"(default: 1 with CUDA, else {CPU_RATE})")
    parser.add_argument("--score-threshold", type=float, default=0.3, help="the node's score_threshold")
    parser.add_argument("--top", type=int, default=5, help="detections printed per frame")
    parser.add_argument("--out", type=Path, default=Path("out/demo"),
                        help="output folder, relative to the working directory")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    parser.add_argument("--domain-id", type=int, default=None, help="ROS domain (default: $ROS_DOMAIN_ID)")
    return parser


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject out-of-range values, naming the option."""
    checks = {"--frames": args.frames >= 1, "--rate": args.rate > 0.0, "--timeout": args.timeout > 0.0,
              "--top": args.top >= 0, "--score-threshold": 0.0 <= args.score_threshold <= 1.0,
              "--domain-id": args.domain_id is None or 0 <= args.domain_id <= 232}
    wrong = [name for name, ok in checks.items() if not ok]
    if wrong:
        parser.error(f"{', '.join(wrong)}: out of range (frames >= 1, rate > 0, timeout > 0, top >= 0, "
                     "score threshold 0..1, domain id 0..232)")


def print_failure(name: str, what: str, log: Path) -> None:
    """Say what happened to a child (``what``: "exited with code 1", ...) and show its log's FATAL/ERROR lines,
    else its last lines (e.g. a Python traceback)."""
    lines = log_problems(log)
    flagged = any(PROBLEM_LINE.search(line) for line in lines)
    if not lines:
        print(f"{name} {what}; its log {log} is empty")
        return
    print(f"{name} {what}; its {'FATAL/ERROR' if flagged else 'last'} log lines ({log}):")
    for line in lines:
        print(f"  | {line}")


def announce(args: argparse.Namespace, config: ModelConfig, checkpoint: str, out: OutputFolder,
             env: dict[str, str], tf_note: str) -> None:
    """The start-up lines: model, scene, output, DDS, what the weights are good for, and what counts."""
    print(f"aqr_ros demo: model {config.name} on device '{args.device}' ({args.precision}), rig scene {args.scene} "
          f"seed {args.seed}, {args.frames} frames")
    print(f"  output {out.path}" + (f": removed {out.removed} files of the previous demo run" if out.removed else "")
          + (f"; kept what the demo did not write: {', '.join(out.kept)}" if out.kept else ""))
    print(f"  DDS on loopback, ROS_DOMAIN_ID={env.get('ROS_DOMAIN_ID', '0 (ROS default)')}; {tf_note}")
    if not checkpoint:
        print("  NOTE: --random-weights: the boxes and weight maps are meaningless; they only show the data path.")
    else:
        print(f"  checkpoint {checkpoint}")
        if config.name == RIG_CONFIG:
            print("  NOTE: this model was trained on the synthetic rig only; for real sensors use a nuScenes "
                  f"checkpoint (--checkpoint ... --config {NUSCENES_CONFIG})")
    print(f"  a frame counts once all {config.image.num_views} cameras are fused and {config.lidar.num_sweeps} "
          "sweeps are accumulated (the node's ~/debug/frame_report); the warm-up frames before are shown, not counted")


def node_parameters(args: argparse.Namespace, config: ModelConfig, checkpoint: str,
                    config_carried: bool) -> dict[str, object]:
    """Overrides of the shipped parameter file for aqr_node (the config by name or path unless the checkpoint
    carries it: ``config_carried``)."""
    params: dict[str, object] = {"model.device": args.device, "model.precision": args.precision,
                                 "score_threshold": args.score_threshold}
    if args.config or not config_carried:
        params["model.config"] = args.config or config.name
    if checkpoint:
        params["model.checkpoint"] = checkpoint
    return params


def rig_arguments(args: argparse.Namespace, start_s: int, num_sweeps: int) -> list[str]:
    """``python`` arguments of the rig publisher: enough clouds for some drops, stamps from ``start_s``.

    It renders 0.25 s of rig time ahead on a slow CPU playback (plenty there) and 2 s in real time.
    """
    return ["-m", "aqr_ros.tools.rig_publisher", "--scene", args.scene, "--seed", str(args.seed),
            "--frames", str(num_sweeps + 4 * args.frames + 10), "--rate", str(args.rate),
            "--start-time", str(start_s), "--prebuffer", str(max(0.25, 2.0 * args.rate)),
            "--wait-for-subscribers", "1", "--wait-timeout", str(args.timeout)]


@dataclass
class Collector:
    """Decides the processed frames in order: counted and written when warm and complete, else shown and
    tallied with the reason."""

    out: Path
    start_ns: int
    num_sweeps: int
    views: int
    gt: GroundTruth
    top: int
    results: list[FrameResult] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    decided: int = 0

    def decide(self, listener: DemoListener, wanted: int) -> None:
        """Decide every received frame whose outputs and frame report are all in or overdue, until ``wanted`` count."""
        while self.decided < len(listener.order) and len(self.results) < wanted:
            rec = listener.frames[listener.order[self.decided]]
            overdue = time.monotonic() - rec.arrived >= SETTLE_S
            reason = not_counted_reason(rec.state, self.num_sweeps)
            if rec.state is None and not overdue:
                return  # its frame report may still come
            missing = rec.missing(self.views) if reason is None else []
            if missing and not overdue:
                return  # its pictures may still come
            self.decided += 1
            t = rig_time(rec.stamp_ns, self.start_ns)
            if reason is None and missing:
                reason = "incomplete: no " + ", ".join(missing)
            if reason is not None:
                self.skipped[reason.split(":")[0]] += 1
                print_not_counted(rec, t, reason, self.num_sweeps)
            else:
                folder = self.out / f"frame_{len(self.results):03d}"
                result = evaluate_frame(len(self.results), rec, self.start_ns, self.gt)
                write_frame(folder, rec, result)
                print_frame(folder, result, self.num_sweeps, self.top)
                self.results.append(result)
            rec.pictures.clear()


def wait_for_node(executor: Any, listener_node: Any, node_proc: Any, node_log: Path, timeout: float) -> bool:
    """Spin until aqr_node publishes detections (model loaded); False when it exited or ``timeout`` passed."""
    start = time.monotonic()
    while listener_node.count_publishers(f"{NODE}/output/detections") == 0:
        executor.spin_once(timeout_sec=0.2)
        if node_proc.poll() is not None:
            print_failure("aqr_node", f"exited with code {node_proc.returncode}", node_log)
            return False
        if time.monotonic() - start > timeout:
            print_failure("aqr_node", f"published nothing within {timeout:g} s (--timeout)", node_log)
            return False
    print(f"  aqr_node ready after {time.monotonic() - start:.1f} s")
    return True


def collect(executor: Any, listener: DemoListener, collector: Collector, node_proc: Any, rig_proc: Any,
            logs: tuple[Path, Path], args: argparse.Namespace, deadline: float) -> None:
    """Spin and decide frames until enough count, a child fails, the rig is done, or the deadline."""
    idle_since = None
    while len(collector.results) < args.frames and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        if node_proc.poll() is not None:
            print_failure("aqr_node", f"exited with code {node_proc.returncode}", logs[0])
            return
        collector.decide(listener, args.frames)
        if rig_proc.poll() is None or collector.decided < len(listener.order):
            idle_since = None
            continue
        idle_since = idle_since or time.monotonic()
        if time.monotonic() - idle_since > SETTLE_S:  # the rig is done and nothing more came
            if rig_proc.returncode != 0:
                print_failure("aqr_rig_publisher", f"exited with code {rig_proc.returncode}", logs[1])
            return
    if len(collector.results) < args.frames:
        print(f"timed out after {args.timeout:g} s (--timeout) with {len(collector.results)} of {args.frames} "
              "frames counted")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``aqr_demo``, ``./scripts/demo.sh``)."""
    parser = build_parser(torch.cuda.is_available())
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    try:
        chosen = load_config(args.config) if args.config else None
    except ConfigError as exc:
        parser.error(f"--config: {exc}")
    checkpoint = resolve_checkpoint(args, chosen or load_config(RIG_CONFIG))
    try:
        carried = read_carried_config(checkpoint) if checkpoint else None
        config = bind_config(carried, chosen, checkpoint, RIG_CONFIG)
    except CheckpointError as exc:
        parser.error(f"--config: {exc}")
    output = prepare_output(args.out)
    out = output.path
    env, tf_note = child_env(args.domain_id)
    announce(args, config, checkpoint, output, env, tf_note)

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    logs = (out / "aqr_node.log", out / "rig_publisher.log")
    start_s = int(time.time())
    deadline = time.monotonic() + args.timeout
    collector = Collector(out, start_s * SEC, config.lidar.num_sweeps, config.image.num_views,
                          GroundTruth(args.scene, args.seed), args.top)
    max_delay_ns = int(float(shipped_parameter("sync.max_camera_lidar_delay")) * SEC)
    rclpy.init(domain_id=args.domain_id)
    listener_node = rclpy.create_node("aqr_demo")
    listener = DemoListener(listener_node, config.image.num_views, max_delay_ns)
    executor = SingleThreadedExecutor()
    executor.add_node(listener_node)
    node_proc = spawn(node_arguments(node_parameters(args, config, checkpoint, carried is not None),
                                     config.image.num_views), env, logs[0])
    rig_proc = None
    try:
        print("  starting aqr_node (model load and warm-up) ...")
        if not wait_for_node(executor, listener_node, node_proc, logs[0], args.timeout):
            return 1
        print(f"  starting the rig at {args.rate:g}x real time ({args.rate / LIDAR_PERIOD:.2f} clouds/s)")
        rig_proc = spawn(rig_arguments(args, start_s, config.lidar.num_sweeps), env, logs[1])
        collect(executor, listener, collector, node_proc, rig_proc, logs, args, deadline)
    finally:
        stop(rig_proc)
        stop(node_proc, NODE_STOP_S)
        listener_node.destroy_node()
        rclpy.try_shutdown()
    return finish(out, args, config, checkpoint, collector, listener.stray_overlays)


def finish(out: Path, args: argparse.Namespace, config: ModelConfig, checkpoint: str, collector: Collector,
           stray: int) -> int:
    """Write summary.json, print the totals; exit code 0 when all requested frames were counted."""
    results, skipped = collector.results, collector.skipped
    times = [r.record["processing_ms"] for r in results]
    near, found = sum(r.gt_near for r in results), sum(r.gt_found for r in results)
    summary = {"frames": len(results), "config": config.name, "checkpoint": checkpoint or None,
               "random_weights": not checkpoint, "scene": args.scene, "seed": args.seed, "rate": args.rate,
               "device": args.device, "precision": args.precision, "processing_ms": times,
               "not_counted": dict(skipped), "stray_overlays": stray,
               "ground_truth_within_30m": near, "ground_truth_found": found}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if skipped:
        print(f"not counted: {sum(skipped.values())} processed frames ("
              + ", ".join(f"{n} {reason}" for reason, n in skipped.items()) + ")")
    if times:
        print(f"node processing time over {len(times)} frames: median {np.median(times):.0f} ms, "
              f"max {max(times):.0f} ms")
    print(f"ground truth within {FOUND_RANGE:.0f} m: found {found} of {near} objects over {len(results)} frames"
          + (f" ({100.0 * found / near:.0f} %)" if near else ""))
    print(f"wrote {len(results)} frame folders (weight_map_*.png, detections.json each) and summary.json to {out}")
    print(f"logs: {out / 'aqr_node.log'}, {out / 'rig_publisher.log'}")
    return 0 if len(results) >= args.frames else 1


if __name__ == "__main__":
    sys.exit(main())
