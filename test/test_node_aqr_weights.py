"""``~/debug/aqr_weights``: one point per decoder query with its reference point and AQR weights.

The real node (tiny config, random weights, CPU) over DDS: the cloud's layout, stamp and frame, and that a
detection's ``id`` is the row of its query (the markers' labels print the same weights). The reference-point
conversion is checked in-process against the box conversion it must follow.
"""

import re

import numpy as np
import pytest
from sensor_msgs.msg import PointCloud2, PointField

from aqr_ros.pipeline.boxes import to_ros_boxes, transform_boxes, transform_points
from aqr_ros.ros.node import query_points
from conftest import ros_domain
from node_harness import SEC, TINY_CONFIG, RigHarness, node_command, ns_of, rig_remaps, start_node, stop_node

pytestmark = pytest.mark.ros

DOMAIN_ID = ros_domain(__name__)
NUM_QUERIES = 100  # the tiny config's head.num_query
TINY_RANGE = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)
START_NS = 1_700_000_000 * SEC
TIMEOUT = 60.0
FIELD_TYPES = {PointField.FLOAT32: "<f4", PointField.UINT16: "<u2"}


@pytest.fixture(scope="module")
def setup():
    params = {"model.config": str(TINY_CONFIG), "model.device": "cpu", "score_threshold": 0.0,
              "max_detections": 20}
    log = start_node(node_command("", params, rig_remaps()), DOMAIN_ID)
    harness = RigHarness(DOMAIN_ID, "")
    clouds: list[PointCloud2] = []
    harness.node.create_subscription(PointCloud2, f"{harness.base}/debug/aqr_weights", clouds.append, 10)
    harness.publish_static_tf()
    harness.last_stamp = START_NS
    try:
        yield harness, log, clouds
    finally:
        harness.close()
        stop_node(log)


def _points(cloud: PointCloud2) -> np.ndarray:
    """The cloud's points as a structured array built from its own PointFields."""
    dtype = np.dtype({"names": [f.name for f in cloud.fields],
                      "formats": [FIELD_TYPES[f.datatype] for f in cloud.fields],
                      "offsets": [f.offset for f in cloud.fields], "itemsize": cloud.point_step})
    return np.frombuffer(bytes(cloud.data), dtype=dtype)


def test_weights_cloud_has_one_point_per_query_joined_by_detection_id(setup):
    harness, log, clouds = setup
    harness.wait_for(lambda: bool(harness.rec.label_info), TIMEOUT, "label_info (node start-up)", log)
    stamp, det = harness.publish_until_output(harness.next_stamp(), TIMEOUT, log)
    harness.wait_for(lambda: any(ns_of(c.header.stamp) == stamp for c in clouds), 10, "aqr_weights", log)
    cloud = next(c for c in clouds if ns_of(c.header.stamp) == stamp)
    assert cloud.header.frame_id == det.header.frame_id == "lidar_top"
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1),
        ("lidar_weight", 12, PointField.FLOAT32, 1), ("camera_weight", 16, PointField.FLOAT32, 1),
        ("query", 20, PointField.UINT16, 1)]
    assert (cloud.height, cloud.width, cloud.point_step) == (1, NUM_QUERIES, 24) and not cloud.is_bigendian
    rows = _points(cloud)
    assert np.array_equal(rows["query"], np.arange(NUM_QUERIES))
    for name in ("lidar_weight", "camera_weight"):
        assert ((rows[name] > 0.0) & (rows[name] < 1.0)).all(), name
    # Random reference points lie in 0..1 of the range; REP-103 swaps x and y of the model frame.
    assert (np.abs(rows["x"]) <= TINY_RANGE[3]).all() and (np.abs(rows["y"]) <= TINY_RANGE[4]).all()
    assert ((rows["z"] >= TINY_RANGE[2]) & (rows["z"] <= TINY_RANGE[5])).all()

    assert det.detections
    harness.wait_for(lambda: any(ns_of(m.markers[0].header.stamp) == stamp for m in harness.rec.markers), 10,
                     "markers", log)
    markers = next(m for m in harness.rec.markers if ns_of(m.markers[0].header.stamp) == stamp)
    labels = [m for m in markers.markers if m.ns == "labels"]  # in detection order, id = the decoder query
    assert len(labels) == len(det.detections) and all(d.id == "" for d in det.detections)
    for label in labels:
        row = rows[label.id]
        weights = re.search(r"L:(\S+) C:(\S+)", label.text).groups()
        assert weights == (f"{float(row['lidar_weight']):.2f}", f"{float(row['camera_weight']):.2f}")


def test_reference_points_follow_the_box_centres():
    rng = np.random.default_rng(3)
    ref = rng.uniform(-0.1, 1.1, (50, 3))  # trained points may leave 0..1
    for axes in ("rep103", "nuscenes_lidar_top"):
        points = query_points(ref, TINY_RANGE, axes)
        boxes = np.zeros((50, 9))
        boxes[:, :3] = ref * (np.array(TINY_RANGE[3:]) - TINY_RANGE[:3]) + TINY_RANGE[:3]
        ros = to_ros_boxes(boxes, axes)  # zero height: the centre is the model's point
        np.testing.assert_allclose(points, ros.center, atol=1e-12)
        T = np.eye(4)
        T[:3, :3] = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
        T[:3, 3] = [1.5, -2.0, 0.3]
        np.testing.assert_allclose(transform_points(points, T), transform_boxes(ros, T).center, atol=1e-12)
        assert transform_points(points, None) is points
