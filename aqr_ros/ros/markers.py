"""Output messages of one frame's detections: the Detection3DArray, the LabelInfo and a MarkerArray for rviz2.

The marker array starts with a DELETEALL so the previous frame's boxes vanish, then per detection k (by
descending score) one marker per namespace, all with id k: a translucent CUBE (``boxes``), its 12
edges as a LINE_LIST (``edges``), a TEXT_VIEW_FACING label "car 0.83 L:0.71 C:0.55" with the query's
LiDAR and camera weights (``labels``), a heading ARROW (``heading``) and, for moving objects, a
velocity ARROW (``velocity``). Colours are fixed per class.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Pose, PoseWithCovariance, Quaternion, Vector3
from std_msgs.msg import ColorRGBA, Header
from vision_msgs.msg import (BoundingBox3D, Detection3D, Detection3DArray, LabelInfo, ObjectHypothesis,
                             ObjectHypothesisWithPose, VisionClass)
from visualization_msgs.msg import Marker, MarkerArray

from aqr_ros.pipeline.frame import FrameDetections

#: RGB (0..1) per nuScenes class; other names take ``FALLBACK_COLOURS[label % len]``.
CLASS_COLOURS: dict[str, tuple[float, float, float]] = {
    "car": (1.0, 0.62, 0.0),
    "truck": (1.0, 0.39, 0.28),
    "construction_vehicle": (0.91, 0.59, 0.27),
    "bus": (1.0, 0.27, 0.0),
    "trailer": (1.0, 0.55, 0.0),
    "barrier": (0.44, 0.5, 0.56),
    "motorcycle": (1.0, 0.24, 0.39),
    "bicycle": (0.86, 0.08, 0.24),
    "pedestrian": (0.0, 0.0, 0.9),
    "traffic_cone": (0.18, 0.31, 0.31),
}
FALLBACK_COLOURS = ((0.5, 0.5, 0.5), (0.0, 0.7, 0.7), (0.7, 0.0, 0.7), (0.7, 0.7, 0.0))

BOX_ALPHA = 0.4
#: Speeds below this (m/s) get no velocity arrow.
MIN_ARROW_SPEED = 0.2

#: Corner signs (length, width, height) of a box and the 12 edges between them.
_CORNER_SIGNS = np.array([(sx, sy, sz) for sx in (1, -1) for sy in (1, -1) for sz in (1, -1)], dtype=np.float64)
_EDGES = np.array([(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7)])


def class_colour(name: str, label: int) -> tuple[float, float, float]:
    """Fixed RGB colour of a class."""
    return CLASS_COLOURS.get(name, FALLBACK_COLOURS[label % len(FALLBACK_COLOURS)])


def box_corners(center: np.ndarray, size: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """[K, 8, 3] corners of boxes given by geometric centre [K, 3], size (l, w, h) [K, 3] and yaw [K]."""
    local = _CORNER_SIGNS[None] * (size[:, None, :] / 2.0)
    cos, sin = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    rotated = np.stack([cos * local[..., 0] - sin * local[..., 1],
                        sin * local[..., 0] + cos * local[..., 1],
                        local[..., 2]], axis=-1)
    return rotated + center[:, None, :]


def label_text(name: str, score: float, lidar_weight: float, camera_weight: float) -> str:
    """The label shown above a box: class, score and the query's LiDAR/camera weights."""
    return f"{name} {score:.2f} L:{lidar_weight:.2f} C:{camera_weight:.2f}"


def _marker(header: Header, ns: str, marker_id: int, kind: int, rgb: tuple[float, float, float], alpha: float,
            lifetime: Duration) -> Marker:
    return Marker(header=header, ns=ns, id=marker_id, type=kind, action=Marker.ADD, lifetime=lifetime,
                  color=ColorRGBA(r=rgb[0], g=rgb[1], b=rgb[2], a=alpha), frame_locked=False)


def _points(xyz: np.ndarray) -> list[Point]:
    return [Point(x=x, y=y, z=z) for x, y, z in xyz.tolist()]


def build_markers(frame: FrameDetections, header: Header, lifetime_s: float = 0.0) -> MarkerArray:
    """DELETEALL followed by box, edge, label, heading and velocity markers of every detection."""
    lifetime = Duration(sec=int(lifetime_s), nanosec=int(round((lifetime_s % 1.0) * 1e9)))
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    boxes = frame.boxes
    if len(frame) == 0:
        return MarkerArray(markers=markers)
    corners = box_corners(boxes.center, boxes.size, boxes.yaw)
    edges = corners[:, _EDGES].reshape(len(frame), 24, 3)
    heading = np.stack([np.cos(boxes.yaw), np.sin(boxes.yaw), np.zeros(len(frame))], axis=1)
    nose = boxes.center + heading * (boxes.size[:, :1] / 2.0 + 1.0)
    text_z = boxes.center[:, 2] + boxes.size[:, 2] / 2.0 + 0.6
    speed = np.linalg.norm(boxes.velocity, axis=1)
    centers, quats, sizes = boxes.center.tolist(), boxes.quaternion.tolist(), boxes.size.tolist()
    for k, name in enumerate(frame.names):
        rgb = class_colour(name, int(frame.labels[k]))
        (cx, cy, cz), (qx, qy, qz, qw) = centers[k], quats[k]
        cube = _marker(header, "boxes", k, Marker.CUBE, rgb, BOX_ALPHA, lifetime)
        cube.pose = Pose(position=Point(x=cx, y=cy, z=cz), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))
        cube.scale = Vector3(x=sizes[k][0], y=sizes[k][1], z=sizes[k][2])
        lines = _marker(header, "edges", k, Marker.LINE_LIST, rgb, 1.0, lifetime)
        lines.pose.orientation.w = 1.0
        lines.scale.x = 0.05
        lines.points = _points(edges[k])
        text = _marker(header, "labels", k, Marker.TEXT_VIEW_FACING, (1.0, 1.0, 1.0), 1.0, lifetime)
        text.pose = Pose(position=Point(x=cx, y=cy, z=float(text_z[k])))
        text.scale.z = 0.6
        text.text = label_text(name, float(frame.scores[k]), float(frame.lidar_weight[k]),
                               float(frame.camera_weight[k]))
        arrow = _marker(header, "heading", k, Marker.ARROW, rgb, 1.0, lifetime)
        arrow.pose.orientation.w = 1.0
        arrow.scale = Vector3(x=0.1, y=0.25, z=0.3)
        arrow.points = _points(np.stack([boxes.center[k], nose[k]]))
        markers += [cube, lines, text, arrow]
        if speed[k] >= MIN_ARROW_SPEED:
            vel = _marker(header, "velocity", k, Marker.ARROW, (0.2, 1.0, 0.2), 1.0, lifetime)
            vel.pose.orientation.w = 1.0
            vel.scale = Vector3(x=0.1, y=0.25, z=0.3)
            vel.points = _points(np.stack([boxes.center[k], boxes.center[k] + boxes.velocity[k]]))
            markers.append(vel)
    return MarkerArray(markers=markers)


def build_detection_array(frame: FrameDetections, header: Header) -> Detection3DArray:
    """Detection3DArray: class name in ``class_id``, geometric centre, yaw quaternion, size (l, w, h), id = query."""
    boxes = frame.boxes
    detections = []
    for k, (name, (cx, cy, cz), (qx, qy, qz, qw), (sx, sy, sz)) in enumerate(
            zip(frame.names, boxes.center.tolist(), boxes.quaternion.tolist(), boxes.size.tolist())):
        pose = Pose(position=Point(x=cx, y=cy, z=cz), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))
        hypothesis = ObjectHypothesisWithPose(hypothesis=ObjectHypothesis(class_id=name, score=float(frame.scores[k])),
                                              pose=PoseWithCovariance(pose=pose))
        detections.append(Detection3D(header=header, results=[hypothesis], id=str(int(frame.query_index[k])),
                                      bbox=BoundingBox3D(center=pose, size=Vector3(x=sx, y=sy, z=sz))))
    return Detection3DArray(header=header, detections=detections)


def build_label_info(class_names: tuple[str, ...], threshold: float, header: Header) -> LabelInfo:
    """LabelInfo mapping label index to class name, with the score threshold."""
    return LabelInfo(header=header, threshold=float(threshold),
                     class_map=[VisionClass(class_id=i, class_name=name) for i, name in enumerate(class_names)])
