"""DetectedObjects for Autoware's trackers: labels, shape, pose, the twist in the object's frame."""

import numpy as np
import pytest
from autoware_perception_msgs.msg import DetectedObjectKinematics, ObjectClassification, Shape
from builtin_interfaces.msg import Time
from std_msgs.msg import Header

from aqr_ros.pipeline.boxes import to_ros_boxes
from aqr_ros.pipeline.frame import FrameDetections
from aqr_ros.pipeline.rotations import yaw_from_quaternion
from aqr_ros.ros.autoware_objects import AUTOWARE_LABELS, build_detected_objects, object_frame_velocity

pytestmark = pytest.mark.ros

NAMES = ("car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle", "bicycle",
         "pedestrian", "traffic_cone")
HEADER = Header(stamp=Time(sec=7, nanosec=5), frame_id="base_link")


def frame_of(boxes_model, labels, scores):
    boxes_model = np.asarray(boxes_model, dtype=np.float64).reshape(-1, 9)
    n = len(boxes_model)
    return FrameDetections(boxes=to_ros_boxes(boxes_model, "nuscenes_lidar_top"), boxes_model=boxes_model,
                           labels=np.asarray(labels, dtype=np.int64), class_names=NAMES,
                           scores=np.asarray(scores, dtype=np.float64), query_index=np.arange(n),
                           lidar_weight=np.full(n, 0.5), camera_weight=np.full(n, 0.5))


def test_every_class_has_an_autoware_label():
    labels = [AUTOWARE_LABELS.get(name, ObjectClassification.UNKNOWN) for name in NAMES]
    assert labels == [ObjectClassification.CAR, ObjectClassification.TRUCK, ObjectClassification.TRUCK,
                      ObjectClassification.BUS, ObjectClassification.TRAILER, ObjectClassification.UNKNOWN,
                      ObjectClassification.MOTORCYCLE, ObjectClassification.BICYCLE, ObjectClassification.PEDESTRIAN,
                      ObjectClassification.UNKNOWN]


def test_a_car_heading_along_y_and_driving_forward():
    # x, y, z_bottom, l, w, h, yaw, vx, vy in the frame: heading +y (90°), moving +y at 5 m/s.
    msg = build_detected_objects(frame_of([3.0, 10.0, -1.0, 4.5, 1.9, 1.6, np.pi / 2, 0.0, 5.0], [0], [0.8]),
                                 HEADER)
    assert msg.header.frame_id == "base_link" and msg.header.stamp.nanosec == 5
    (obj,) = msg.objects
    assert obj.existence_probability == pytest.approx(0.8)
    assert [(c.label, c.probability) for c in obj.classification] == [(ObjectClassification.CAR, 1.0)]
    assert obj.shape.type == Shape.BOUNDING_BOX
    assert (obj.shape.dimensions.x, obj.shape.dimensions.y, obj.shape.dimensions.z) == pytest.approx((4.5, 1.9, 1.6))
    kin = obj.kinematics
    p, q = kin.pose_with_covariance.pose.position, kin.pose_with_covariance.pose.orientation
    assert (p.x, p.y, p.z) == pytest.approx((3.0, 10.0, -0.2))  # the geometric centre
    assert yaw_from_quaternion((q.x, q.y, q.z, q.w)) == pytest.approx(np.pi / 2)
    assert kin.orientation_availability == DetectedObjectKinematics.AVAILABLE
    assert kin.has_twist and not kin.has_twist_covariance and not kin.has_position_covariance
    twist = kin.twist_with_covariance.twist
    assert (twist.linear.x, twist.linear.y, twist.angular.z) == pytest.approx((5.0, 0.0, 0.0), abs=1e-9)


def test_sideways_and_backwards_motion_in_the_object_frame():
    yaw = np.array([0.0, np.pi / 2, np.pi])
    velocity = np.array([[0.0, 2.0, 0.0], [3.0, 0.0, 0.0], [4.0, 0.0, 0.0]])
    np.testing.assert_allclose(object_frame_velocity(velocity, yaw),
                               [[0.0, 2.0], [0.0, -3.0], [-4.0, 0.0]], atol=1e-12)


def test_empty_frame():
    assert build_detected_objects(frame_of(np.zeros((0, 9)), [], []), HEADER).objects == []
