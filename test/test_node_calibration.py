"""The real node with use_sim_time: cameras masked until tf arrives, a camera that never publishes, /clock time.

The harness publishes /clock at every frame stamp (simulated time near 1000 s, far from the wall clock), camera 3
never publishes anything, and the static transforms are sent only half way through.
"""

import pytest

from conftest import ros_domain
from node_harness import SEC, TINY_CONFIG, RigHarness, node_command, ns_of, rig_remaps, start_node, stop_node

pytestmark = pytest.mark.ros

DOMAIN_ID = ros_domain(__name__)
START_NS = 1000 * SEC
CAMERAS = (0, 1, 2, 4, 5)
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def setup():
    # Frames come in bursts here: a long stale timeout keeps input silence out of the levels checked below.
    params = {"model.config": str(TINY_CONFIG), "model.device": "cpu", "use_sim_time": "true", "diag.period": 0.2,
              "model.warmup_iters": 0, "diag.stale_timeout": 600.0}
    log = start_node(node_command("", params, rig_remaps()), DOMAIN_ID)
    harness = RigHarness(DOMAIN_ID, "")
    harness.publish_clock = True
    try:
        harness.wait_for(lambda: bool(harness.rec.label_info), TIMEOUT, "label_info (node start-up)", log)
        yield harness, log
    finally:
        harness.close()
        stop_node(log)


def test_missing_tf_masks_the_cameras_and_says_so(setup):
    """Cameras that deliver images without an extrinsic are masked like late ones: the LiDAR still detects."""
    harness, log = setup
    stamps = [START_NS + k * SEC // 2 for k in range(4)]
    for stamp in stamps:
        harness.publish_frame(stamp, cameras=CAMERAS)
    harness.wait_for(lambda: any(harness.detections_at(s) for s in stamps), TIMEOUT, "LiDAR-only output", log)
    status = harness.wait_status(lambda s: s.get("camera0 CAM_FRONT", "").startswith("masked: uncalibrated"), 10,
                                 "masked-camera diagnostics", log)
    assert status["level"] == "1"  # WARN
    assert "cam_front_optical" in status["camera0 CAM_FRONT"] and "cam_front_optical" in status["camera0 calibration"]
    assert status["camera3 CAM_BACK"] == "missing"
    assert "camera0 masked: it delivers images but has no calibration" in log.text()


def test_cameras_are_fused_when_tf_arrives_late(setup):
    harness, log = setup
    harness.publish_static_tf()
    stamp, det = harness.publish_until_output(START_NS + 3 * SEC, TIMEOUT, log, cameras=CAMERAS)
    assert ns_of(det.header.stamp) == stamp and det.header.frame_id == "lidar_top"
    status = harness.wait_status(lambda s: s["camera0 CAM_FRONT"] == "fused", 10, "camera0 fused after tf", log)
    assert status["camera0 calibration"] == "ok"


def test_never_publishing_camera_is_masked(setup):
    harness, log = setup
    status = harness.wait_status(lambda s: s["camera1 CAM_FRONT_RIGHT"] == "fused", 10, "diagnostics with tf", log)
    assert status["camera3 CAM_BACK"] == "missing"
    assert status["camera3 calibration"] == "no valid camera_info yet"
    assert status["camera1 CAM_FRONT_RIGHT"] == "fused"


def test_sim_time_drives_the_node_clock(setup):
    harness, _ = setup
    # Diagnostics are stamped with the node clock: with use_sim_time that is /clock (~1000 s), not the wall clock.
    stamps = [ns_of(d.header.stamp) for d in harness.rec.diagnostics[-5:]]
    assert all(START_NS <= s <= START_NS + 60 * SEC for s in stamps), stamps
