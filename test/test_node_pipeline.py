"""The real node process (tiny config, random weights, CPU) over DDS: outputs, masking, bad inputs, recovery.

One node start serves the whole module: it runs in namespace /perception with its inputs remapped onto the
harness topics under /rig. The fixture waits for the node to be up, and every test publishes the frames it
checks (with ever newer stamps), so each test also runs alone. A cloud waits for its six images up to
``sync.wait_timeout`` of 1 s (not 50 ms): on a loaded machine an image published before the cloud may still reach
the node after it, and would then be reported late.
"""

import math

import numpy as np
import pytest
from visualization_msgs.msg import Marker

from conftest import ros_domain
from node_harness import (SEC, TINY_CONFIG, RigHarness, node_command, ns_of, rig_remaps, start_node, stamp_msg,
                          stop_node)

pytestmark = pytest.mark.ros

DOMAIN_ID = ros_domain(__name__)
MAX_DETECTIONS = 7
SCORE_THRESHOLD = 0.05
MAX_POINTS = 30000
START_NS = 1_700_000_000 * SEC
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def setup():
    params = {"model.config": str(TINY_CONFIG), "model.device": "cpu", "max_detections": MAX_DETECTIONS,
              "score_threshold": SCORE_THRESHOLD, "input.max_points": MAX_POINTS, "diag.period": 0.2,
              "tf.fixed_frame": "odom", "sync.wait_timeout": 1.0}
    log = start_node(node_command("/perception", params, rig_remaps()), DOMAIN_ID)
    harness = RigHarness(DOMAIN_ID, "/perception")
    for rel in ("debug/weight_map/bev", "debug/weight_map/camera0", "debug/weight_map/camera5"):
        harness.subscribe_image(rel)
    harness.publish_static_tf()
    harness.last_stamp = START_NS
    try:
        harness.wait_for(lambda: bool(harness.rec.label_info), TIMEOUT, "label_info (node start-up)", log)
        # A frame that beat the static tf runs with the cameras masked: the tests start once all six are calibrated.
        for _ in range(5):
            status = status_after_output((harness, log))
            if all(status.get(f"camera{i} calibration") == "ok" for i in range(6)):
                break
        yield harness, log
    finally:
        harness.close()
        stop_node(log)


def recover(setup):
    """Good frames after a bad input are processed again: returns the answered stamp."""
    harness, log = setup
    stamp, _ = harness.publish_until_output(harness.next_stamp(), TIMEOUT, log)
    return stamp


def first_status(setup) -> dict[str, str]:
    """The newest diagnostics status, waiting for the first one."""
    harness, log = setup
    return harness.wait_status(lambda s: True, 10, "diagnostics", log)


def status_after_output(setup) -> dict[str, str]:
    """Publish frames until one is answered; the diagnostics status that counts it (every processed frame is
    published, so that status counts every detection array received)."""
    harness, log = setup
    recover(setup)
    published = len(harness.rec.detections)
    return harness.wait_status(lambda s: int(s.get("frames published", "0")) >= published, 10,
                               f"diagnostics counting {published} frames", log)


def test_outputs_topics_types_stamps_and_limits(setup):
    harness, log = setup
    stamp, det = harness.publish_until_output(harness.next_stamp(), TIMEOUT, log)
    assert det.header.frame_id == "lidar_top" and ns_of(det.header.stamp) == stamp
    names = [c.class_name for c in harness.rec.label_info[0].class_map]
    assert names[:2] == ["car", "truck"] and len(names) == 10
    assert len(det.detections) <= MAX_DETECTIONS
    for d in det.detections:
        assert ns_of(d.header.stamp) == stamp and d.header.frame_id == "lidar_top"
        hyp = d.results[0].hypothesis
        assert hyp.class_id in names and SCORE_THRESHOLD <= hyp.score <= 1.0
        assert d.id == ""  # no tracking identity (the query index is the markers' id)
        size = d.bbox.size
        assert min(size.x, size.y, size.z) > 0 and all(math.isfinite(v) for v in (size.x, size.y, size.z))
        q = d.bbox.center.orientation
        assert q.x == 0.0 and q.y == 0.0 and q.z ** 2 + q.w ** 2 == pytest.approx(1.0)
    harness.wait_for(lambda: any(ns_of(m.markers[0].header.stamp) == stamp for m in harness.rec.markers),
                     10, "markers", log)
    markers = next(m for m in harness.rec.markers if ns_of(m.markers[0].header.stamp) == stamp)
    assert markers.markers[0].action == Marker.DELETEALL
    cubes = [m for m in markers.markers if m.ns == "boxes"]
    assert len(cubes) == len(det.detections)
    assert all(m.header.frame_id == "lidar_top" and ns_of(m.header.stamp) == stamp for m in markers.markers)
    labels = [m.text for m in markers.markers if m.ns == "labels"]
    assert all(" L:" in t and " C:" in t for t in labels)
    harness.wait_for(lambda: bool(harness.rec.processing_ms), 10, "processing time", log)
    assert harness.rec.processing_ms[-1].data > 0.0


def test_weight_map_images_when_subscribed(setup):
    harness, log = setup
    bev, cam0 = harness.rec.images["debug/weight_map/bev"], harness.rec.images["debug/weight_map/camera0"]
    stamp = recover(setup)
    harness.wait_for(lambda: any(ns_of(m.header.stamp) == stamp for m in bev) and
                     any(ns_of(m.header.stamp) == stamp for m in cam0), 10, "weight-map images", log)
    b = next(m for m in bev if ns_of(m.header.stamp) == stamp)
    assert b.encoding == "rgb8" and b.header.frame_id == "lidar_top" and b.width == b.height > 0
    c = next(m for m in cam0 if ns_of(m.header.stamp) == stamp)
    assert c.encoding == "rgb8" and c.header.frame_id == "cam_front_optical"
    assert (c.width, c.height) == (800, 450) and len(c.data) == c.step * c.height


def test_diagnostics_report_fused_cameras_and_calibration(setup):
    harness, log = setup
    # Two frames 0.5 s apart: the sweep 0.5 s back is accumulated, any older one is beyond input.max_sweep_lag
    # (0.55 s).
    recover(setup)
    status = status_after_output(setup)
    for i in range(6):
        assert status[f"camera{i} calibration"] == "ok"
        assert any(status.get(k) == "fused" for k in status if k.startswith(f"camera{i} ") and "dt" not in k)
    assert status["lidar pose in fixed frame"] == "ok"
    assert int(status["points"]) == 2 * 20000 and status["sweeps"] == "1"
    assert status["uncompensated sweeps"] == "0"
    assert "stage model ms" in status and "processing_time_ms" in status


def test_missing_camera_is_masked_not_fatal(setup):
    harness, log = setup
    cam5 = harness.rec.images["debug/weight_map/camera5"]
    stamp, _ = harness.publish_until_output(harness.next_stamp(), TIMEOUT, log, cameras=range(5))
    status = harness.wait_status(lambda s: s.get("camera5 CAM_BACK_RIGHT") in ("late", "missing"), 10,
                                 "camera5 masked in diagnostics", log)
    assert status["camera0 CAM_FRONT"] == "fused"
    assert not any(ns_of(m.header.stamp) == stamp for m in cam5)  # no overlay for a masked camera


def _image_with(harness, i, stamp, **changes):
    msg = harness.image(i, stamp)
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg


def _cloud_from(points_xyz, stamp, fields=("x", "y", "z", "intensity")):
    dtype = np.dtype([(f, "<f4") for f in fields])
    arr = np.zeros(len(points_xyz), dtype=dtype)
    for j, f in enumerate(fields[:3]):
        arr[f] = points_xyz[:, j]
    from aqr_ros.ros.to_msg import pointcloud2_from_structured

    return pointcloud2_from_structured(arr, "lidar_top", stamp_msg(stamp))


def _bad_frame(kind, harness, stamp):
    """(publish_frame kwargs, rejected topic, reason fragment, frame still processed) of one bad input."""
    if kind == "unknown image encoding":
        return {"images": {1: _image_with(harness, 1, stamp, encoding="16UC1")}}, "/rig/cam_front_right/image", \
            "unsupported encoding", True
    if kind == "image size differs from camera_info":
        small = harness.image(2, stamp)
        small.height, small.width, small.step = 300, 400, 1200
        small.data = small.data[:300 * 1200]
        return {"images": {2: small}}, "/rig/cam_front_left/image", "camera_info says", True
    if kind == "image step/data mismatch":
        msg = harness.image(3, stamp)
        msg.data = msg.data[:-7]
        return {"images": {3: msg}}, "/rig/cam_back/image", "expected step", True
    if kind == "truncated cloud":
        msg = harness.cloud(stamp)
        msg.data = msg.data[:len(msg.data) // 2]
        return {"cloud": msg}, "/rig/lidar/points", "truncated", False
    if kind == "cloud without xyz":
        msg = _cloud_from(np.ones((10, 3)), stamp, fields=("a", "b", "c", "intensity"))
        return {"cloud": msg}, "/rig/lidar/points", "no field x", False
    if kind == "all-NaN cloud":
        return {"cloud": _cloud_from(np.full((100, 3), np.nan), stamp)}, "/rig/lidar/points", "no finite points", True
    if kind == "empty cloud":
        msg = _cloud_from(np.zeros((1, 3)), stamp)
        msg.width, msg.row_step, msg.data = 0, 0, b""
        return {"cloud": msg}, "/rig/lidar/points", "no finite points", True
    if kind == "extreme values":
        pts = np.random.default_rng(1).uniform(-20, 20, (500, 3))
        pts[:50] = 3e38
        pts[50:60] = -1e30
        return {"cloud": _cloud_from(pts, stamp)}, "/rig/lidar/points", "dropped 60 of 500 points", True
    if kind == "huge cloud":
        return {"cloud": _cloud_from(np.ones((MAX_POINTS + 1, 3)), stamp)}, "/rig/lidar/points", \
            "exceed input.max_points", False
    if kind == "camera_info with zero K":
        return {"infos": {4: harness.camera_info(4, stamp, K=np.zeros((3, 3)))}}, "/rig/cam_back_left/camera_info", \
            "all zeros", True
    if kind == "camera_info with fx = 1e300":
        K = np.array(harness.camera_info(4, stamp).k, dtype=np.float64).reshape(3, 3)
        K[0, 0] = 1e300
        return {"infos": {4: harness.camera_info(4, stamp, K=K)}}, "/rig/cam_back_left/camera_info", \
            "implausible focal lengths", True
    if kind == "camera_info roi outside the image":
        info = harness.camera_info(4, stamp)
        info.roi.x_offset, info.roi.width, info.roi.height = 10, info.width, info.height
        return {"infos": {4: info}}, "/rig/cam_back_left/camera_info", "does not fit", True
    if kind == "negative image stamp":
        return {"images": {0: harness.image(0, -5 * SEC)}}, "/rig/cam_front/image", "negative stamp", True
    raise ValueError(kind)


BAD_INPUTS = ["unknown image encoding", "image size differs from camera_info", "image step/data mismatch",
              "truncated cloud", "cloud without xyz", "all-NaN cloud", "empty cloud", "extreme values", "huge cloud",
              "camera_info with zero K", "camera_info with fx = 1e300", "camera_info roi outside the image",
              "negative image stamp"]


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_input_is_reported_and_next_good_frame_processed(setup, kind):
    harness, log = setup
    stamp = harness.next_stamp()
    kwargs, topic, fragment, processed = _bad_frame(kind, harness, stamp)
    key = f"rejected {topic}"
    before = int(harness.last_status().get(key, "0 ").split(" ")[0]) if harness.rec.diagnostics else 0
    harness.publish_frame(stamp, **kwargs)
    status = harness.wait_status(lambda s: int(s.get(key, "0 ").split(" ")[0]) > before, 20,
                                 f"{kind} counted under {key!r}", log)
    assert fragment in status[key]
    assert any(f"rejected input on {topic}: " in line and fragment in line for line in log.lines)
    if processed:  # the bad part is masked or dropped, the frame itself still runs
        harness.wait_for(lambda: bool(harness.detections_at(stamp)), 20, f"output of the frame with {kind}", log)
    else:
        assert not harness.detections_at(stamp)
    assert recover(setup) > stamp


def test_out_of_order_stamps_rejected_then_recovered(setup):
    harness, log = setup
    good = recover(setup)
    key = "rejected /rig/lidar/points"
    before = int(first_status(setup).get(key, "0 ").split(" ")[0])
    harness.publish_frame(good - SEC // 5)
    status = harness.wait_status(lambda s: int(s.get(key, "0 ").split(" ")[0]) > before, 20, "out-of-order", log)
    assert "out of order" in status[key]
    assert not harness.detections_at(good - SEC // 5)
    recover(setup)


def test_time_jump_back_resets_with_one_warning(setup):
    harness, log = setup
    resets_before = int(first_status(setup)["time resets"])
    harness.last_stamp -= 100 * SEC
    stamp = recover(setup)
    assert int(harness.wait_status(lambda s: int(s["time resets"]) > resets_before, 10, "reset", log)
               ["time resets"]) == resets_before + 1
    assert log.text().count("time jumped back") == 1
    assert stamp < START_NS


def test_camera_info_float_noise_is_not_a_change(setup):
    harness, log = setup
    K = np.array(harness.camera_info(2, 0).k, dtype=np.float64).reshape(3, 3)
    for i in range(1, 6):
        noisy = K.copy()
        noisy[:2] += (-1) ** i * 1e-9
        harness.publish_frame(harness.next_stamp(), infos={2: harness.camera_info(2, 0, K=noisy)})
    recover(setup)
    assert "camera_info changed" not in log.text()


def test_flood_of_clouds_counts_drops_and_keeps_publishing(setup):
    harness, log = setup
    dropped_before = int(first_status(setup)["frames dropped"])
    base = harness.next_stamp()
    for k in range(40):
        harness.cloud_pub.publish(harness.cloud(base + k * SEC // 100))
    harness.last_stamp = base + 40 * SEC // 100
    harness.wait_status(lambda s: int(s["frames dropped"]) > dropped_before, 20, "dropped frames counted", log)
    recover(setup)
    assert log.proc.poll() is None
