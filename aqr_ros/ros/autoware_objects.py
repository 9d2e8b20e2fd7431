"""``autoware_perception_msgs/DetectedObjects`` of one frame's detections, the input of Autoware's trackers.

Imported only when ``output.detected_objects`` is on, so the node runs without Autoware's messages otherwise.
Score, classification, shape and twist are filled as Autoware's lidar_centerpoint fills them for the same
trackers:

* ``existence_probability`` is the detection score; one classification with probability 1.0 (the score
  already says how sure the detection is, the class comes from the same query);
* the shape is a BOUNDING_BOX with ``dimensions`` = (length along the heading, width, height), the pose its
  geometric centre and yaw;
* ``orientation_availability`` (unlike centerpoint, which sends SIGN_UNKNOWN for vehicles and UNAVAILABLE
  otherwise) says what the nuScenes training taught about the heading: AVAILABLE, except for barriers,
  SIGN_UNKNOWN (their yaw is scored modulo 180°), and traffic cones, UNAVAILABLE (their yaw is not scored);
* the twist is the model's velocity in the object's own frame (Autoware's convention): ``linear.x`` along
  the heading, ``linear.y`` to its left; the yaw rate is not predicted (0). No covariances.
"""

from __future__ import annotations

import numpy as np
from autoware_perception_msgs.msg import (DetectedObject, DetectedObjectKinematics, DetectedObjects,
                                          ObjectClassification, Shape)
from geometry_msgs.msg import Point, Pose, PoseWithCovariance, Quaternion, Twist, TwistWithCovariance, Vector3
from std_msgs.msg import Header

from aqr_ros.pipeline.frame import FrameDetections

#: nuScenes class name → Autoware label; classes Autoware has no label for (barrier, traffic_cone) are UNKNOWN.
AUTOWARE_LABELS: dict[str, int] = {
    "car": ObjectClassification.CAR,
    "truck": ObjectClassification.TRUCK,
    "construction_vehicle": ObjectClassification.TRUCK,
    "bus": ObjectClassification.BUS,
    "trailer": ObjectClassification.TRAILER,
    "motorcycle": ObjectClassification.MOTORCYCLE,
    "bicycle": ObjectClassification.BICYCLE,
    "pedestrian": ObjectClassification.PEDESTRIAN,
}
#: Classes whose heading is not fully known (see the module docstring); all others are AVAILABLE.
ORIENTATION_AVAILABILITY: dict[str, int] = {
    "barrier": DetectedObjectKinematics.SIGN_UNKNOWN,
    "traffic_cone": DetectedObjectKinematics.UNAVAILABLE,
}


def object_frame_velocity(velocity: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """[K, 2] (along the heading, to its left) of [K, 3] velocities in the boxes' frame for headings ``yaw``."""
    cos, sin = np.cos(yaw), np.sin(yaw)
    return np.stack([cos * velocity[:, 0] + sin * velocity[:, 1], -sin * velocity[:, 0] + cos * velocity[:, 1]],
                    axis=1)


def build_detected_objects(frame: FrameDetections, header: Header) -> DetectedObjects:
    """DetectedObjects of ``frame`` (boxes already in ``header.frame_id``), in detection order."""
    boxes = frame.boxes
    twists = object_frame_velocity(boxes.velocity, boxes.yaw).tolist()
    objects = []
    for k, name in enumerate(frame.names):
        (cx, cy, cz), (qx, qy, qz, qw) = boxes.center[k].tolist(), boxes.quaternion[k].tolist()
        length, width, height = boxes.size[k].tolist()
        kinematics = DetectedObjectKinematics(
            pose_with_covariance=PoseWithCovariance(pose=Pose(position=Point(x=cx, y=cy, z=cz),
                                                              orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))),
            has_position_covariance=False,
            orientation_availability=ORIENTATION_AVAILABILITY.get(name, DetectedObjectKinematics.AVAILABLE),
            twist_with_covariance=TwistWithCovariance(twist=Twist(linear=Vector3(x=twists[k][0], y=twists[k][1]))),
            has_twist=True,
            has_twist_covariance=False,
        )
        objects.append(DetectedObject(
            existence_probability=float(frame.scores[k]),
            classification=[ObjectClassification(label=AUTOWARE_LABELS.get(name, ObjectClassification.UNKNOWN),
                                                  probability=1.0)],
            kinematics=kinematics,
            shape=Shape(type=Shape.BOUNDING_BOX, dimensions=Vector3(x=length, y=width, z=height)),
        ))
    return DetectedObjects(header=header, objects=objects)
