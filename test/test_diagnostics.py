"""The node's diagnostics status: staleness, rates, the rejection window, lifecycle state, worker failures."""

from __future__ import annotations

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from std_msgs.msg import Header

from aqr_ros.ros.diagnostics import ArrivalWindow, FrameReport, FusionDiagnostics, frame_report

CLOUD = "/lidar_top/points"
CAMERAS = [f"/cam{i}/image_raw" for i in range(2)]


def _diag(stale_s: float = 1.0, window_s: float = 10.0) -> FusionDiagnostics:
    diag = FusionDiagnostics("aqr_node: fusion", "/aqr_node", ["CAM_FRONT", "CAM_BACK"], 200.0, stale_s, window_s)
    diag.watch_inputs(CLOUD, CAMERAS)
    diag.set_state("active", 100.0)
    return diag


def _values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_rate_is_arrivals_per_second_within_the_window():
    window = ArrivalWindow()
    for k in range(21):
        window.add(100.0 + 0.1 * k)  # 10 Hz for 2 s
    assert window.rate_hz(102.0, 10.0) == pytest.approx(10.0)
    assert window.rate_hz(111.5, 10.0) == pytest.approx(10.0)  # 101.5 .. 102.0 are still inside
    assert window.rate_hz(112.5, 10.0) == 0.0  # every arrival left the window


def test_inputs_that_fall_silent_turn_the_status_error_for_the_cloud_and_warn_for_a_camera():
    diag = _diag(stale_s=1.0)
    for k in range(10):
        t = 100.0 + 0.1 * k
        for topic in (CLOUD, *CAMERAS):
            diag.received(topic, t)
    fresh = diag.status(101.0)
    assert fresh.level == DiagnosticStatus.OK, fresh.message
    assert float(_values(fresh)[f"rate {CLOUD} Hz"]) == pytest.approx(10.0)

    for k in range(30):  # the cloud and camera 0 go on, camera 1 stops
        diag.received(CLOUD, 101.0 + 0.1 * k)
        diag.received(CAMERAS[0], 101.0 + 0.1 * k)
    camera_silent = diag.status(104.0)
    assert camera_silent.level == DiagnosticStatus.WARN
    assert f"{CAMERAS[1]} silent for 3.1 s" in camera_silent.message
    assert diag.silent_inputs(104.0) == [(CAMERAS[1], f"{CAMERAS[1]} silent for 3.1 s")]  # what the node logs

    cloud_silent = diag.status(110.0)
    assert cloud_silent.level == DiagnosticStatus.ERROR
    assert f"{CLOUD} silent for 6.1 s" in cloud_silent.message
    assert _values(cloud_silent)[f"age {CLOUD} s"] == "6.10"


def test_an_input_never_heard_is_reported_from_activation_on():
    diag = _diag(stale_s=2.0)
    assert diag.status(101.0).level == DiagnosticStatus.OK
    status = diag.status(103.0)
    assert status.level == DiagnosticStatus.ERROR
    assert f"nothing received on {CLOUD} for 3.0 s" in status.message
    assert _values(status)[f"age {CAMERAS[0]} s"] == "never received"


def test_the_status_names_the_model_and_its_weights():
    diag = FusionDiagnostics("aqr_node: fusion", "/aqr_node", ["CAM_FRONT"], 200.0,
                             model="aqr_cmt_rig_small, weights w.safetensors (sha256 0123456789ab)")
    assert _values(diag.status(1.0))["model"] == "aqr_cmt_rig_small, weights w.safetensors (sha256 0123456789ab)"


def test_an_inactive_node_reports_its_state_not_the_silence():
    diag = _diag(stale_s=1.0)
    diag.set_state("inactive", 105.0)
    status = diag.status(200.0)
    assert status.level == DiagnosticStatus.OK and status.message == "inactive"
    assert _values(status)["lifecycle state"] == "inactive"


def test_a_rejected_input_keeps_warn_for_the_whole_window_not_one_period():
    diag = _diag(stale_s=1e3, window_s=10.0)
    diag.reject(CAMERAS[0], "encoding mono16 not supported", 100.5)
    for now in (101.0, 102.0, 110.0):
        status = diag.status(now)
        assert status.level == DiagnosticStatus.WARN, now
        assert "1 inputs rejected in the last 10 s" in status.message and "mono16" in status.message
    assert diag.status(110.6).level == DiagnosticStatus.OK
    assert _values(diag.status(110.6))[f"rejected {CAMERAS[0]}"].startswith("1 (last: encoding mono16")


def test_worker_failure_is_error_and_counted():
    diag = _diag(stale_s=1e3)
    diag.worker_error("RuntimeError: CUDA error: device-side assert triggered")
    diag.set_fatal("unrecoverable CUDA error: CUDA error: device-side assert triggered")
    status = diag.status(101.0)
    assert status.level == DiagnosticStatus.ERROR and status.message.startswith("processing stopped: ")
    assert _values(status)["worker errors"].startswith("1 (last: RuntimeError")
    diag.set_state("inactive", 102.0)  # the error transition that follows keeps the failure visible
    assert diag.status(102.5).level == DiagnosticStatus.ERROR


def test_published_frames_give_the_output_rate_and_the_frame_values():
    diag = _diag(stale_s=1e3)
    report = FrameReport(camera_state=("fused", "late"), camera_dt_ms=(3.0, None), num_points=1000,
                         num_detections=7, processing_ms=250.0, stage_ms={"model": 200.0})
    for k in range(5):
        diag.frame_done(report, 100.0 + 0.5 * k)
    status = diag.status(102.0)
    values = _values(status)
    assert float(values["rate output Hz"]) == pytest.approx(2.0)
    assert values["frames published"] == "5" and values["stage model ms"] == "200.0"
    assert status.level == DiagnosticStatus.WARN
    assert "camera1 late" in status.message and "processing 250 ms > 200 ms" in status.message


def test_a_status_shows_one_frame_calibration_and_results_together():
    """Calibration recorded while the next frame is in progress appears only once that frame ends."""
    diag = _diag(stale_s=1e3)
    report = FrameReport(camera_state=("fused", "fused"), camera_dt_ms=(1.0, 2.0), num_points=10)
    diag.set_calibration(0, "ok")
    diag.set_lidar_pose("ok")
    diag.frame_done(report, 100.0)
    diag.set_calibration(0, "no tf lidar_top -> cam_front_optical")  # the next frame, still in progress
    diag.set_lidar_pose("no tf lidar_top -> odom")
    values = _values(diag.status(100.1))
    assert values["camera0 calibration"] == "ok" and values["lidar pose in fixed frame"] == "ok"
    diag.frame_skipped("calibration incomplete", report)
    values = _values(diag.status(100.2))
    assert values["camera0 calibration"].startswith("no tf") and values["lidar pose in fixed frame"].startswith("no tf")


def test_frame_report_carries_the_frame_header_stage_times_and_camera_states():
    header = Header(frame_id="lidar_top")
    header.stamp.sec, header.stamp.nanosec = 1_700_000_000, 5
    report = FrameReport(camera_state=("fused", "late"), camera_dt_ms=(-12.25, None), num_points=5000, num_sweeps=3,
                         num_uncompensated=1, num_detections=7, processing_ms=90.0,
                         stage_ms={"convert": 1.25, "model": 80.0})
    msg = frame_report(header, "aqr_node: frame report", ("CAM_FRONT", "CAM_BACK"), report, 120.0)
    assert msg.header.stamp.sec == 1_700_000_000 and msg.header.stamp.nanosec == 5
    assert msg.header.frame_id == "lidar_top"
    assert {kv.key: kv.value for kv in msg.status[0].values} == {
        "convert ms": "1.250", "model ms": "80.000", "total ms": "90.000", "latency ms": "120.000",
        "camera0 CAM_FRONT": "fused", "camera0 dt_ms": "-12.2", "camera1 CAM_BACK": "late", "camera1 dt_ms": "n/a",
        "points": "5000", "sweeps": "3", "uncompensated sweeps": "1", "detections": "7"}
