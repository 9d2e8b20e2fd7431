"""The nuScenes tables of one dataset version, read from their JSON files without nuscenes-devkit.

``NuScenesTables(dataroot, version)`` loads ``<dataroot>/<version>/*.json`` (the devkit's schema: scene,
sample, sample_data, ego_pose, calibrated_sensor, sensor, sample_annotation, instance, category) and indexes
them by token; it answers what a converter or an evaluation needs: scenes by name, a scene's sample_data in
timestamp order, the key-frame timestamps and sample tokens, the annotations of a sample with their detection
class. Quaternions in the tables are (w, x, y, z); :func:`pose_matrix` turns a record into a 4x4 transform.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from aqr_ros.pipeline.rotations import matrix_from_quaternion

Record = dict[str, Any]

#: The tables loaded (``<name>.json``); the others of the schema (log, map, attribute, visibility) are not needed.
TABLES = ("scene", "sample", "sample_data", "ego_pose", "calibrated_sensor", "sensor", "sample_annotation",
          "instance", "category")

#: nuScenes category → detection class, as the devkit's detection challenge maps them; other categories
#: (animals, debris, static objects, ...) have no detection class.
DETECTION_CLASSES = {
    "movable_object.barrier": "barrier",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
}


class NuScenesError(RuntimeError):
    """A table, record or file of the dataset is missing or malformed; ``str(error)`` names it."""


def detection_class(category: str) -> str | None:
    """The detection class of a nuScenes category name, or None when the detection task ignores it."""
    return DETECTION_CLASSES.get(category)


def pose_matrix(record: Record) -> np.ndarray:
    """4x4 float64 transform of a record with ``translation`` and a (w, x, y, z) ``rotation``: for an ego_pose
    global ← ego, for a calibrated_sensor ego ← sensor, for an annotation global ← box."""
    w, x, y, z = record["rotation"]
    T = np.eye(4)
    T[:3, :3] = matrix_from_quaternion((x, y, z, w))
    T[:3, 3] = record["translation"]
    return T


class NuScenesTables:
    """The JSON tables of ``<dataroot>/<version>``, indexed by token, with per-scene lookups."""

    def __init__(self, dataroot: str | Path, version: str = "v1.0-mini") -> None:
        self.dataroot = Path(dataroot)
        self.version = version
        table_dir = self.dataroot / version
        if not table_dir.is_dir():
            raise NuScenesError(f"no nuScenes table folder {table_dir} (dataroot {self.dataroot}, version {version})")
        self._tables: dict[str, dict[str, Record]] = {}
        for name in TABLES:
            path = table_dir / f"{name}.json"
            try:
                records = json.loads(path.read_text())
            except FileNotFoundError:
                raise NuScenesError(f"missing nuScenes table {path}") from None
            except (OSError, ValueError) as exc:
                raise NuScenesError(f"cannot read nuScenes table {path}: {exc}") from None
            if not isinstance(records, list):
                raise NuScenesError(f"nuScenes table {path} is not a JSON list of records")
            self._tables[name] = {record["token"]: record for record in records}
        self._scene_by_name = {record["name"]: record for record in self._tables["scene"].values()}
        self._samples_of_scene: dict[str, list[Record]] = defaultdict(list)
        for sample in self._tables["sample"].values():
            self._samples_of_scene[sample["scene_token"]].append(sample)
        for samples in self._samples_of_scene.values():
            samples.sort(key=lambda s: s["timestamp"])
        self._data_of_sample: dict[str, list[Record]] = defaultdict(list)
        for sd in self._tables["sample_data"].values():
            self._data_of_sample[sd["sample_token"]].append(sd)
        self._annotations_of_sample: dict[str, list[Record]] = defaultdict(list)
        for ann in self._tables["sample_annotation"].values():
            self._annotations_of_sample[ann["sample_token"]].append(ann)

    def get(self, table: str, token: str) -> Record:
        """The record ``token`` of ``table`` (one of :data:`TABLES`)."""
        try:
            return self._tables[table][token]
        except KeyError:
            raise NuScenesError(f"{self.version}/{table}.json has no record {token!r}") from None

    @property
    def scene_names(self) -> list[str]:
        """Names of every scene of the version, in table order."""
        return [record["name"] for record in self._tables["scene"].values()]

    def scene(self, name: str) -> Record:
        """The scene record called ``name`` (e.g. ``scene-0103``)."""
        try:
            return self._scene_by_name[name]
        except KeyError:
            raise NuScenesError(f"{self.version} has no scene {name!r} (scenes: "
                                f"{', '.join(sorted(self._scene_by_name))})") from None

    def samples(self, scene: Record) -> list[Record]:
        """The scene's samples (key frames) in timestamp order."""
        return self._samples_of_scene[scene["token"]]

    def sample_tokens(self, scene: Record) -> list[str]:
        """Tokens of the scene's samples in timestamp order (the rows of a detection results file)."""
        return [sample["token"] for sample in self.samples(scene)]

    def keyframe_tokens(self, scene: Record) -> dict[int, str]:
        """Key-frame timestamp (µs, the LIDAR_TOP key frame's) → sample token, for every sample of the scene."""
        return {sample["timestamp"]: sample["token"] for sample in self.samples(scene)}

    def sample_data(self, scene: Record, channels: set[str] | None = None) -> list[Record]:
        """The scene's sample_data (key frames and sweeps) of ``channels`` (None: all), by timestamp, then channel."""
        records = [sd for sample in self.samples(scene) for sd in self._data_of_sample[sample["token"]]
                   if channels is None or self.channel(sd) in channels]
        return sorted(records, key=lambda sd: (sd["timestamp"], self.channel(sd)))

    def channels(self, scene: Record) -> list[str]:
        """Sensor channels with data in the scene, sorted."""
        return sorted({self.channel(sd) for sample in self.samples(scene)
                       for sd in self._data_of_sample[sample["token"]]})

    def calibrated_sensor(self, sample_data: Record) -> Record:
        """The calibrated_sensor record of a sample_data (sensor pose in the ego frame, camera intrinsics)."""
        return self.get("calibrated_sensor", sample_data["calibrated_sensor_token"])

    def channel(self, sample_data: Record) -> str:
        """The sensor channel (``LIDAR_TOP``, ``CAM_FRONT``, ...) of a sample_data."""
        return self.get("sensor", self.calibrated_sensor(sample_data)["sensor_token"])["channel"]

    def ego_pose(self, sample_data: Record) -> Record:
        """The ego_pose record of a sample_data (the ego in the global frame at its timestamp)."""
        return self.get("ego_pose", sample_data["ego_pose_token"])

    def annotations(self, sample_token: str) -> list[Record]:
        """The sample_annotation records of a sample."""
        return self._annotations_of_sample[sample_token]

    def category(self, annotation: Record) -> str:
        """The category name (e.g. ``vehicle.car``) of an annotation, through its instance."""
        instance = self.get("instance", annotation["instance_token"])
        return self.get("category", instance["category_token"])["name"]

    def path(self, sample_data: Record) -> Path:
        """The file of a sample_data under the dataroot (``samples/...`` or ``sweeps/...``)."""
        return self.dataroot / sample_data["filename"]

    def iter_scenes(self, names: list[str] | None = None) -> Iterator[Record]:
        """The scenes called ``names`` (all when None), checked to exist before any is returned."""
        scenes = [self.scene(name) for name in names] if names else list(self._tables["scene"].values())
        yield from scenes
