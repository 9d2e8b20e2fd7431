"""The node with ``input.compressed_images`` (JPEG/PNG CompressedImage inputs) and runtime parameter changes."""

import time

import cv2
import pytest
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import CompressedImage

from conftest import ros_domain
from node_harness import SEC, TINY_CONFIG, RigHarness, node_command, ns_of, start_node, stamp_msg, stop_node

from aqr_ros.tools.synthetic_rig import CAMERA_NAMES

pytestmark = pytest.mark.ros

DOMAIN_ID = ros_domain(__name__)
START_NS = 1_600_000_000 * SEC
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def setup():
    remaps = {"~/input/pointcloud": "/rig/lidar/points"}
    for i, name in enumerate(CAMERA_NAMES):
        remaps[f"~/input/camera{i}/image/compressed"] = f"/rig/{name}/image/compressed"
        remaps[f"~/input/camera{i}/camera_info"] = f"/rig/{name}/camera_info"
    params = {"model.config": str(TINY_CONFIG), "model.device": "cpu", "input.compressed_images": "true",
              "score_threshold": 0.0, "max_detections": 30, "diag.period": 0.2, "model.warmup_iters": 0}
    log = start_node(node_command("", params, remaps), DOMAIN_ID)
    harness = RigHarness(DOMAIN_ID, "")
    pubs = [harness.node.create_publisher(CompressedImage, f"/rig/{name}/image/compressed", 10)
            for name in CAMERA_NAMES]
    harness.publish_static_tf()
    try:
        harness.wait_for(lambda: bool(harness.rec.label_info), TIMEOUT, "label_info (node start-up)", log)
        yield harness, log, pubs
    finally:
        harness.close()
        stop_node(log)


def publish_compressed_frame(harness, pubs, stamp_ns, bad_camera=None):
    harness.publish_odom(stamp_ns)
    for i, pub in enumerate(pubs):
        harness.info_pubs[i].publish(harness.camera_info(i, stamp_ns))
        fmt = "jpg" if i % 2 == 0 else "png"
        ok, data = cv2.imencode(f".{fmt}", harness.images[i])
        assert ok
        msg = CompressedImage(format="jpeg" if fmt == "jpg" else "png", data=data.tobytes())
        if i == bad_camera:
            msg.data = b"\x89PNG garbage"
        msg.header.frame_id = harness.rig.camera_frame_ids[i]
        msg.header.stamp = stamp_msg(stamp_ns)
        pub.publish(msg)
    time.sleep(0.02)
    harness.cloud_pub.publish(harness.cloud(stamp_ns))


def wait_output(harness, log, pubs, first_ns, **kw):
    stamp = first_ns
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        publish_compressed_frame(harness, pubs, stamp, **kw)
        try:
            harness.wait_for(lambda: bool(harness.detections_at(stamp)), 2.0, "detections", log)
            return stamp, harness.detections_at(stamp)[0]
        except AssertionError:
            stamp += SEC // 2
    raise AssertionError(f"no detections for compressed frames\n{log.text()}")


def test_compressed_images_are_decoded_and_fused(setup):
    harness, log, pubs = setup
    def all_fused(status):
        return all(status.get(f"camera{i} {name.upper()}") == "fused" for i, name in enumerate(CAMERA_NAMES))

    stamp, det = wait_output(harness, log, pubs, START_NS)
    assert len(det.detections) == 30 and ns_of(det.header.stamp) == stamp
    # A frame that beat the static tf ran on the LiDAR alone (cameras masked): the next ones fuse all six.
    for _ in range(5):
        try:
            harness.wait_status(all_fused, 5, "all six compressed cameras fused", log)
            break
        except AssertionError:
            stamp, det = wait_output(harness, log, pubs, stamp + SEC // 2)
    assert all_fused(harness.last_status()), harness.last_status()


def test_undecodable_compressed_image_is_rejected(setup):
    harness, log, pubs = setup
    stamp, _ = wait_output(harness, log, pubs, START_NS + 10 * SEC, bad_camera=2)
    status = harness.wait_status(lambda s: "rejected /rig/cam_front_left/image/compressed" in s, 10, "rejection", log)
    assert "cannot decode" in status["rejected /rig/cam_front_left/image/compressed"]


def _set(harness, name, value):
    client = harness.node.create_client(SetParameters, "/aqr_node/set_parameters")
    assert client.wait_for_service(timeout_sec=10)
    if isinstance(value, float):
        pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    else:
        pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    future = client.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=pv)]))
    deadline = time.monotonic() + 10
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    harness.node.destroy_client(client)
    return future.result().results[0]


def test_dynamic_score_threshold_and_read_only_parameters(setup):
    harness, log, pubs = setup
    result = _set(harness, "score_threshold", 0.999)
    assert result.successful, result.reason
    harness.wait_for(lambda: abs(harness.rec.label_info[-1].threshold - 0.999) < 1e-6, 10, "new label_info", log)
    stamp, det = wait_output(harness, log, pubs, START_NS + 20 * SEC)
    assert all(d.results[0].hypothesis.score >= 0.999 for d in det.detections)
    assert len(det.detections) < 30
    assert _set(harness, "score_threshold", 0.0).successful  # back to the fixture's value for later tests
    refused = _set(harness, "model.device", "cuda")
    assert not refused.successful and "model.device" in refused.reason
