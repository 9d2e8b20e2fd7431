"""scripts/gpu_check.sh and aqr_ros.tools.gpu_check on the CPU: the report's keys and the agreement figures.

The GPU machine runs the same code with ``--device cuda``; here the CPU path (``--device cpu --quick``, the tiny
config) proves the steps, the JSON and the summary, and that fp16 is reported as not run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from aqr_ros.model.detector import Detections
from aqr_ros.tools import gpu_check

from conftest import REPO_ROOT, TINY_CONFIG



@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run([str(REPO_ROOT / "scripts" / "gpu_check.sh"), "--device", "cpu", "--quick",
                           "--config", str(TINY_CONFIG), "--out", str(out)], env=env, cwd="/", capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "result: OK" in proc.stdout
    return json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.txt").read_text(), out


def test_report_has_every_step_and_the_environment(report):
    data, text, out = report
    assert data["ok"] and data["device"] == "cpu" and data["quick"]
    assert data["steps_run"] == list(gpu_check.STEPS)
    for name in gpu_check.STEPS:
        step = data["steps"][name]
        assert step["status"] == "ok" and step["returncode"] == 0 and 0 < step["wall_s"] < step["timeout_s"], name
        assert (out / step["log"]).is_file()
    env = data["environment"]
    assert env["torch"] == torch.__version__ and env["cuda_available"] is False and env["missing"] == {}
    assert set(env["packages"]) == set(gpu_check.PACKAGES)
    assert data["peak_memory"]["cuda_allocated_mib"] is None and "device cpu" in data["peak_memory"]["note"]
    assert "result: OK" in text and "fp16_vs_fp32: fp16 runs under CUDA autocast only" in text


def test_gpu_tests_are_collected_and_skipped_without_cuda(report):
    tests = report[0]["tests"]
    assert tests["tests"] >= 5 and tests["skipped"] == tests["tests"]
    assert tests["failures"] == tests["errors"] == 0
    modules = {t["test"].split("::")[0].rsplit(".", 1)[-1] for t in tests["skipped_tests"]}  # junit classnames
    assert modules >= {"test_model_detector", "test_model_training"}


def test_benchmarks_report_fp32_only_on_the_cpu(report):
    data = report[0]
    model = data["bench_model"]
    assert [run["precision"] for run in model["runs"]] == ["fp32"] and "not run" in model["fp16"]
    run = model["runs"][0]
    assert run["device_type"] == "cpu" and run["forward_ms"] > 0 and run["peak_memory_mib"] > 0
    assert {"voxelize", "sparse_encoder", "image_backbone_neck", "aqr", "decoder", "decode"} <= set(run["stages_ms"])
    aqr = data["bench_aqr"]["runs"]
    assert [r["queries"] for r in aqr] == [100]  # quick: the tiny config's own query count
    assert aqr[0]["gathered_attention_ms"] > 0 and aqr[0]["keys_per_query"] > 0
    assert data["bench_model"]["peak_rss_mib"] > 0


def test_agreement_of_the_rig_model_on_the_cpu(report):
    agreement = report[0]["agreement"]
    assert agreement["config"] == "aqr_cmt_rig_small" and agreement["checkpoint"].endswith(".safetensors")
    assert agreement["fp16_vs_fp32"] == {"run": False, "reason": "fp16 runs under CUDA autocast only; not run on cpu"}
    assert "device_vs_cpu_fp32" not in agreement
    repeat = agreement["fp32_repeat"]  # the CPU forward is deterministic
    assert repeat["reference_detections"] > 0 and repeat["matched"] == repeat["reference_detections"]
    assert repeat["missing"] == repeat["threshold_flips"] == 0
    assert repeat["centre_diff_m"]["max"] == repeat["score_diff"]["max"] == repeat["yaw_diff_rad"]["max"] == 0.0
    assert repeat["top_k_same_set"] and repeat["top_k_same_order"] and len(repeat["reference_top_k"]) == 10
    assert repeat["lidar_weight_diff_max"] == repeat["camera_weight_diff_max"] == repeat["bev_map_diff_max"] == 0.0


def _detections(scores, queries, labels, boxes) -> Detections:
    return Detections(boxes=torch.tensor(boxes, dtype=torch.float32), scores=torch.tensor(scores),
                      labels=torch.tensor(labels), query_index=torch.tensor(queries),
                      lidar_weights=torch.full((8,), 0.5), camera_weights=torch.full((8,), 0.5),
                      bev_weight_map=torch.zeros(4, 4), camera_weight_map=torch.zeros(6, 2, 2),
                      class_names=("car", "pedestrian"))


def test_compare_detections_pairs_by_query_and_class():
    box = [1.0, 2.0, -1.0, 4.0, 2.0, 1.5, 3.1, 0.0, 0.0]
    ref = _detections([0.9, 0.8, 0.5, 0.35, 0.1], [3, 1, 5, 7, 2], [0, 1, 0, 0, 1], [box] * 5)
    moved = [b + d for b, d in zip(box, [0.3, 0.4, 0, 0, 0, 0.2, -6.2, 0, 0])]  # 0.5 m in x/y, 0.1 m centre z
    other = _detections([0.8, 0.85, 0.2, 0.05], [1, 3, 5, 9], [1, 0, 0, 1], [box, moved, box, box])
    other = dataclasses.replace(other, lidar_weights=other.lidar_weights + 0.25)
    got = gpu_check.compare_detections(ref, other, score_threshold=0.3, top_k=2)
    # Above 0.3 in the reference: (3, car), (1, ped), (5, car), (7, car); (7, car) is missing from the other.
    assert (got["reference_detections"], got["other_detections"], got["matched"], got["missing"]) == (4, 2, 3, 1)
    assert got["threshold_flips"] == 1  # (5, car): 0.5 -> 0.2
    assert got["centre_diff_m"]["max"] == pytest.approx((0.3 ** 2 + 0.4 ** 2 + 0.1 ** 2) ** 0.5, abs=1e-6)
    assert got["score_diff"]["max"] == pytest.approx(0.3) and got["score_diff"]["mean"] == pytest.approx(0.35 / 3)
    assert got["yaw_diff_rad"]["max"] == pytest.approx(2 * math.pi - 6.2, abs=1e-5)  # wrapped
    assert got["top_k_same_set"] and not got["top_k_same_order"]  # [(3, car), (1, ped)] vs [(1, ped), (3, car)]
    assert got["lidar_weight_diff_max"] == pytest.approx(0.25) and got["camera_weight_diff_max"] == 0.0


def test_cuda_requested_without_cuda_skips_every_step(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "aqr_ros.tools.gpu_check", "--device", "cuda", "--out", str(tmp_path)],
                          cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPO_ROOT), CUDA_VISIBLE_DEVICES=""))
    assert proc.returncode == 1
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert not data["ok"] and "CUDA is not available" in data["error"]
    assert all(step["status"] == "skipped" for step in data["steps"].values())
    assert "[skipped] tests: CUDA is not available" in proc.stdout


def test_a_missing_package_is_named(monkeypatch):
    monkeypatch.setitem(gpu_check.PACKAGES, "aqr_no_such_module", "aqr-no-such-dist")
    env = gpu_check.environment()
    assert env["packages"]["aqr_no_such_module"] is None
    assert env["missing"] == {"aqr_no_such_module": "aqr-no-such-dist"}
