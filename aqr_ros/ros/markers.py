"""Output messages of one frame's detections: the Detection3DArray, the LabelInfo and a MarkerArray for rviz2.

The marker array starts with a DELETEALL so the previous frame's boxes vanish, then one LINE_LIST with the
12 edges of every box (``edges``, id 0), one LINE_LIST with a heading line from every box's centre through
its front face (``heading``, id 0), and per detection, with the decoder query index as id: a translucent CUBE
(``boxes``), a TEXT_VIEW_FACING label "car 0.83 L:0.71 C:0.55" with the query's LiDAR and camera weights
(``labels``) and, for moving objects, a velocity ARROW (``velocity``). Colours are fixed per class. Lines
shared in one marker keep a 100-box frame to about half the markers (and the build and serialize time).

``Detection3D.id`` is left empty: vision_msgs means it to identify the same object across messages, and
this node does not track; the query index (per frame) is the id of the markers above and the row of
``~/debug/aqr_weights``.
"""

from __future__ import annotations

import copy

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Pose, PoseWithCovariance, Quaternion, Vector3
from std_msgs.msg import ColorRGBA, Header
from vision_msgs.msg import (BoundingBox3D, Detection3D, Detection3DArray, LabelInfo, ObjectHypothesis,
                             ObjectHypothesisWithPose, VisionClass)
from visualization_msgs.msg import Marker, MarkerArray

from aqr_ros.pipeline.frame import FrameDetections
from aqr_ros.pipeline.weight_maps import class_rgb

BOX_ALPHA = 0.4
#: Speeds below this (m/s) get no velocity arrow.
MIN_ARROW_SPEED = 0.2

#: Corner signs (length, width, height) of a box and the 12 edges between them.
_CORNER_SIGNS = np.array([(sx, sy, sz) for sx in (1, -1) for sy in (1, -1) for sz in (1, -1)], dtype=np.float64)
_EDGES = np.array([(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7)])


def class_colour(name: str, label: int) -> tuple[float, float, float]:
    """Fixed RGB (0..1) colour of a class (the pipeline's class table)."""
    r, g, b = class_rgb(name, label)
    return (r / 255.0, g / 255.0, b / 255.0)


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


def _points(xyz: np.ndarray) -> list[Point]:
    return [Point(x=x, y=y, z=z) for x, y, z in xyz.tolist()]


def _colour(rgb: tuple[float, float, float], alpha: float) -> ColorRGBA:
    return ColorRGBA(r=rgb[0], g=rgb[1], b=rgb[2], a=alpha)


def build_markers(frame: FrameDetections, header: Header, lifetime_s: float = 0.0) -> MarkerArray:
    """DELETEALL, the edges and heading lines of all boxes, then per detection a box, a label and a velocity arrow.

    Markers are shallow copies of one template and share their unchanging parts (header, colours, the
    identity pose); nothing is mutated after building.
    """
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    n = len(frame)
    if n == 0:
        return MarkerArray(markers=markers)
    boxes = frame.boxes
    template = Marker(header=header, action=Marker.ADD, frame_locked=False,
                      lifetime=Duration(sec=int(lifetime_s), nanosec=int(round((lifetime_s % 1.0) * 1e9))))
    identity = Pose(orientation=Quaternion(w=1.0))
    white, green = _colour((1.0, 1.0, 1.0), 1.0), _colour((0.2, 1.0, 0.2), 1.0)
    arrow_scale, text_scale = Vector3(x=0.1, y=0.25, z=0.3), Vector3(z=0.6)
    rgbs = [class_colour(name, int(label)) for name, label in zip(frame.names, frame.labels)]
    solid = {rgb: _colour(rgb, 1.0) for rgb in set(rgbs)}
    translucent = {rgb: _colour(rgb, BOX_ALPHA) for rgb in set(rgbs)}

    def marker(ns: str, marker_id: int, kind: int, colour: ColorRGBA, pose: Pose, scale: Vector3) -> Marker:
        m = copy.copy(template)
        m.ns, m.id, m.type, m.color, m.pose, m.scale = ns, marker_id, kind, colour, pose, scale
        return m

    # Point messages are the cost here: each corner and centre is built once and referenced by every line using it.
    corners = _points(box_corners(boxes.center, boxes.size, boxes.yaw).reshape(-1, 3))
    centres = _points(boxes.center)
    edges = marker("edges", 0, Marker.LINE_LIST, solid[rgbs[0]], identity, Vector3(x=0.05))
    edges.points = [corners[i] for i in (8 * np.arange(n)[:, None, None] + _EDGES).reshape(-1).tolist()]
    edges.colors = [solid[rgb] for rgb in rgbs for _ in range(24)]
    forward = np.stack([np.cos(boxes.yaw), np.sin(boxes.yaw), np.zeros(n)], axis=1)
    noses = _points(boxes.center + forward * (boxes.size[:, :1] / 2.0 + 1.0))
    heading = marker("heading", 0, Marker.LINE_LIST, solid[rgbs[0]], identity, Vector3(x=0.1))
    heading.points = [p for pair in zip(centres, noses) for p in pair]
    heading.colors = [solid[rgb] for rgb in rgbs for _ in range(2)]
    markers += [edges, heading]
    moving = np.linalg.norm(boxes.velocity, axis=1) >= MIN_ARROW_SPEED
    ends = _points(boxes.center + boxes.velocity)
    texts = _points(boxes.center + np.outer(boxes.size[:, 2] / 2.0 + 0.6, [0.0, 0.0, 1.0]))
    quats = [Quaternion(x=qx, y=qy, z=qz, w=qw) for qx, qy, qz, qw in boxes.quaternion.tolist()]
    sizes = [Vector3(x=sx, y=sy, z=sz) for sx, sy, sz in boxes.size.tolist()]
    for k, (name, query) in enumerate(zip(frame.names, frame.query_index.tolist())):
        markers.append(marker("boxes", query, Marker.CUBE, translucent[rgbs[k]],
                              Pose(position=centres[k], orientation=quats[k]), sizes[k]))
        text = marker("labels", query, Marker.TEXT_VIEW_FACING, white, Pose(position=texts[k]), text_scale)
        text.text = label_text(name, float(frame.scores[k]), float(frame.lidar_weight[k]),
                               float(frame.camera_weight[k]))
        markers.append(text)
        if moving[k]:
            velocity = marker("velocity", query, Marker.ARROW, green, identity, arrow_scale)
            velocity.points = [centres[k], ends[k]]
            markers.append(velocity)
    return MarkerArray(markers=markers)


def build_detection_array(frame: FrameDetections, header: Header) -> Detection3DArray:
    """Detection3DArray: class name in ``class_id``, geometric centre, yaw quaternion, size (l, w, h); ``id`` empty
    (no tracking: see the module docstring)."""
    boxes = frame.boxes
    detections = []
    for k, (name, (cx, cy, cz), (qx, qy, qz, qw), (sx, sy, sz)) in enumerate(
            zip(frame.names, boxes.center.tolist(), boxes.quaternion.tolist(), boxes.size.tolist())):
        pose = Pose(position=Point(x=cx, y=cy, z=cz), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))
        hypothesis = ObjectHypothesisWithPose(hypothesis=ObjectHypothesis(class_id=name, score=float(frame.scores[k])),
                                              pose=PoseWithCovariance(pose=pose))
        detections.append(Detection3D(header=header, results=[hypothesis],
                                      bbox=BoundingBox3D(center=pose, size=Vector3(x=sx, y=sy, z=sz))))
    return Detection3DArray(header=header, detections=detections)


def build_label_info(class_names: tuple[str, ...], threshold: float, header: Header) -> LabelInfo:
    """LabelInfo mapping label index to class name, with the score threshold."""
    return LabelInfo(header=header, threshold=float(threshold),
                     class_map=[VisionClass(class_id=i, class_name=name) for i, name in enumerate(class_names)])
