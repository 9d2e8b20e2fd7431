"""The command-line tools run end to end: the demo (node + rig over DDS) and the benchmarks.

The benchmarks use the reduced test configuration and the demo its own small default model, so the suite
stays fast; what is checked is that each tool produces its promised output, not any timing.
"""

from __future__ import annotations

import json
import subprocess

import cv2
import pytest

from aqr_ros.tools import bench

from conftest import REPO_ROOT

TINY = str(REPO_ROOT / "test" / "configs" / "tiny.yaml")
#: The demo's default model: the trained weights when they exist, else random weights of the same config.
RIG_WEIGHTS = REPO_ROOT / "models" / "weights" / "aqr_cmt_rig_small.safetensors"
RIG_SWEEPS = 3  # lidar.num_sweeps of aqr_cmt_rig_small
PICTURES = ("bev", "camera0", "camera1", "camera2", "camera3", "camera4", "camera5")


@pytest.mark.ros
def test_demo_writes_complete_frames_over_dds(spawn_python, ros_env, tmp_path):
    out = tmp_path / "demo"
    (out / "frame_007").mkdir(parents=True)  # left by an earlier run: removed
    (out / "notes.txt").write_text("not the demo's")  # kept
    assert RIG_WEIGHTS.is_file(), "the shipped rig-trained weights are missing"
    proc = spawn_python(["-m", "aqr_ros.tools.demo", "--frames", "2", "--score-threshold", "0",
                         "--out", str(out), "--domain-id", "71", "--timeout", "240"], env=ros_env)
    try:
        text, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail("the demo did not finish within 300 s")
    assert proc.returncode == 0, text
    assert "trained on the synthetic rig only" in text
    assert "frame 1:" in text and "ground truth within 30 m: found" in text and str(out) in text
    assert not (out / "frame_007").exists() and (out / "notes.txt").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 2 and len(summary["processing_ms"]) == 2 and summary["seed"] == 9000
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    assert [f.name for f in folders] == ["frame_000", "frame_001"]
    for folder in folders:
        assert sorted(p.name for p in folder.glob("*.png")) == sorted(f"weight_map_{n}.png" for n in PICTURES)
        record = json.loads((folder / "detections.json").read_text())
        assert record["frame_id"] == "lidar_top" and "units" in record
        assert record["rig_time_s"] >= RIG_SWEEPS * 0.05 - 1e-9  # full sweep history
        assert len(record["camera_dt_ms"]) == 6 and all(abs(dt) <= 100 for dt in record["camera_dt_ms"].values())
        assert record["detections"]
        for det in record["detections"]:
            assert 0 <= det["query_index"] < 200  # rig_small has 200 queries
            assert 0 <= det["lidar_weight"] <= 1 and 0 <= det["camera_weight"] <= 1  # sigmoids, 4 decimals
            assert len(det["velocity"]) == 3 and len(det["size_lwh"]) == 3
            gt = det["gt"]
            assert gt is None or (gt["class"] == det["class"] and gt["distance"] <= 2.0)
    bev = cv2.imread(str(out / "frame_001" / "weight_map_bev.png"))
    assert bev is not None and bev.std() > 0
    camera = cv2.imread(str(out / "frame_001" / "weight_map_camera5.png"))
    assert camera is not None and camera.shape[:2] == (900, 1600)


def test_model_benchmark_prints_every_stage(capsys):
    assert bench.main(["model", "--config", TINY, "--devices", "cpu", "--precisions", "fp32",
                       "--iters", "1", "--warmup", "0"]) == 0
    text = capsys.readouterr().out
    for stage in ("voxelize", "sparse_encoder", "bev_2d", "image_backbone_neck", "aqr", "decoder", "decode"):
        assert f"   {stage} " in text, stage
    assert "forward" in text and "peak memory" in text


def test_aqr_benchmark_compares_gathered_and_dense(capsys):
    assert bench.main(["aqr", "--config", TINY, "--devices", "cpu", "--queries", "100,180",
                       "--iters", "1", "--warmup", "0"]) == 0
    text = capsys.readouterr().out
    assert "-- 100 queries: AQR total" in text and "-- 180 queries" in text
    assert "gathered" in text and "dense mask" in text


@pytest.mark.ros
def test_dds_benchmark_counts_large_messages_between_two_processes(spawn_python, ros_env):
    proc = spawn_python(["-m", "aqr_ros.tools.bench", "dds", "--sizes-mb", "6", "--count", "3", "--hz", "5",
                         "--domain-id", "73"], env=ros_env)
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, text
    assert "config/fastdds_large_data.xml" in text
    rows = [line.split() for line in text.splitlines() if line.strip().startswith("6.0")]
    assert rows == [["6.0", "3", "of", "3", "3", "of", "3"]], text  # a 6 MB cloud and image, each delivered
