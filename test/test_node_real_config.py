"""The real cmt_aqr_voxel0100_r50_800x320 configuration through the node process (random weights, CPU).

One frame of the harness rig (half-resolution 800x450 images) must come out as detections, markers and
weight-map images of the full-size model: 900 queries, a 128x128 BEV map and 20x50 camera maps.
"""

import pytest

from conftest import ros_domain
from node_harness import SEC, RigHarness, node_command, ns_of, rig_remaps, start_node, stop_node

pytestmark = pytest.mark.ros

DOMAIN_ID = ros_domain(__name__)
START_NS = 1_750_000_000 * SEC
TIMEOUT = 300.0


def test_real_config_end_to_end():
    params = {"model.config": "cmt_aqr_voxel0100_r50_800x320", "model.device": "cpu", "model.warmup_iters": 0,
              "max_detections": 50, "score_threshold": 0.0, "diag.period": 0.5}
    log = start_node(node_command("", params, rig_remaps()), DOMAIN_ID)
    harness = RigHarness(DOMAIN_ID, "")
    try:
        harness.subscribe_image("debug/weight_map/bev")
        harness.subscribe_image("debug/weight_map/camera3")
        harness.publish_static_tf()
        harness.wait_for(lambda: bool(harness.rec.label_info), TIMEOUT, "label_info (node start-up)", log)
        bev, cam = harness.rec.images["debug/weight_map/bev"], harness.rec.images["debug/weight_map/camera3"]
        # Frames that arrive before the static tf runs on the LiDAR alone (cameras masked, no camera maps):
        # take the first frame with camera3 fused.
        first = START_NS
        for _ in range(10):
            stamp, det = harness.publish_until_output(first, TIMEOUT, log, period_ns=SEC)
            harness.wait_for(lambda: any(ns_of(m.header.stamp) == stamp for m in bev), 30, "BEV weight map", log)
            try:
                harness.wait_for(lambda: any(ns_of(m.header.stamp) == stamp for m in cam), 5, "camera map", log)
                break
            except AssertionError:
                first = harness.next_stamp(SEC)
        assert det.header.frame_id == "lidar_top" and ns_of(det.header.stamp) == stamp
        assert len(det.detections) == 50  # threshold 0: the count limit applies
        scores = [d.results[0].hypothesis.score for d in det.detections]
        assert scores == sorted(scores, reverse=True)
        assert all(d.id == "" for d in det.detections)
        assert any(ns_of(m.header.stamp) == stamp for m in cam), "camera3 was never fused"
        b = next(m for m in bev if ns_of(m.header.stamp) == stamp)
        # the 128x128 BEV map at 4 px per cell (512 px) in its frame: title, colour bar and legend (588 px square)
        assert (b.width, b.height) == (588, 588)
        c = next(m for m in cam if ns_of(m.header.stamp) == stamp)
        assert (c.width, c.height, c.header.frame_id) == (800, 450, "cam_back_optical")
        status = harness.wait_status(lambda s: s.get("frames published", "0") != "0", 30, "diagnostics", log)
        assert all(status[f"camera{i} calibration"] == "ok" for i in range(6))
        assert float(status["stage model ms"]) > 0
    finally:
        harness.close()
        stop_node(log)
