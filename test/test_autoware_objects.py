"""DetectedObjects for Autoware's trackers: labels, orientation availability, shape, pose, the twist in the object's
frame (also after the node moves the boxes into output_frame)."""

import dataclasses

import numpy as np
import pytest
from autoware_perception_msgs.msg import DetectedObjectKinematics, ObjectClassification, Shape
from builtin_interfaces.msg import Time
from std_msgs.msg import Header

from aqr_ros.pipeline.boxes import to_ros_boxes, transform_boxes
from aqr_ros.pipeline.frame import FrameDetections
from aqr_ros.pipeline.rotations import yaw_from_quaternion
from aqr_ros.ros.autoware_objects import build_detected_objects, object_frame_velocity

pytestmark = pytest.mark.ros

NAMES = ("car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle", "bicycle",
         "pedestrian", "traffic_cone")
HEADER = Header(stamp=Time(sec=7, nanosec=5), frame_id="base_link")


def frame_of(boxes_model, labels, scores, class_names=NAMES):
    boxes_model = np.asarray(boxes_model, dtype=np.float64).reshape(-1, 9)
    n = len(boxes_model)
    return FrameDetections(boxes=to_ros_boxes(boxes_model, "nuscenes_lidar_top"), boxes_model=boxes_model,
                           labels=np.asarray(labels, dtype=np.int64), class_names=class_names,
                           scores=np.asarray(scores, dtype=np.float64), query_index=np.arange(n),
                           lidar_weight=np.full(n, 0.5), camera_weight=np.full(n, 0.5))


def one_box(yaw, vx, vy):
    """A 4.5 x 1.9 x 1.6 car at (3, 10) heading ``yaw``, moving (vx, vy) in the frame."""
    return frame_of([3.0, 10.0, -1.0, 4.5, 1.9, 1.6, yaw, vx, vy], [0], [0.8])


def twist_of(obj):
    twist = obj.kinematics.twist_with_covariance.twist
    return twist.linear.x, twist.linear.y, twist.angular.z


def test_labels_and_orientation_availability_of_every_class():
    names = NAMES + ("forklift",)  # a class name the mapping does not know
    msg = build_detected_objects(frame_of(np.zeros((len(names), 9)), range(len(names)), [0.5] * len(names),
                                          class_names=names), HEADER)
    L, K = ObjectClassification, DetectedObjectKinematics
    assert [[c.label for c in o.classification] for o in msg.objects] == [
        [L.CAR], [L.TRUCK], [L.TRUCK], [L.BUS], [L.TRAILER], [L.UNKNOWN], [L.MOTORCYCLE], [L.BICYCLE],
        [L.PEDESTRIAN], [L.UNKNOWN], [L.UNKNOWN]]
    assert [o.kinematics.orientation_availability for o in msg.objects] == [
        K.AVAILABLE] * 5 + [K.SIGN_UNKNOWN] + [K.AVAILABLE] * 3 + [K.UNAVAILABLE, K.AVAILABLE]


def test_a_car_heading_along_y_and_driving_forward():
    # Heading +y (90°), moving +y at 5 m/s: all of it is longitudinal.
    msg = build_detected_objects(one_box(np.pi / 2, 0.0, 5.0), HEADER)
    assert msg.header.frame_id == "base_link" and msg.header.stamp.nanosec == 5
    (obj,) = msg.objects
    assert obj.existence_probability == pytest.approx(0.8)
    assert [(c.label, c.probability) for c in obj.classification] == [(ObjectClassification.CAR, 1.0)]
    assert obj.shape.type == Shape.BOUNDING_BOX
    assert (obj.shape.dimensions.x, obj.shape.dimensions.y, obj.shape.dimensions.z) == pytest.approx((4.5, 1.9, 1.6))
    kin = obj.kinematics
    p = kin.pose_with_covariance.pose.position
    assert (p.x, p.y, p.z) == pytest.approx((3.0, 10.0, -0.2))  # the geometric centre
    assert kin.has_twist and not kin.has_twist_covariance and not kin.has_position_covariance
    assert twist_of(obj) == pytest.approx((5.0, 0.0, 0.0), abs=1e-9)


@pytest.mark.parametrize("yaw", [0.0, 0.3, np.pi / 2, 3.1, -3.1, -np.pi / 4])
def test_yaw_quaternion_round_trip(yaw):
    (obj,) = build_detected_objects(one_box(yaw, 0.0, 0.0), HEADER).objects
    q = obj.kinematics.pose_with_covariance.pose.orientation
    assert (q.x, q.y) == (0.0, 0.0) and np.hypot(q.z, q.w) == pytest.approx(1.0)
    assert yaw_from_quaternion((q.x, q.y, q.z, q.w)) == pytest.approx(yaw)


def test_a_box_moving_sideways_and_backwards():
    (sideways,) = build_detected_objects(one_box(0.0, 0.0, 2.0), HEADER).objects  # heading +x, moving +y: left
    assert twist_of(sideways) == pytest.approx((0.0, 2.0, 0.0), abs=1e-9)
    yaw = np.array([np.pi / 2, np.pi])
    velocity = np.array([[3.0, 0.0, 0.0], [4.0, 0.0, 0.0]])
    np.testing.assert_allclose(object_frame_velocity(velocity, yaw), [[0.0, -3.0], [-4.0, 0.0]], atol=1e-12)


def test_the_twist_does_not_depend_on_the_output_frame():
    """The node rotates the boxes into ``output_frame`` (heading and velocity together): same object-frame twist."""
    frame = one_box(0.4, 1.5, -2.0)
    turn = 2.0
    T = np.eye(4)
    T[:2, :2] = [[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]]
    T[:3, 3] = [1.0, -2.0, 0.5]
    moved = dataclasses.replace(frame, boxes=transform_boxes(frame.boxes, T))
    (before,) = build_detected_objects(frame, HEADER).objects
    (after,) = build_detected_objects(moved, HEADER).objects
    assert twist_of(after) == pytest.approx(twist_of(before), abs=1e-9)
    p = after.kinematics.pose_with_covariance.pose.position
    np.testing.assert_allclose([p.x, p.y, p.z], T[:3, :3] @ frame.boxes.center[0] + T[:3, 3], atol=1e-12)


def test_empty_frame():
    msg = build_detected_objects(frame_of(np.zeros((0, 9)), [], []), HEADER)
    assert msg.objects == [] and msg.header.frame_id == "base_link"
