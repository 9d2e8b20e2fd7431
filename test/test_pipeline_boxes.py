"""Box conversion into the ROS LiDAR frame and detection selection."""

import numpy as np
import pytest

from aqr_ros.pipeline.boxes import select_detections, to_ros_boxes, transform_boxes
from aqr_ros.pipeline.calibration import axes_to_model
from aqr_ros.pipeline.rotations import matrix_from_quaternion

# docs/golden.md §D: decoded example box (model frame).
GOLDEN_BOX = np.array([10.0, -5.0, -1.5459123, 1.6487213, 3.3201169, 1.4918247, 0.6435011, 1.0, -0.5])


def test_identity_convention_keeps_axes_and_raises_centre():
    ros = to_ros_boxes(GOLDEN_BOX[None], "nuscenes_lidar_top")
    assert len(ros) == 1
    np.testing.assert_allclose(ros.center[0], [10.0, -5.0, -1.5459123 + 1.4918247 / 2])
    np.testing.assert_allclose(ros.size[0], [1.6487213, 3.3201169, 1.4918247])
    np.testing.assert_allclose(ros.yaw, [0.6435011])
    np.testing.assert_allclose(ros.velocity[0], [1.0, -0.5, 0.0])
    np.testing.assert_allclose(ros.quaternion[0], [0, 0, np.sin(0.6435011 / 2), np.cos(0.6435011 / 2)])


def test_rep103_box_in_front_of_the_car():
    # Model frame: x right, y forward. A box 30 m ahead, 2 m to the right, driving forward at 5 m/s.
    box = np.array([[2.0, 30.0, -1.0, 4.5, 1.9, 1.6, np.pi / 2, 0.0, 5.0]])
    ros = to_ros_boxes(box, "rep103")
    np.testing.assert_allclose(ros.center[0], [30.0, -2.0, -0.2], atol=1e-12)  # ROS: x forward, y left
    np.testing.assert_allclose(ros.yaw, [0.0], atol=1e-12)
    np.testing.assert_allclose(ros.velocity[0], [5.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(ros.size[0], [4.5, 1.9, 1.6])


@pytest.mark.parametrize("convention", ["rep103", "nuscenes_lidar_top"])
def test_heading_vector_agrees_both_ways(convention):
    rng = np.random.default_rng(0)
    boxes = np.c_[rng.uniform(-50, 50, (20, 3)), rng.uniform(0.5, 5, (20, 3)),
                  rng.uniform(-np.pi, np.pi, 20), rng.uniform(-10, 10, (20, 2))]
    ros = to_ros_boxes(boxes, convention)
    R_input_model = axes_to_model(convention)[:3, :3].T
    for box, q, yaw, centre, vel in zip(boxes, ros.quaternion, ros.yaw, ros.center, ros.velocity):
        heading_model = np.array([np.cos(box[6]), np.sin(box[6]), 0.0])
        expected = R_input_model @ heading_model
        np.testing.assert_allclose(matrix_from_quaternion(q)[:, 0], expected, atol=1e-12)
        np.testing.assert_allclose([np.cos(yaw), np.sin(yaw), 0.0], expected, atol=1e-12)
        np.testing.assert_allclose(centre, R_input_model @ (box[:3] + [0, 0, box[5] / 2]), atol=1e-9)
        np.testing.assert_allclose(vel, R_input_model @ [box[7], box[8], 0.0], atol=1e-12)
    assert np.all((ros.yaw >= -np.pi) & (ros.yaw < np.pi))
    np.testing.assert_allclose(np.linalg.norm(ros.quaternion, axis=1), 1.0)


def test_empty_input():
    ros = to_ros_boxes(np.zeros((0, 9)), "rep103")
    assert ros.center.shape == (0, 3) and ros.quaternion.shape == (0, 4) and len(ros) == 0


def test_select_detections_threshold_order_and_count():
    scores = np.array([0.2, 0.9, 0.5, 0.95, 0.4, 0.5])
    np.testing.assert_array_equal(select_detections(scores, 0.4, None), [3, 1, 2, 5, 4])
    np.testing.assert_array_equal(select_detections(scores, 0.4, 2), [3, 1])
    assert select_detections(scores, 0.99, 10).size == 0
    assert select_detections(scores, 0.0, 0).size == 0


def test_select_detections_never_passes_nan():
    np.testing.assert_array_equal(select_detections(np.array([0.35, np.nan, 0.8]), 0.0, 10), [2, 0])


def test_select_detections_rejects_a_negative_count():
    with pytest.raises(ValueError):
        select_detections(np.ones(3), 0.5, -1)


def test_transform_boxes_into_another_frame():
    boxes = to_ros_boxes(np.stack([GOLDEN_BOX, GOLDEN_BOX * [1, -1, 1, 1, 1, 1, -1, 1, 1]]), "rep103")
    angle = 0.3
    T = np.eye(4)
    T[:3, :3] = [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    T[:3, 3] = [0.94, -0.2, 1.84]  # e.g. base_link <- lidar_top
    out = transform_boxes(boxes, T)
    np.testing.assert_allclose(out.center, boxes.center @ T[:3, :3].T + T[:3, 3])
    np.testing.assert_allclose(out.velocity, boxes.velocity @ T[:3, :3].T)
    np.testing.assert_allclose(out.size, boxes.size)
    np.testing.assert_allclose(out.yaw, np.mod(boxes.yaw + angle + np.pi, 2 * np.pi) - np.pi)
    for k in range(len(boxes)):
        heading = T[:3, :3] @ matrix_from_quaternion(boxes.quaternion[k])[:, 0]
        np.testing.assert_allclose(matrix_from_quaternion(out.quaternion[k])[:, 0], heading, atol=1e-12)
        assert abs(np.linalg.norm(out.quaternion[k]) - 1) < 1e-12


def test_transform_boxes_with_a_tilted_frame_keeps_the_full_orientation():
    boxes = to_ros_boxes(GOLDEN_BOX[None], "nuscenes_lidar_top")
    tilt = 0.1  # a pitched mount: the box's up axis is rotated too
    T = np.eye(4)
    T[:3, :3] = [[np.cos(tilt), 0, np.sin(tilt)], [0, 1, 0], [-np.sin(tilt), 0, np.cos(tilt)]]
    out = transform_boxes(boxes, T)
    up = matrix_from_quaternion(out.quaternion[0])[:, 2]
    np.testing.assert_allclose(up, T[:3, :3] @ [0.0, 0.0, 1.0], atol=1e-12)
