"""Start-up failures of the real node process: a clear fatal message naming the parameter, exit code != 0."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO_ROOT, ros_domain
from node_harness import TINY_CONFIG, node_command, start_node, stop_node

pytestmark = pytest.mark.ros

DOMAIN_ID = ros_domain(__name__)
RIG_WEIGHTS = REPO_ROOT / "models" / "weights" / "aqr_cmt_rig_small.safetensors"


def run_node(params, timeout=120):
    """Start the node with ``params`` and return (exit code, output) once it exits."""
    log = start_node(node_command("", {"model.config": str(TINY_CONFIG), **params}, {}), DOMAIN_ID)
    try:
        code = log.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    stop_node(log)
    return code, log.text()


def test_missing_checkpoint_is_fatal_and_names_parameter_and_path(tmp_path):
    path = tmp_path / "nowhere" / "model.pth"
    code, out = run_node({"model.checkpoint": str(path), "model.device": "cpu"})
    assert code == 1, out
    assert "FATAL" in out and "'model.checkpoint'" in out and str(path) in out


def test_corrupt_checkpoint_is_fatal_and_names_parameter_and_path(tmp_path):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"this is not a checkpoint" * 100)
    code, out = run_node({"model.checkpoint": str(path), "model.device": "cpu"})
    assert code == 1, out
    assert "'model.checkpoint'" in out and str(path) in out


@pytest.mark.parametrize("params, name", [
    ({"score_threshold": 1.5}, "score_threshold"),
    ({"model.device": "tpu"}, "model.device"),
    ({"model.config": "no_such_model"}, "model.config"),
    ({"sync.camera_offsets": "[0.0, 0.1]"}, "sync.camera_offsets"),
])
def test_invalid_parameters_are_fatal_and_named(params, name):
    code, out = run_node({"model.device": "cpu", **params})
    assert code == 1, out
    assert f"'{name}'" in out and "FATAL" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_cuda_device_without_cuda_is_fatal():
    code, out = run_node({"model.device": "cuda"})
    assert code == 1 and "'model.device'" in out and "CUDA is not available" in out


def test_a_checkpoint_that_carries_its_config_decides_the_model():
    # With two slips a user makes: a misspelt parameter, and fp16 on a CPU.
    params = {"model.checkpoint": str(RIG_WEIGHTS), "model.device": "cpu", "sync.max_camera_delay": 0.2,
              "model.precision": "fp16"}
    log = start_node(node_command("", params, {}), DOMAIN_ID)
    try:
        for _ in range(600):  # ready, then (nothing is published here) the warning about the silent cloud
            if "nothing received on /aqr_node/input/pointcloud" in log.text() or log.proc.poll() is not None:
                break
            time.sleep(0.1)
    finally:
        stop_node(log)
    out = log.text()
    assert "ready: model aqr_cmt_rig_small (carried by the checkpoint)" in out, out
    assert "camera-map post-processing on (the fix)" in out
    assert "weights aqr_cmt_rig_small.safetensors (sha256 " in out  # which weights run, in the ready line
    assert ("parameter 'sync.max_camera_delay' is not a parameter of this node and is ignored (did you mean "
            "'sync.max_camera_lidar_delay'?)") in out
    assert "model.precision fp16 needs CUDA: running fp32 on cpu" in out and "(fp32, " in out
    assert "nothing received on /aqr_node/input/pointcloud for " in out and "remapped onto this input?" in out


def test_a_config_that_contradicts_the_checkpoint_is_fatal_and_says_how():
    code, out = run_node({"model.checkpoint": str(RIG_WEIGHTS), "model.device": "cpu"})  # with the tiny config
    assert code == 1, out
    assert "FATAL" in out and "'model.config'" in out and "carries model config 'aqr_cmt_rig_small'" in out
    assert "head.num_query: checkpoint 200, config 100" in out


def test_ctrl_c_while_the_model_loads_is_a_clean_stop():
    # The full-size default model with random weights and a warm-up: seconds of start-up to interrupt.
    log = start_node(node_command("", {"model.device": "cpu", "model.warmup_iters": 2}, {}), DOMAIN_ID)
    try:
        for _ in range(600):
            if "loading model" in log.text() or log.proc.poll() is not None:
                break
            time.sleep(0.1)
        os.killpg(log.proc.pid, signal.SIGINT)
        code = log.proc.wait(timeout=60)
    finally:
        stop_node(log)
    out = log.text()
    assert code == 0 and "interrupted during start-up" in out, out
    assert "Traceback" not in out and "ready:" not in out


def test_an_empty_checkpoint_is_fatal_unless_random_weights_are_allowed():
    code, out = run_node({"model.device": "cpu", "model.allow_random_weights": "false"})
    assert code == 1, out
    assert "FATAL" in out and "'model.checkpoint': empty, so the model would run on RANDOM weights" in out
    assert "model.allow_random_weights" in out and "loading model" not in out


def test_help_lists_parameters_and_topics_without_building_the_model():
    from aqr_ros.ros.params import SPECS

    proc = subprocess.run([sys.executable, "-m", "aqr_ros.ros.node", "--help"], capture_output=True, text=True,
                          timeout=60, cwd=str(REPO_ROOT))
    assert proc.returncode == 0, proc.stderr
    assert all(f"  {spec.name} (default " in proc.stdout for spec in SPECS)
    assert "~/input/pointcloud" in proc.stdout and "~/output/detections" in proc.stdout
    assert "loading model" not in proc.stdout + proc.stderr
