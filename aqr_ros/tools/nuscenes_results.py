"""The nuScenes detection results document: the node's boxes of each key frame in the global frame.

One entry per box: ``sample_token``, ``translation`` (global geometric centre), ``size`` (w, l, h),
``rotation`` (global quaternion w, x, y, z), ``velocity`` (global vx, vy), ``detection_name``,
``detection_score`` and ``attribute_name``, chosen as mmdet3d's nuScenes formatting does: moving
(> 0.2 m/s) vehicles are ``vehicle.moving`` and cycles ``cycle.with_rider``; standing pedestrians are
``pedestrian.standing`` and buses ``vehicle.stopped``; otherwise the class default. The document is
``{"meta": {...}, "results": {sample_token: [entry, ...]}}`` with every sample of the evaluated split.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from aqr_ros.pipeline.boxes import RosBoxes, transform_boxes
from aqr_ros.tools.nuscenes_tables import detection_class

#: The detection classes of the nuScenes detection task (the devkit's DETECTION_NAMES).
DETECTION_NAMES = ("car", "truck", "bus", "trailer", "construction_vehicle", "pedestrian", "motorcycle", "bicycle",
                   "traffic_cone", "barrier")
#: Attribute of a box when the motion rule does not decide it ("" for classes without attributes).
DEFAULT_ATTRIBUTE = {
    "car": "vehicle.parked", "truck": "vehicle.parked", "trailer": "vehicle.parked",
    "construction_vehicle": "vehicle.parked", "bus": "vehicle.moving", "pedestrian": "pedestrian.moving",
    "motorcycle": "cycle.without_rider", "bicycle": "cycle.without_rider", "barrier": "", "traffic_cone": "",
}
_VEHICLES = frozenset({"car", "construction_vehicle", "bus", "truck", "trailer"})
_CYCLES = frozenset({"bicycle", "motorcycle"})
#: Speed (m/s) above which a box counts as moving.
MOVING_SPEED = 0.2
#: The ``meta`` block: which inputs made the results (the node uses the cameras and the LiDAR).
DEFAULT_META = {"use_camera": True, "use_lidar": True, "use_radar": False, "use_map": False,
                "use_external": False}


def attribute_name(name: str, velocity: Sequence[float]) -> str:
    """The attribute of a box of class ``name`` moving at ``velocity`` (vx, vy in m/s), by mmdet3d's rule."""
    if float(np.hypot(velocity[0], velocity[1])) > MOVING_SPEED:
        if name in _VEHICLES:
            return "vehicle.moving"
        if name in _CYCLES:
            return "cycle.with_rider"
    elif name == "pedestrian":
        return "pedestrian.standing"
    elif name == "bus":
        return "vehicle.stopped"
    return DEFAULT_ATTRIBUTE[name]


def detection_results(boxes: RosBoxes, names: Sequence[str], scores: Sequence[float],
                      T_global_lidar: np.ndarray, sample_token: str = "") -> list[dict]:
    """nuScenes result entries of one key frame's boxes, given in the LiDAR frame that ``T_global_lidar`` (4x4)
    maps into the global frame. ``sample_token`` may be left empty: :func:`results_document` fills it in."""
    if not len(boxes) == len(names) == len(scores):
        raise ValueError(f"{len(boxes)} boxes, {len(names)} names and {len(scores)} scores: one each per box")
    unknown = sorted(set(names) - set(DETECTION_NAMES))
    if unknown:
        raise ValueError(f"class names {unknown} are no nuScenes detection classes ({', '.join(DETECTION_NAMES)})")
    world = transform_boxes(boxes, np.asarray(T_global_lidar, dtype=np.float64))
    entries = []
    for k, name in enumerate(names):
        x, y, z, w = world.quaternion[k]
        velocity = [float(v) for v in world.velocity[k, :2]]
        length, width, height = (float(v) for v in world.size[k])
        entries.append({
            "sample_token": sample_token, "translation": [float(v) for v in world.center[k]],
            "size": [width, length, height], "rotation": [float(w), float(x), float(y), float(z)],
            "velocity": velocity, "detection_name": name, "detection_score": float(scores[k]),
            "attribute_name": attribute_name(name, velocity)})
    return entries


def results_document(per_sample: Mapping[str, list[dict]], meta: Mapping[str, bool] | None = None) -> dict:
    """The results JSON document: ``meta`` (missing flags from :data:`DEFAULT_META`) and the entries of every
    sample, each entry's ``sample_token`` set to the sample it is listed under."""
    unknown = sorted(set(meta or {}) - set(DEFAULT_META))
    if unknown:
        raise ValueError(f"unknown meta fields {unknown}: accepted {', '.join(DEFAULT_META)}")
    results = {token: [{**entry, "sample_token": token} for entry in entries] for token, entries in per_sample.items()}
    return {"meta": {**DEFAULT_META, **(meta or {})}, "results": results}


def _box_velocity(annotations: Mapping[str, dict], record: dict, sample_time: Mapping[str, int]) -> list[float]:
    """Global (vx, vy) of an annotation from its instance's neighbours, as the devkit estimates it."""
    prev, nxt = annotations.get(record["prev"]), annotations.get(record["next"])
    first, last = prev or record, nxt or record
    if first is last:
        return [float("nan"), float("nan")]
    dt = (sample_time[last["sample_token"]] - sample_time[first["sample_token"]]) * 1e-6
    return [(last["translation"][i] - first["translation"][i]) / dt for i in range(2)]


def ground_truth_results(dataroot: str | Path, version: str) -> dict[str, list[dict]]:
    """The dataset's annotations as result entries per sample (score 1): ground truth as predictions, for tests.

    Only what the devkit evaluates is kept: detection classes with at least one LiDAR or radar point.
    """
    folder = Path(dataroot) / version
    load = {name: json.loads((folder / f"{name}.json").read_text())
            for name in ("sample", "sample_annotation", "instance", "category", "attribute")}
    category = {r["token"]: r["name"] for r in load["category"]}
    instance_class = {r["token"]: detection_class(category[r["category_token"]]) for r in load["instance"]}
    attribute = {r["token"]: r["name"] for r in load["attribute"]}
    annotations = {r["token"]: r for r in load["sample_annotation"]}
    sample_time = {r["token"]: r["timestamp"] for r in load["sample"]}
    per_sample: dict[str, list[dict]] = {token: [] for token in sample_time}
    for record in annotations.values():
        name = instance_class[record["instance_token"]]
        if name is None or record["num_lidar_pts"] + record["num_radar_pts"] == 0:
            continue
        attributes = [attribute[t] for t in record["attribute_tokens"]]
        per_sample[record["sample_token"]].append({
            "sample_token": record["sample_token"], "translation": record["translation"], "size": record["size"],
            "rotation": record["rotation"], "velocity": _box_velocity(annotations, record, sample_time),
            "detection_name": name, "detection_score": 1.0, "attribute_name": attributes[0] if attributes else ""})
    return per_sample
