"""MarkerArray building: DELETEALL first, per-kind namespaces, ids, colours, labels, geometry, header."""

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from aqr_ros.pipeline.boxes import to_ros_boxes
from aqr_ros.pipeline.frame import FrameDetections
from aqr_ros.pipeline.weight_maps import CLASS_RGB
from aqr_ros.ros.markers import box_corners, build_markers, label_text

def rgb01(name):
    return tuple(c / 255.0 for c in CLASS_RGB[name])


NAMES = ("car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle", "bicycle",
         "pedestrian", "traffic_cone")


def frame_of(boxes_model, labels, scores):
    boxes_model = np.asarray(boxes_model, dtype=np.float64)
    n = len(boxes_model)
    return FrameDetections(
        boxes=to_ros_boxes(boxes_model, "rep103"), boxes_model=boxes_model, labels=np.asarray(labels),
        class_names=NAMES, scores=np.asarray(scores, dtype=np.float64), query_index=np.arange(n) * 10,
        lidar_weight=np.full(n, 0.714), camera_weight=np.full(n, 0.553),
    )


HEADER = Header(stamp=Time(sec=12, nanosec=345), frame_id="lidar_top")


def test_empty_frame_is_just_deleteall():
    arr = build_markers(frame_of(np.zeros((0, 9)), [], []), HEADER)
    assert len(arr.markers) == 1
    assert arr.markers[0].action == Marker.DELETEALL and arr.markers[0].header.frame_id == "lidar_top"


def test_markers_per_detection_with_fixed_colours_and_labels():
    frame = frame_of([
        [0.0, 10.0, -1.0, 4.0, 2.0, 1.5, np.pi / 2, 0.0, 3.0],  # car 10 m ahead moving forward 3 m/s
        [2.0, 0.0, 0.0, 0.8, 0.6, 1.7, 0.0, 0.0, 0.0],  # standing pedestrian
    ], labels=[0, 8], scores=[0.834, 0.51])
    arr = build_markers(frame, HEADER, lifetime_s=0.25)
    first, rest = arr.markers[0], arr.markers[1:]
    assert first.action == Marker.DELETEALL
    by_ns = {}
    for m in rest:
        assert m.header.stamp.sec == 12 and m.header.stamp.nanosec == 345 and m.header.frame_id == "lidar_top"
        assert m.action == Marker.ADD and m.lifetime.nanosec == 250_000_000
        by_ns.setdefault(m.ns, []).append(m)
    assert sorted(by_ns) == ["boxes", "edges", "heading", "labels", "velocity"]
    assert [m.id for m in by_ns["boxes"]] == [0, 10]  # the decoder query indices
    assert [m.id for m in by_ns["labels"]] == [0, 10]
    assert [m.id for m in by_ns["velocity"]] == [0]  # the pedestrian does not move
    car = by_ns["boxes"][0]
    assert car.type == Marker.CUBE
    assert (car.color.r, car.color.g, car.color.b) == pytest.approx(rgb01("car"))
    assert car.color.a == pytest.approx(0.4)
    assert (car.pose.position.x, car.pose.position.y, car.pose.position.z) == pytest.approx((10.0, 0.0, -0.25))
    assert (car.scale.x, car.scale.y, car.scale.z) == pytest.approx((4.0, 2.0, 1.5))
    ped = by_ns["boxes"][1]
    assert (ped.color.r, ped.color.g, ped.color.b) == pytest.approx(rgb01("pedestrian"))
    assert by_ns["labels"][0].type == Marker.TEXT_VIEW_FACING
    assert by_ns["labels"][0].text == "car 0.83 L:0.71 C:0.55"
    assert by_ns["labels"][0].pose.position.z > car.pose.position.z + 0.75
    (edges,) = by_ns["edges"]
    assert edges.type == Marker.LINE_LIST and edges.id == 0 and len(edges.points) == 48
    xs = [p.x for p in edges.points[:24]]  # the car's 12 edges come first
    assert min(xs) == pytest.approx(8.0) and max(xs) == pytest.approx(12.0)
    car_edge, ped_edge = edges.colors[0], edges.colors[24]
    assert (car_edge.r, car_edge.g, car_edge.b) == pytest.approx(rgb01("car"))
    assert (ped_edge.r, ped_edge.g, ped_edge.b) == pytest.approx(rgb01("pedestrian"))
    (heading,) = by_ns["heading"]
    assert heading.type == Marker.LINE_LIST and len(heading.points) == 4  # one line per box
    assert heading.points[1].x > heading.points[0].x and heading.points[1].y == pytest.approx(0.0, abs=1e-9)
    assert heading.points[1].x == pytest.approx(10.0 + 2.0 + 1.0)  # through the front face, 1 m beyond
    assert (heading.colors[2].r, heading.colors[2].g, heading.colors[2].b) == pytest.approx(rgb01("pedestrian"))
    vel = by_ns["velocity"][0]
    assert vel.points[1].x - vel.points[0].x == pytest.approx(3.0)


def test_box_corners_rotate_with_yaw():
    corners = box_corners(np.zeros((1, 3)), np.array([[4.0, 2.0, 1.0]]), np.array([np.pi / 2]))
    np.testing.assert_allclose(corners[0, :, 0].min(), -1.0, atol=1e-12)
    np.testing.assert_allclose(corners[0, :, 1].max(), 2.0, atol=1e-12)
    np.testing.assert_allclose(corners[0, :, 2].max(), 0.5, atol=1e-12)


def test_label_text_format():
    assert label_text("bus", 0.9, 0.123, 1.0) == "bus 0.90 L:0.12 C:1.00"


def test_detection_array_fields():
    from aqr_ros.ros.markers import build_detection_array, build_label_info

    frame = frame_of([[0.0, 10.0, -1.0, 4.0, 2.0, 1.5, np.pi / 2, 0.0, 3.0]], labels=[3], scores=[0.75])
    arr = build_detection_array(frame, HEADER)
    assert arr.header.frame_id == "lidar_top" and arr.header.stamp.sec == 12
    (det,) = arr.detections
    assert det.header.stamp.nanosec == 345
    assert det.id == ""  # not a track id: this node does not track (the query index is the markers' id)
    assert det.results[0].hypothesis.class_id == "bus" and det.results[0].hypothesis.score == pytest.approx(0.75)
    c = det.bbox.center
    assert (c.position.x, c.position.y, c.position.z) == pytest.approx((10.0, 0.0, -0.25))
    assert (c.orientation.z, c.orientation.w) == pytest.approx((0.0, 1.0), abs=1e-9)
    assert (det.bbox.size.x, det.bbox.size.y, det.bbox.size.z) == pytest.approx((4.0, 2.0, 1.5))
    assert det.results[0].pose.pose.position.x == pytest.approx(10.0)
    info = build_label_info(NAMES, 0.3, HEADER)
    assert [(c.class_id, c.class_name) for c in info.class_map][:2] == [(0, "car"), (1, "truck")]
    assert info.threshold == pytest.approx(0.3)
