"""The demo (aqr_ros.tools.demo): which frames count, what a frame's JSON holds, the output folder, the failure
report and the options, each on synthetic input; and one short end-to-end run (node + rig over DDS)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from std_msgs.msg import Header

from aqr_ros.ros.diagnostics import FrameReport, frame_report
from aqr_ros.ros.to_msg import QUERY_WEIGHTS_DTYPE
from aqr_ros.tools import demo
from aqr_ros.tools.synthetic_rig import LIDAR_PERIOD

from conftest import REPO_ROOT, ros_domain

CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
ALL_FUSED = ("fused",) * 6
#: The demo's default model: the trained weights when they exist, else random weights of the same config.
RIG_WEIGHTS = REPO_ROOT / "models" / "weights" / "aqr_cmt_rig_small.safetensors"
RIG_SWEEPS = 3  # lidar.num_sweeps of aqr_cmt_rig_small
PICTURES = ("bev", "camera0", "camera1", "camera2", "camera3", "camera4", "camera5")
#: The ROS domain of this module's end-to-end run.
DEMO_DOMAIN_ID = str(ros_domain(__name__))


def node_report(states: tuple[str, ...], sweeps: int, processing_ms: float):
    """The ``~/debug/frame_report`` message the node's own :func:`frame_report` builds for one frame."""
    header = Header(frame_id="lidar_top")
    header.stamp.sec = 1_700_000_000
    report = FrameReport(camera_state=states, camera_dt_ms=(12.5, None, -3.0, 0.0, 4.0, -8.0), num_points=1000,
                         num_sweeps=sweeps, processing_ms=processing_ms, stage_ms={"model": 300.0})
    return frame_report(header, "aqr_node: frame report", CAMERAS, report, latency_ms=900.0)


def state(states: tuple[str, ...] = ALL_FUSED, sweeps: int = RIG_SWEEPS,
          processing_ms: float = 500.0) -> demo.FrameState:
    return demo.FrameState(CAMERAS, states, (1.0,) * len(states), sweeps, processing_ms)


# ------------------------------------------------------------------ the node's frame report and the counting rule


def test_frame_report_gives_the_frame_camera_states_sweeps_and_time():
    states = ("fused", "late", "missing", "fused", "rejected: bad encoding", "fused")
    parsed = demo.parse_frame_report(node_report(states, sweeps=2, processing_ms=812.34), 6)
    assert parsed == demo.FrameState(CAMERAS, states, (12.5, None, -3.0, 0.0, 4.0, -8.0), 2, 812.34)
    assert parsed.fused() == [0, 3, 5]


def test_frame_report_of_fewer_cameras_describes_none():
    assert demo.parse_frame_report(node_report(ALL_FUSED, 3, 400.0), 7) is None


def test_frame_counts_only_with_every_camera_fused_and_full_sweep_history():
    assert demo.not_counted_reason(state(), RIG_SWEEPS) is None
    first = demo.not_counted_reason(state(("missing",) * 5 + ("fused",), sweeps=0), RIG_SWEEPS)
    assert first == "warm-up: 5 of 6 cameras not fused, past sweeps 0/3"
    assert demo.not_counted_reason(state(sweeps=2), RIG_SWEEPS) == "warm-up: past sweeps 2/3"
    late = ("fused", "late", "fused", "fused", "fused", "fused")
    assert demo.not_counted_reason(state(late), RIG_SWEEPS) == "warm-up: 1 of 6 cameras not fused"
    assert demo.not_counted_reason(None, RIG_SWEEPS).startswith("no frame report")
    assert demo.camera_summary(state(("fused", "missing", "fused", "late", "missing", "fused"))) == \
        "fused 0 2 5; missing 1 4; late 3"


# ------------------------------------------------------------------ a frame's record and the collector


class FixedTruth(demo.GroundTruth):
    """Two ground-truth boxes at any time: a car at (10, 0) and a pedestrian at (50, 5) (beyond 30 m)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def boxes(self, t: float) -> tuple[np.ndarray, list[str]]:
        self.times.append(t)
        return np.array([[10.0, 0.0, -1.0, 4.0, 2.0, 1.5, 0.1, 2.0, 0.0],
                         [50.0, 5.0, -1.0, 0.8, 0.8, 1.8, 0.0, 0.0, 0.0]]), ["car", "pedestrian"]


START_NS = 1_700_000_000 * demo.SEC


def complete_record(rig_frame: int, frame_state: demo.FrameState | None) -> demo.FrameRecord:
    """A frame as the listener assembles it: two detections (queries 7 and 2), their markers, the weights
    of 10 queries (query q: LiDAR 0.05 q, camera 1 - 0.05 q), its frame report and all seven pictures."""
    stamp = START_NS + round(rig_frame * LIDAR_PERIOD * demo.SEC)
    dets = [{"class": "car", "score": 0.8, "center": [10.5, 0.2, -0.25], "size_lwh": [4.1, 1.9, 1.5], "yaw": 0.1},
            {"class": "pedestrian", "score": 0.4, "center": [-3.0, 4.0, -0.1], "size_lwh": [0.7, 0.7, 1.7],
             "yaw": 0.0}]
    weights = np.zeros(10, QUERY_WEIGHTS_DTYPE)
    weights["query"] = np.arange(10)
    weights["lidar_weight"] = 0.05 * np.arange(10)
    weights["camera_weight"] = 1.0 - 0.05 * np.arange(10)
    rec = demo.FrameRecord(stamp, "lidar_top", time.monotonic(), dets, state=frame_state, queries=[7, 2],
                           velocities={7: [2.0, 0.1, 0.0]}, weights=weights)
    rec.pictures = {name: np.full((4, 6, 3), 40 * k, np.uint8) for k, name in enumerate(PICTURES)}
    return rec


def test_frame_json_joins_each_detection_with_its_query_weights_velocity_and_ground_truth(tmp_path):
    states = ("fused",) * 5 + ("late",)
    rec = complete_record(4, state(states, sweeps=3))
    result = demo.evaluate_frame(3, rec, START_NS, FixedTruth())
    demo.write_frame(tmp_path / "frame_003", rec, result)
    record = json.loads((tmp_path / "frame_003" / "detections.json").read_text())
    assert record["frame"] == 3 and record["frame_id"] == "lidar_top" and record["stamp_ns"] == rec.stamp_ns
    assert record["rig_time_s"] == pytest.approx(4 * LIDAR_PERIOD)
    assert {record["units"][k] for k in ("center", "size_lwh", "yaw", "velocity")} == {"m", "rad", "m/s"}
    assert record["units"]["yaw"] == "rad" and record["units"]["velocity"] == "m/s"
    assert record["past_sweeps"] == 3 and record["processing_ms"] == 500.0
    assert record["cameras_fused"] == ["camera0", "camera1", "camera2", "camera3", "camera4"]
    assert record["cameras"]["camera5"] == {"name": "CAM_BACK_RIGHT", "state": "late", "dt_ms": 1.0}
    car, pedestrian = record["detections"]
    assert car["query_index"] == 7 and car["lidar_weight"] == 0.35 and car["camera_weight"] == 0.65
    assert pedestrian["query_index"] == 2 and pedestrian["lidar_weight"] == 0.1 and pedestrian["camera_weight"] == 0.9
    assert car["velocity"] == [2.0, 0.1, 0.0] and pedestrian["velocity"] == [0.0, 0.0, 0.0]  # no arrow: below 0.5 m/s
    assert car["gt"]["class"] == "car" and car["gt"]["distance"] == pytest.approx(np.hypot(0.5, 0.2), abs=1e-3)
    assert car["gt"]["center"] == [10.0, 0.0, -0.25] and car["gt"]["velocity"] == [2.0, 0.0, 0.0]
    assert pedestrian["gt"] is None  # the only pedestrian is 53 m away
    assert record["ground_truth_within_30m"] == 1 and record["ground_truth_found"] == 1
    bev = cv2.imread(str(tmp_path / "frame_003" / "weight_map_bev.png"))
    assert bev.shape == (4, 6, 3) and int(bev[0, 0, 0]) == 0


class FakeListener:
    """What Collector reads of DemoListener: frames by stamp and their order."""

    def __init__(self, records: list[demo.FrameRecord]) -> None:
        self.frames = {r.stamp_ns: r for r in records}
        self.order = [r.stamp_ns for r in records]


def test_collector_shows_warm_up_frames_and_counts_only_warm_complete_ones(tmp_path, capsys):
    first = state(("missing",) * 5 + ("fused",), sweeps=0, processing_ms=900.0)
    second = state(sweeps=2, processing_ms=610.0)
    third = state(processing_ms=590.0)
    records = [complete_record(0, first), complete_record(2, second), complete_record(3, third)]
    del records[0].pictures["camera1"]  # an unfused camera has no overlay: not waited for
    collector = demo.Collector(tmp_path, START_NS, RIG_SWEEPS, 6, FixedTruth(), top=1)
    collector.decide(FakeListener(records), wanted=5)
    text = capsys.readouterr().out
    assert collector.decided == 3 and len(collector.results) == 1 and collector.skipped == {"warm-up": 2}
    assert "not counted (warm-up: 5 of 6 cameras not fused, past sweeps 0/3): rig t=0.00 s  cameras missing " \
           "0 1 2 3 4; fused 5  past sweeps 0/3" in text
    assert "not counted (warm-up: past sweeps 2/3): rig t=0.10 s  cameras fused 0 1 2 3 4 5" in text
    assert "frame 0: rig t=0.15 s  cameras fused 6/6 (dt ms +1 +1 +1 +1 +1 +1)  past sweeps 3/3" in text
    assert str(tmp_path / "frame_000") in text
    assert sorted(p.name for p in (tmp_path / "frame_000").iterdir()) == sorted(
        ["detections.json", *(f"weight_map_{n}.png" for n in PICTURES)])
    assert json.loads((tmp_path / "frame_000" / "detections.json").read_text())["stamp_ns"] == records[2].stamp_ns


def test_collector_waits_for_the_frame_report_then_gives_up_on_the_frame(tmp_path, capsys):
    rec = complete_record(5, None)
    listener = FakeListener([rec])
    collector = demo.Collector(tmp_path, START_NS, RIG_SWEEPS, 6, FixedTruth(), top=0)
    collector.decide(listener, wanted=1)
    assert collector.decided == 0  # its frame report may still come
    rec.arrived -= demo.SETTLE_S
    collector.decide(listener, wanted=1)
    assert collector.decided == 1 and not collector.results and collector.skipped == {"no frame report": 1}
    assert "the node's ~/debug/frame_report of the frame did not arrive" in capsys.readouterr().out


# ------------------------------------------------------------------ output folder, failures, options


def test_out_is_resolved_against_the_working_directory_and_only_demo_files_are_removed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs" / "demo"
    (out / "frame_000").mkdir(parents=True)
    (out / "frame_000" / "weight_map_bev.png").write_bytes(b"png")
    (out / "frame_000" / "detections.json").write_text("{}")
    (out / "frame_012").mkdir()
    (out / "frame_012" / "weight_map_camera3.png").write_bytes(b"png")
    (out / "frame_012" / "my_notes.txt").write_text("mine")
    for name in ("summary.json", "aqr_node.log", "rig_publisher.log", "notes.txt"):
        (out / name).write_text("x")
    (out / "frames_backup").mkdir()
    folder = demo.prepare_output(Path("runs/demo"))
    assert folder.path == out and folder.path.is_absolute()
    assert folder.removed == 6
    assert folder.kept == ["frame_012/my_notes.txt", "frames_backup", "notes.txt"]
    assert sorted(p.name for p in out.iterdir()) == ["frame_012", "frames_backup", "notes.txt"]
    assert [p.name for p in (out / "frame_012").iterdir()] == ["my_notes.txt"]
    again = demo.prepare_output(Path("runs") / ".." / "runs" / "demo")
    assert again.path == out and again.removed == 0


def test_out_naming_a_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("taken").write_text("x")
    with pytest.raises(SystemExit, match=f"--out: {tmp_path / 'taken'} exists and is not a folder"):
        demo.prepare_output(Path("taken"))


def test_failure_prints_the_child_fatal_and_error_lines(tmp_path, capsys):
    log = tmp_path / "aqr_node.log"
    log.write_text("[INFO] [1.0] [aqr_node]: loading model\n"
                   "[ERROR] [1.5] [aqr_node]: model.checkpoint: no such file /x.pth\n"
                   "[INFO] [1.6] [aqr_node]: shutting down\n"
                   "[FATAL] [1.7] [aqr_node]: configure failed\n")
    demo.print_failure("aqr_node", "exited with code 1", log)
    text = capsys.readouterr().out
    assert f"aqr_node exited with code 1; its FATAL/ERROR log lines ({log}):" in text
    assert "  | [ERROR] [1.5] [aqr_node]: model.checkpoint: no such file /x.pth" in text
    assert "  | [FATAL] [1.7] [aqr_node]: configure failed" in text
    assert "loading model" not in text and "see the log" not in text


def test_failure_without_flagged_lines_prints_the_last_ones(tmp_path, capsys):
    log = tmp_path / "rig.log"
    log.write_text("\n".join([f"line {i}" for i in range(30)] + ["Traceback (most recent call last):",
                                                                 "ValueError: bad scene"]) + "\n")
    demo.print_failure("aqr_rig_publisher", "exited with code 1", log)
    text = capsys.readouterr().out
    assert "its last log lines" in text and "  | ValueError: bad scene" in text and "line 5\n" not in text
    log.write_text("")
    demo.print_failure("aqr_node", "exited with code -9", log)
    assert f"its log {log} is empty" in capsys.readouterr().out


@pytest.mark.parametrize("option, value, accepted", [("--device", "gpu", "auto, cpu, cuda, cuda:N"),
                                                      ("--device", "cuda:x", "auto, cpu, cuda, cuda:N"),
                                                      ("--precision", "fp8", "'fp32', 'fp16'")])
def test_unknown_device_or_precision_is_refused_with_the_accepted_values(option, value, accepted, capsys):
    with pytest.raises(SystemExit) as exc:
        demo.build_parser(cuda=False).parse_args([option, value])
    assert exc.value.code == 2 and accepted in capsys.readouterr().err


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        demo.build_parser(cuda=False).parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("(default: out/demo)", "(default: auto)", "(default: fp32)", "(default: 9000)",
                  "(default: 20 with CUDA, else 5)", "(default: 0.3)"):
        assert shown in text, shown
    args = demo.build_parser(cuda=False).parse_args(["--device", "CPU", "--precision", "FP16"])
    assert (args.device, args.precision, args.frames, args.rate) == ("cpu", "fp16", 5, demo.CPU_RATE)


def test_node_gets_the_device_precision_and_the_checkpoint():
    args = demo.build_parser(cuda=False).parse_args(["--device", "cpu", "--precision", "fp16"])
    config = demo.load_config(demo.RIG_CONFIG)
    params = demo.node_parameters(args, config, "/w.safetensors", config_carried=True)
    assert params == {"model.device": "cpu", "model.precision": "fp16", "score_threshold": 0.3,
                      "model.checkpoint": "/w.safetensors"}


# ------------------------------------------------------------------ end to end


@pytest.mark.ros
def test_demo_counts_a_warm_frame_over_dds(spawn_python, ros_env, tmp_path):
    out = tmp_path / "demo"
    (out / "frame_007").mkdir(parents=True)  # left by an earlier run: removed
    (out / "frame_007" / "detections.json").write_text("{}")
    (out / "notes.txt").write_text("not the demo's")  # kept
    assert RIG_WEIGHTS.is_file(), "the shipped rig-trained weights are missing"
    env = {**ros_env, "ROS_DOMAIN_ID": DEMO_DOMAIN_ID, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    proc = spawn_python(["-m", "aqr_ros.tools.demo", "--frames", "1", "--score-threshold", "0", "--device", "cpu",
                         "--out", os.path.relpath(out, tmp_path), "--timeout", "240"], env=env, cwd=str(tmp_path))
    try:
        text, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail("the demo did not finish within 300 s")
    assert proc.returncode == 0, text
    assert "trained on the synthetic rig only" in text and f"output {out}: removed 1 files" in text
    assert "not counted (warm-up: " in text and "past sweeps 0/3" in text  # the first frame has no past sweeps
    assert "frame 0: " in text and "cameras fused 6/6" in text and "past sweeps 3/3" in text
    assert "ground truth within 30 m: found" in text and str(out / "frame_000") in text
    assert not (out / "frame_007").exists() and (out / "notes.txt").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 1 and summary["seed"] == 9000 and summary["not_counted"]["warm-up"] >= 1
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["frame_000"]
    folder = out / "frame_000"
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(f"weight_map_{n}.png" for n in PICTURES)
    record = json.loads((folder / "detections.json").read_text())
    assert record["frame_id"] == "lidar_top" and record["units"]["yaw"] == "rad"
    assert record["past_sweeps"] == RIG_SWEEPS and record["rig_time_s"] >= RIG_SWEEPS * LIDAR_PERIOD - 1e-9
    assert record["cameras_fused"] == [f"camera{i}" for i in range(6)]
    assert all(abs(c["dt_ms"]) <= 100 for c in record["cameras"].values())
    assert record["detections"]
    for det in record["detections"]:
        assert 0 <= det["query_index"] < 200  # rig_small has 200 queries
        assert 0 <= det["lidar_weight"] <= 1 and 0 <= det["camera_weight"] <= 1
        assert len(det["velocity"]) == 3 and len(det["size_lwh"]) == 3
        gt = det["gt"]
        assert gt is None or (gt["class"] == det["class"] and gt["distance"] <= 2.0)
    bev = cv2.imread(str(folder / "weight_map_bev.png"))
    assert bev is not None and bev.std() > 0
    camera = cv2.imread(str(folder / "weight_map_camera5.png"))
    assert camera is not None and camera.shape[:2] == (900, 1600)
