"""The node and the synthetic rig publisher as two processes over DDS, with the rig's default topic layout.

The rig publishes 20 Hz LiDAR sweeps and phase-shifted 12 Hz cameras; with ``sync.camera_offsets`` set to the
rig's exposure phases every camera is fused, and sweeps are motion-compensated through odom. The Autoware
DetectedObjects output is on: the same boxes as the Detection3DArray, in the output frame.

Which clouds a loaded machine gets through is timing, so the fusion checks read the diagnostics of the rig's last
cloud, once nothing else is in flight: its camera match and tf are fixed by the stamps alone. A cloud waits up to
``sync.wait_timeout`` (here its 1 s maximum, not 50 ms) for images that are still on the wire, and the rig's first
``/tf`` messages may go out before the node's tf subscription has matched (the rig waits for LiDAR subscribers only),
so an earlier frame may lack its pose or a camera.
"""

import numpy as np
import pytest
from autoware_perception_msgs.msg import DetectedObjects

from conftest import ros_domain
from node_harness import SEC, TINY_CONFIG, RigHarness, node_command, ns_of, start_node, stop_node

from aqr_ros.tools.synthetic_rig import CAMERA_NAMES, LIDAR_PERIOD, Rig, SyntheticRig

pytestmark = pytest.mark.ros

DOMAIN_ID = ros_domain(__name__)
START_S = 2000
FRAMES = 20
#: Stamp of the rig's last cloud: nothing replaces it, so the node always processes it.
LAST_NS = START_S * SEC + (FRAMES - 1) * SEC // 20


def expected_dt_ms(camera: int, offsets: list[float]) -> float:
    """Image stamp - offset - cloud stamp of the last cloud's best match: the published exposure of ``camera``
    closest to its target (the rig's schedule; ``offsets`` are the rounded ones the node was given)."""
    target = (FRAMES - 1) * LIDAR_PERIOD + offsets[camera]
    exposures = [e.t for e in SyntheticRig().schedule(FRAMES) if e.sensor == camera]
    return (min(exposures, key=lambda t: abs(t - target)) - target) * 1e3


def test_node_with_rig_publisher(spawn_python, ros_env):
    offsets = [round(float(o), 4) for o in Rig.nuscenes_like().camera_offsets()]
    remaps = {"~/input/pointcloud": "/lidar_top/points"}
    for i, name in enumerate(CAMERA_NAMES):
        remaps[f"~/input/camera{i}/image"] = f"/{name}/image_raw"
        remaps[f"~/input/camera{i}/camera_info"] = f"/{name}/camera_info"
    params = {"model.config": str(TINY_CONFIG), "model.device": "cpu", "sync.camera_offsets": str(offsets),
              "sync.queue_size": 3, "sync.wait_timeout": 1.0, "diag.period": 0.2, "model.warmup_iters": 0,
              "output_frame": "base_link", "output.detected_objects": "true", "score_threshold": 0.0}
    log = start_node(node_command("", params, remaps), DOMAIN_ID)
    harness = RigHarness(DOMAIN_ID, "")
    objects: list[DetectedObjects] = []
    harness.node.create_subscription(DetectedObjects, "/aqr_node/output/objects", objects.append, 10)
    try:
        harness.wait_for(lambda: bool(harness.rec.label_info), 60, "label_info (node start-up)", log)
        rig = spawn_python(["-m", "aqr_ros.tools.rig_publisher", "--frames", str(FRAMES), "--start-time",
                            str(START_S), "--wait-for-subscribers", "1", "--linger", "5"],
                           env=dict(ros_env, ROS_DOMAIN_ID=str(DOMAIN_ID)))
        harness.wait_for(lambda: bool(harness.rec.detections), 120, "detections from rig frames", log)
        rig.wait(timeout=120)
        det = harness.rec.detections[0]
        stamp = ns_of(det.header.stamp)
        assert det.header.frame_id == "base_link"  # output_frame, through the rig's /tf_static
        harness.wait_for(lambda: bool(harness.rec.markers), 10, "markers", log)
        assert all(m.header.frame_id == "base_link" for m in harness.rec.markers[0].markers[1:])
        assert (stamp - START_S * SEC) % (SEC // 20) == 0 and START_S * SEC <= stamp < (START_S + 1) * SEC
        harness.wait_for(lambda: any(ns_of(d.header.stamp) == LAST_NS for d in harness.rec.detections), 30,
                         "detections of the rig's last cloud", log)
        status = harness.wait_status(lambda s: int(s.get("frames published", "0")) == len(harness.rec.detections),
                                     10, "diagnostics counting every frame received", log)
        for i in range(6):
            assert status[f"camera{i} calibration"] == "ok"
            assert status[f"camera{i} {CAMERA_NAMES[i].upper()}"] == "fused", status
            assert float(status[f"camera{i} dt_ms"]) == pytest.approx(expected_dt_ms(i, offsets), abs=0.06), status
        assert status["lidar pose in fixed frame"] == "ok"
        harness.wait_for(lambda: any(ns_of(o.header.stamp) == stamp for o in objects), 10, "DetectedObjects", log)
        (same,) = [o for o in objects if ns_of(o.header.stamp) == stamp]
        assert same.header.frame_id == "base_link" and len(same.objects) == len(det.detections) > 0
        for obj, d in zip(same.objects, det.detections):
            p = obj.kinematics.pose_with_covariance.pose.position
            c = d.bbox.center.position
            np.testing.assert_allclose([p.x, p.y, p.z], [c.x, c.y, c.z], atol=1e-9)
            assert obj.existence_probability == np.float32(d.results[0].hypothesis.score)
            assert obj.kinematics.has_twist
    finally:
        harness.close()
        stop_node(log)
