"""aqr_nuscenes_export: synthetic-rig scenes written as a nuScenes-format dataset the nuScenes devkit loads.

    python -m aqr_ros.tools.nuscenes_export --dataroot /tmp/rig_nuscenes --version v1.0-mini

Each scene is one synthetic rig (:class:`~aqr_ros.tools.synthetic_rig.SyntheticRig`, scene kind and seed as the
rig publisher's ``--scene``/``--seed``; scene ``i`` uses seed ``seed + i``) rendered by the rig's own code, frame
by frame: every LiDAR sweep as a ``.pcd.bin`` (x, y, z, intensity, ring as float32, in the rig's ``lidar_top``
frame with REP-103 axes, exactly the points the rig publisher sends) and every camera exposure as a JPEG.
Every 10th sweep (2 Hz) is a key frame (``samples/``), the rest are ``sweeps/``; per camera the exposure closest
to a key frame is that camera's key frame. The rig's odom frame is the nuScenes global frame, base_link the ego;
calibrated_sensor holds the rig's mounts (cameras as optical frames) and intrinsics. Annotations are the rig's
objects at the key-frame time: geometric centre, size (w, l, h), yaw quaternion (w, x, y, z), points of the key
sweep inside the box, an attribute from the object's motion and a visibility level from the fraction of the box's
image outline its colours cover in the key images. Scene names should be real nuScenes names so that the devkit's
splits (e.g. ``mini_val``: scene-0103, scene-0916) select them. The rig scenes are free of collisions for
:data:`~aqr_ros.tools.rig_scenes.HORIZON` seconds; longer exports are allowed.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from aqr_ros.pipeline.rotations import quaternion_from_matrix
from aqr_ros.tools.cli import make_parser
from aqr_ros.tools.detection_metrics import points_in_boxes
from aqr_ros.tools.rig_scenes import SCENE_KINDS, make_scene
from aqr_ros.tools.synthetic_rig import (CAMERA_NAMES, LIDAR_PERIOD, CameraFrame, LidarFrame, SyntheticRig,
                                        invert_rigid)

LIDAR_CHANNEL = "LIDAR_TOP"
#: nuScenes camera channels in the rig's (model) camera order.
CAMERA_CHANNELS = tuple(name.upper() for name in CAMERA_NAMES)
#: LiDAR sweeps per key frame: key frames at 2 Hz.
KEYFRAME_EVERY = 10
#: Axis convention of the exported LIDAR_TOP clouds and calibration (the rig's lidar_top, not nuScenes').
LIDAR_AXES = "rep103"
#: Rig class → nuScenes category (all map back to the rig class under the devkit's detection mapping).
CATEGORIES = {
    "car": "vehicle.car",
    "truck": "vehicle.truck",
    "bus": "vehicle.bus.rigid",
    "bicycle": "vehicle.bicycle",
    "barrier": "movable_object.barrier",
    "traffic_cone": "movable_object.trafficcone",
    "pedestrian": "human.pedestrian.adult",
}
#: The nuScenes attribute names (attribute.json).
ATTRIBUTES = ("vehicle.moving", "vehicle.stopped", "vehicle.parked", "cycle.with_rider", "cycle.without_rider",
              "pedestrian.sitting_lying_down", "pedestrian.standing", "pedestrian.moving")
#: nuScenes visibility levels: token, level, upper bound of the visible fraction.
VISIBILITY_LEVELS = (("1", "v0-40", 0.4), ("2", "v40-60", 0.6), ("3", "v60-80", 0.8), ("4", "v80-100", 1.0))
#: Speed (m/s) above which an object counts as moving (as mmdet3d's attribute rule).
MOVING_SPEED = 0.2
#: First LiDAR stamp of the first scene (µs since the epoch, 2018-08-01); scenes follow each other by an hour.
START_TIME_US = 1_533_081_600_000_000
_SCENE_SPACING_US = 3_600_000_000
JPEG_QUALITY = 95
#: Name of the export summary written next to the tables' folder.
SUMMARY_FILE = "aqr_rig_export.json"
_NEAR_PLANE = 0.05


def _token(*parts: object) -> str:
    """A deterministic 32-hex nuScenes token from the parts that identify a record."""
    return hashlib.md5(":".join(str(p) for p in parts).encode()).hexdigest()


def _quaternion_wxyz(R: np.ndarray) -> list[float]:
    """nuScenes (w, x, y, z) quaternion of a 3x3 rotation."""
    x, y, z, w = quaternion_from_matrix(R)
    return [float(w), float(x), float(y), float(z)]


def attribute_of(class_name: str, speed: float) -> str | None:
    """The nuScenes attribute of a rig object from its class and speed (m/s); None for cones and barriers."""
    moving = speed > MOVING_SPEED
    if class_name in ("car", "truck", "bus"):
        return "vehicle.moving" if moving else "vehicle.parked"
    if class_name == "bicycle":
        return "cycle.with_rider" if moving else "cycle.without_rider"
    if class_name == "pedestrian":
        return "pedestrian.moving" if moving else "pedestrian.standing"
    return None


def visibility_token(fraction: float) -> str:
    """Token of the nuScenes visibility level of a visible fraction (0..1)."""
    for token, _, upper in VISIBILITY_LEVELS:
        if fraction <= upper:
            return token
    return VISIBILITY_LEVELS[-1][0]


@dataclass(frozen=True)
class RigExport:
    """What an export wrote, and what is needed to check it against the rig it came from."""

    dataroot: Path
    version: str
    #: Scene names in export order, and per scene the rig seed and the sample tokens in time order.
    scenes: tuple[str, ...]
    scene_seeds: dict[str, int]
    sample_tokens: dict[str, list[str]]
    #: Per scene, the timestamp (µs) of rig time 0: a stamp ``s`` is rig time ``(s - start_us) * 1e-6``.
    start_us: dict[str, int]
    scene_kind: str
    noise: bool
    #: LiDAR frames per scene (20 Hz), key frames every :data:`KEYFRAME_EVERY`.
    lidar_frames: int
    #: Instance token → (scene name, index of the object in the rig scene).
    instances: dict[str, tuple[str, int]]
    #: [6, 4, 4] the rig's ``Rig.lidar2img(i)`` (lidar_top → pixels) in :data:`CAMERA_CHANNELS` order.
    lidar2img: np.ndarray
    lidar_axes: str = LIDAR_AXES
    #: Records per table.
    counts: dict[str, int] = field(default_factory=dict)
    #: Wall time the export took.
    seconds: float = 0.0

    def synthetic_rig(self, scene: str) -> SyntheticRig:
        """The rig that rendered ``scene`` (same scene, seed and noise: identical data)."""
        seed = self.scene_seeds[scene]
        return SyntheticRig(seed, noise=self.noise, scene=make_scene(self.scene_kind, seed))

    def rig_time(self, scene: str, stamp_us: int) -> float:
        """Rig time (s) of a timestamp of ``scene`` (exact to the µs rounding of the stamps)."""
        return (stamp_us - self.start_us[scene]) * 1e-6

    def to_json(self) -> dict:
        """The summary as JSON (written as :data:`SUMMARY_FILE` in the dataroot)."""
        return {"version": self.version, "scenes": list(self.scenes), "scene_seeds": self.scene_seeds,
                "sample_tokens": self.sample_tokens, "start_us": self.start_us, "scene_kind": self.scene_kind,
                "noise": self.noise, "lidar_frames": self.lidar_frames,
                "instances": {k: list(v) for k, v in self.instances.items()}, "lidar2img": self.lidar2img.tolist(),
                "lidar_axes": self.lidar_axes, "counts": self.counts, "seconds": self.seconds}


class _Tables:
    """The JSON tables being built, one list of records per table name."""

    NAMES = ("attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map", "sample",
             "sample_annotation", "sample_data", "scene", "sensor", "visibility")

    def __init__(self) -> None:
        self.records: dict[str, list[dict]] = {name: [] for name in self.NAMES}

    def add(self, table: str, record: dict) -> dict:
        """Append a record to ``table`` and return it (callers fill prev/next links later)."""
        self.records[table].append(record)
        return record

    def write(self, folder: Path) -> None:
        """Write every table as ``<folder>/<name>.json``."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, records in self.records.items():
            (folder / f"{name}.json").write_text(json.dumps(records, indent=0))


def _static_tables(tables: _Tables) -> dict[str, str]:
    """Fill attribute, category, visibility and sensor; return the token of every attribute/category/channel."""
    tokens = {}
    for name in ATTRIBUTES:
        tokens[name] = tables.add("attribute", {"token": _token("attribute", name), "name": name,
                                                "description": f"nuScenes attribute {name}"})["token"]
    for rig_class, name in CATEGORIES.items():
        tokens[name] = tables.add("category", {"token": _token("category", name), "name": name,
                                               "description": f"synthetic rig class {rig_class}"})["token"]
    for token, level, upper in VISIBILITY_LEVELS:
        tables.add("visibility", {"token": token, "level": level,
                                  "description": f"visible fraction of the object in the images up to {upper:g}"})
    for channel in (LIDAR_CHANNEL, *CAMERA_CHANNELS):
        modality = "lidar" if channel == LIDAR_CHANNEL else "camera"
        tokens[channel] = tables.add("sensor", {"token": _token("sensor", channel), "channel": channel,
                                                "modality": modality})["token"]
    return tokens


def _write_map(dataroot: Path, tables: _Tables, log_tokens: list[str]) -> None:
    """One blank semantic-prior map for all logs (the devkit's detection evaluation reads no map)."""
    token = _token("map", "rig")
    filename = f"maps/{token}.png"
    (dataroot / "maps").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(dataroot / filename), np.zeros((100, 100), dtype=np.uint8))
    tables.add("map", {"token": token, "log_tokens": log_tokens, "category": "semantic_prior", "filename": filename})


def _link(records: list[dict]) -> None:
    """Fill the prev/next tokens of records in time order ("" at both ends)."""
    for a, b in zip(records, records[1:]):
        a["next"], b["prev"] = b["token"], a["token"]


def _key_exposures(rig: SyntheticRig, num_frames: int) -> dict[tuple[int, int], int]:
    """(camera, exposure index) → key-frame index whose LiDAR time it is closest to, for every key frame."""
    events = rig.schedule(num_frames)
    keys = {}
    for m, k in enumerate(range(0, num_frames, KEYFRAME_EVERY)):
        t_key = k * LIDAR_PERIOD
        for i in range(len(rig.rig.cameras)):
            nearest = min((e for e in events if e.sensor == i), key=lambda e: abs(e.t - t_key))
            keys[i, nearest.index] = m
    return keys


def _outline_pixels(rig: SyntheticRig, camera: int, t: float, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per object: pixels of the image showing its colours inside the outline (convex hull of its projected box,
    clipped to the image), and the outline's pixel count. Objects behind the camera have an empty outline."""
    cam = rig.rig.cameras[camera]
    corners = rig.box_corners(t, invert_rigid(rig.ego_pose(t) @ cam.T_base_cam))
    colors = np.concatenate([rig.scene.colors[:, None], rig.scene.front_colors[:, None]], axis=1)
    visible = np.zeros(len(corners), dtype=np.int64)
    area = np.zeros(len(corners), dtype=np.int64)
    height, width = image.shape[:2]
    for m, box in enumerate(corners):
        front = box[box[:, 2] > _NEAR_PLANE]
        if len(front) < 3:
            continue
        uv = front[:, :2] / front[:, 2:3] * cam.K[[0, 1], [0, 1]] + cam.K[:2, 2]
        uv = np.clip(uv, [-width, -height], [2 * width, 2 * height])
        hull = cv2.convexHull(np.round(uv).astype(np.int32))
        x0, y0, w, h = cv2.boundingRect(hull)
        x1, y1 = min(x0 + w, width), min(y0 + h, height)
        x0, y0 = max(x0, 0), max(y0, 0)
        if x1 <= x0 or y1 <= y0:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        cv2.fillConvexPoly(mask, hull - [x0, y0], 1)
        crop = image[y0:y1, x0:x1]
        own = (crop[:, :, None, :] == colors[m][None, None]).all(axis=-1).any(axis=-1)
        visible[m] = int((own & (mask > 0)).sum())
        area[m] = int(mask.sum())
    return visible, area


class _SceneWriter:
    """Streams one rig scene into the files and tables: sample_data per frame, annotations per key frame."""

    def __init__(self, dataroot: Path, tables: _Tables, tokens: dict[str, str], name: str, index: int, seed: int,
                 scene_kind: str, rig: SyntheticRig, num_frames: int):
        self.dataroot, self.tables, self.tokens, self.rig = dataroot, tables, tokens, rig
        self.name, self.seed, self.scene_kind = name, seed, scene_kind
        self.start_us = START_TIME_US + index * _SCENE_SPACING_US
        self.log_name = f"rig-seed{seed}-{name}"
        self.log_token = tables.add("log", {"token": _token("log", name, seed), "logfile": self.log_name,
                                            "vehicle": "synthetic-rig", "date_captured": "2018-08-01",
                                            "location": "synthetic-rig"})["token"]
        self.scene_token = _token("scene", name, seed)
        self.calib = self._calibrations()
        self.samples = [tables.add("sample", {"token": _token("sample", name, seed, k), "prev": "", "next": "",
                                              "timestamp": self.stamp_us(k * LIDAR_PERIOD),
                                              "scene_token": self.scene_token})
                        for k in range(0, num_frames, KEYFRAME_EVERY)]
        _link(self.samples)
        self.key_exposures = _key_exposures(rig, num_frames)
        self.channel_data: dict[str, list[dict]] = {ch: [] for ch in (LIDAR_CHANNEL, *CAMERA_CHANNELS)}
        self.annotations: dict[int, list[dict]] = {}
        self.pixels: dict[int, np.ndarray] = {}
        self.instances: dict[int, list[dict]] = {m: [] for m in range(len(rig.scene.objects))}

    def stamp_us(self, t: float) -> int:
        """Timestamp (µs) of rig time ``t``."""
        return self.start_us + round(t * 1e6)

    def _calibrations(self) -> dict[str, str]:
        """One calibrated_sensor per channel: the rig's mounts in base_link, camera intrinsics."""
        rig = self.rig.rig
        poses = {LIDAR_CHANNEL: (rig.T_base_lidar, [])}
        for channel, cam in zip(CAMERA_CHANNELS, rig.cameras):
            poses[channel] = (cam.T_base_cam, cam.K.tolist())
        calib = {}
        for channel, (T, K) in poses.items():
            calib[channel] = self.tables.add("calibrated_sensor", {
                "token": _token("calibrated_sensor", self.name, self.seed, channel),
                "sensor_token": self.tokens[channel], "translation": T[:3, 3].tolist(),
                "rotation": _quaternion_wxyz(T[:3, :3]), "camera_intrinsic": K})["token"]
        return calib

    def _nearest_sample(self, t: float) -> int:
        return min(range(len(self.samples)), key=lambda m: abs(m * KEYFRAME_EVERY * LIDAR_PERIOD - t))

    def _sample_data(self, channel: str, t: float, key: int | None, index: int, T_odom_base: np.ndarray,
                     extension: str, size: tuple[int, int]) -> Path:
        """Add the ego_pose and sample_data records of one file; returns the path to write it to."""
        stamp = self.stamp_us(t)
        token = _token("sample_data", self.name, self.seed, channel, index)
        pose = self.tables.add("ego_pose", {"token": _token("ego_pose", self.name, self.seed, channel, index),
                                            "timestamp": stamp, "translation": T_odom_base[:3, 3].tolist(),
                                            "rotation": _quaternion_wxyz(T_odom_base[:3, :3])})
        folder = "samples" if key is not None else "sweeps"
        filename = f"{folder}/{channel}/{self.log_name}__{channel}__{stamp}.{extension}"
        sample = self.samples[key if key is not None else self._nearest_sample(t)]
        record = self.tables.add("sample_data", {
            "token": token, "sample_token": sample["token"], "ego_pose_token": pose["token"],
            "calibrated_sensor_token": self.calib[channel], "timestamp": stamp,
            "fileformat": "pcd" if channel == LIDAR_CHANNEL else "jpg", "is_key_frame": key is not None,
            "height": size[0], "width": size[1], "filename": filename, "prev": "", "next": ""})
        self.channel_data[channel].append(record)
        return self.dataroot / filename

    def lidar(self, frame: LidarFrame) -> None:
        """Write one sweep; at a key frame also its annotations."""
        key = frame.index // KEYFRAME_EVERY if frame.index % KEYFRAME_EVERY == 0 else None
        path = self._sample_data(LIDAR_CHANNEL, frame.t, key, frame.index, frame.T_odom_base, "pcd.bin", (0, 0))
        p = frame.points
        np.column_stack([p["x"], p["y"], p["z"], p["intensity"], p["ring"]]).astype("<f4").tofile(path)
        if key is not None:
            xyz = np.column_stack([p["x"], p["y"], p["z"]])
            self._annotate(key, frame.t, points_in_boxes(xyz, frame.boxes))

    def _annotate(self, key: int, t: float, num_points: np.ndarray) -> None:
        """Annotation records of every rig object at key frame ``key`` (visibility filled in later)."""
        centre, R, half, velocity = self.rig.scene.box_states(t)
        records = []
        for m, obj in enumerate(self.rig.scene.objects):
            attribute = attribute_of(obj.class_name, float(np.hypot(*velocity[m, :2])))
            record = self.tables.add("sample_annotation", {
                "token": _token("sample_annotation", self.name, self.seed, key, m),
                "sample_token": self.samples[key]["token"], "instance_token": _token("instance", self.name,
                                                                                     self.seed, m),
                "visibility_token": "", "attribute_tokens": [self.tokens[attribute]] if attribute else [],
                "translation": centre[m].tolist(), "size": [2 * half[m, 1], 2 * half[m, 0], 2 * half[m, 2]],
                "rotation": _quaternion_wxyz(R[m]), "prev": "", "next": "",
                "num_lidar_pts": int(num_points[m]), "num_radar_pts": 0})
            records.append(record)
            self.instances[m].append(record)
        self.annotations[key] = records
        self.pixels[key] = np.zeros((2, len(records)), dtype=np.int64)

    def camera(self, frame: CameraFrame) -> None:
        """Write one image; at a camera key frame also count the objects' visible pixels."""
        key = self.key_exposures.get((frame.camera, frame.index))
        channel = CAMERA_CHANNELS[frame.camera]
        path = self._sample_data(channel, frame.t, key, frame.index, frame.T_odom_base, "jpg",
                                    frame.image.shape[:2])
        ok, data = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"could not encode {path.name} as JPEG")
        path.write_bytes(data.tobytes())
        if key is not None:
            visible, area = _outline_pixels(self.rig, frame.camera, frame.t, frame.image)
            self.pixels[key] += np.stack([visible, area])

    def finish(self) -> dict[str, tuple[str, int]]:
        """Link the chains, set visibilities, write the instance and scene records; return instance → object."""
        for records in self.channel_data.values():
            _link(records)
        for key, records in self.annotations.items():
            visible, area = self.pixels[key]
            for record, v, a in zip(records, visible, area):
                record["visibility_token"] = visibility_token(v / a if a else 0.0)
        instances = {}
        for m, records in self.instances.items():
            _link(records)
            category = CATEGORIES[self.rig.scene.objects[m].class_name]
            token = _token("instance", self.name, self.seed, m)
            self.tables.add("instance", {"token": token, "category_token": self.tokens[category],
                                         "nbr_annotations": len(records),
                                         "first_annotation_token": records[0]["token"],
                                         "last_annotation_token": records[-1]["token"]})
            instances[token] = (self.name, m)
        self.tables.add("scene", {"token": self.scene_token, "log_token": self.log_token,
                                  "nbr_samples": len(self.samples), "first_sample_token": self.samples[0]["token"],
                                  "last_sample_token": self.samples[-1]["token"], "name": self.name,
                                  "description": f"synthetic rig, {self.scene_kind} scene of seed {self.seed}"})
        return instances


def export_rig_nuscenes(dataroot: Path, version: str = "v1.0-mini",
                        scenes: Sequence[str] = ("scene-0103", "scene-0916"), seconds: float = 3.0, seed: int = 0,
                        scene_kind: str = "random", noise: bool = True,
                        progress: Callable[[str, int, int], None] | None = None) -> RigExport:
    """Render ``seconds`` of one rig scene per name in ``scenes`` into a nuScenes dataset under ``dataroot``.

    Scene ``i`` is the rig of ``make_scene(scene_kind, seed + i)``; ``progress(scene, frame, frames)`` is called
    after every LiDAR frame. Frames are written as they are rendered; the tables at the end.
    """
    if scene_kind not in SCENE_KINDS:
        raise ValueError(f"unknown scene kind {scene_kind!r}: expected one of {SCENE_KINDS}")
    if len(set(scenes)) != len(scenes) or not scenes:
        raise ValueError(f"scene names must be given and distinct, got {list(scenes)}")
    num_frames = round(seconds / LIDAR_PERIOD)
    if num_frames < 1:
        raise ValueError(f"seconds must cover at least one LiDAR frame ({LIDAR_PERIOD} s), got {seconds}")
    started = time.perf_counter()
    dataroot = Path(dataroot)
    for folder in ("samples", "sweeps"):
        for channel in (LIDAR_CHANNEL, *CAMERA_CHANNELS):
            (dataroot / folder / channel).mkdir(parents=True, exist_ok=True)
    tables = _Tables()
    tokens = _static_tables(tables)
    instances: dict[str, tuple[str, int]] = {}
    seeds, sample_tokens, start_us = {}, {}, {}
    lidar2img = None
    for index, name in enumerate(scenes):
        seeds[name] = seed + index
        rig = SyntheticRig(seed + index, noise=noise, scene=make_scene(scene_kind, seed + index))
        lidar2img = rig.rig.lidar2img_all()
        writer = _SceneWriter(dataroot, tables, tokens, name, index, seed + index, scene_kind, rig, num_frames)
        for frame in rig.frames(num_frames):
            if isinstance(frame, LidarFrame):
                writer.lidar(frame)
                if progress:
                    progress(name, frame.index + 1, num_frames)
            else:
                writer.camera(frame)
        instances.update(writer.finish())
        sample_tokens[name] = [s["token"] for s in writer.samples]
        start_us[name] = writer.start_us
    _write_map(dataroot, tables, [r["token"] for r in tables.records["log"]])
    tables.write(dataroot / version)
    counts = {name: len(records) for name, records in tables.records.items()}
    export = RigExport(dataroot, version, tuple(scenes), seeds, sample_tokens, start_us, scene_kind, noise, num_frames,
                       instances, lidar2img, counts=counts, seconds=time.perf_counter() - started)
    (dataroot / SUMMARY_FILE).write_text(json.dumps(export.to_json(), indent=1))
    return export


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``aqr_nuscenes_export --dataroot D [--version V] [--scenes a,b] [--seconds S] ...``."""
    parser = make_parser("aqr_nuscenes_export", __doc__.splitlines()[0])
    parser.add_argument("--dataroot", type=Path, required=True, help="folder to write the dataset into")
    parser.add_argument("--version", default="v1.0-mini", help="table folder name (the devkit's version)")
    parser.add_argument("--scenes", default="scene-0103,scene-0916",
                        help="comma-separated scene names, one rig scene each (real nuScenes names, so that the "
                             "devkit's splits select them; the default is the mini_val split)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of every scene")
    parser.add_argument("--seed", type=int, default=0, help="rig seed of the first scene (scene i: seed + i)")
    parser.add_argument("--scene-kind", choices=SCENE_KINDS, default="random",
                        help="template: the fixed street; random: a street from the random scene distribution")
    parser.add_argument("--no-noise", action="store_true", help="noise-free LiDAR sweeps")
    args = parser.parse_args(argv)
    scenes = [s.strip() for s in args.scenes.split(",") if s.strip()]

    def report(scene: str, frame: int, frames: int) -> None:
        if frame == frames or frame % 10 == 0:
            print(f"\r{scene}: LiDAR frame {frame}/{frames}", end="\n" if frame == frames else "",
                  file=sys.stderr, flush=True)

    try:
        export = export_rig_nuscenes(args.dataroot, args.version, scenes, args.seconds, args.seed,
                                     args.scene_kind, not args.no_noise, report)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"aqr_nuscenes_export: {exc}", file=sys.stderr)
        return 1
    counts = export.counts
    print(f"wrote {len(export.scenes)} scenes, {counts['sample']} samples, {counts['sample_data']} sample_data, "
          f"{counts['sample_annotation']} annotations to {args.dataroot} ({args.version}) in {export.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
