"""The command-line tools run end to end: the demo (node + rig over DDS) and the benchmarks.

They use the reduced test configuration so the suite stays fast; what is checked is that each tool
produces its promised output, not any timing.
"""

from __future__ import annotations

import json
import subprocess

import cv2
import pytest

from aqr_ros.tools import bench

from conftest import REPO_ROOT

TINY = str(REPO_ROOT / "test" / "configs" / "tiny.yaml")


@pytest.mark.ros
def test_demo_writes_frames_over_dds(spawn_python, ros_env, tmp_path):
    out = tmp_path / "demo"
    proc = spawn_python(["-m", "aqr_ros.tools.demo", "--config", TINY, "--frames", "2", "--rate", "0.2",
                         "--out", str(out), "--domain-id", "71", "--timeout", "240"], env=ros_env)
    try:
        text, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail("the demo did not finish within 300 s")
    assert proc.returncode == 0, text
    assert "RANDOM weights" in text and "frame 1:" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 2 and len(summary["processing_ms"]) == 2
    for index in (0, 1):
        frame = out / f"frame_{index:03d}"
        record = json.loads((frame / "detections.json").read_text())
        assert record["stamp_ns"] > 0 and record["detections"]
        det = record["detections"][0]
        assert set(det) == {"query_index", "class", "score", "center", "size_lwh", "yaw"}
        assert 0 <= det["query_index"] < 100  # the tiny config has 100 queries
    bev = cv2.imread(str(out / "frame_001" / "weight_map_bev.png"))
    assert bev is not None and bev.shape[0] > 0 and bev.std() > 0
    camera = cv2.imread(str(out / "frame_001" / "weight_map_camera0.png"))
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
