"""The whole AqrCmt at the real configuration on CPU: checkpoint loading and full forward passes.

Random weights (seeded) on synthetic-rig frames: the checks are the output contract, determinism, the
weight-map clamp with and without the camera-map fix, absent cameras and an empty LiDAR sweep.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from aqr_ros.model import AqrCmt, load_config
from aqr_ros.model.checkpoint import CheckpointError, export_safetensors, read_checkpoint
from aqr_ros.tools import checkpoint as checkpoint_tool
from aqr_ros.tools.rig_inputs import rig_model_input
from aqr_ros.tools.synthetic_rig import SyntheticRig
from checkpoint_factory import load_manifest, write_synthetic_checkpoint

CONFIG = "cmt_aqr_voxel0100_r50_800x320"


@pytest.fixture(scope="module")
def model() -> AqrCmt:
    torch.manual_seed(0)
    return AqrCmt.from_checkpoint(None, config=CONFIG)


@pytest.fixture(scope="module")
def frame():
    return rig_model_input(SyntheticRig(seed=3), load_config(CONFIG), frame_index=10)


@pytest.fixture(scope="module")
def detections(model, frame):
    return model.infer(frame.points, frame.images, frame.lidar2img, frame.camera_valid)


def test_state_dict_is_the_checkpoint_manifest(model):
    manifest = load_manifest()
    assert model.expected_shapes() == manifest
    assert len(manifest) == 708


def test_loads_an_mmdet3d_checkpoint_strictly(tmp_path, capsys):
    path = tmp_path / "epoch_1.pth"
    written = write_synthetic_checkpoint(path, load_manifest(), seed=5, spconv1=True)
    loaded = AqrCmt.from_checkpoint(path, config=CONFIG)
    state = loaded.state_dict()
    for key, value in written.items():
        if key.endswith("gaussian_kernel"):
            continue  # recomputed from sigma, never taken from the file
        if value.dim() == 5:  # written in the spconv-1 layout [kz, ky, kx, in, out]
            value = value.permute(4, 0, 1, 2, 3)
        assert torch.equal(state[key], value), key
    kernel = state["pts_bbox_head.weight_renderer.gaussian_kernel"]
    assert kernel.shape == (7, 7) and abs(float(kernel.sum()) - 1.0) < 1e-6

    assert checkpoint_tool.main(["inspect", str(path), "--config", CONFIG]) == 0
    assert "model match: yes" in capsys.readouterr().out

    exported = tmp_path / "epoch_1.safetensors"
    export_safetensors(read_checkpoint(path), exported, load_config(CONFIG))
    again = AqrCmt.from_checkpoint(exported, config=CONFIG).state_dict()
    assert all(torch.equal(again[k], v) for k, v in state.items())


def test_a_checkpoint_that_carries_its_config_decides_the_model(tmp_path):
    """Exported under the bug-reproducing config, the file builds that model on its own and refuses the fix."""
    src, exported = tmp_path / "epoch_1.pth", tmp_path / "original.safetensors"
    write_synthetic_checkpoint(src, load_manifest())
    original = load_config(CONFIG + "_original")
    export_safetensors(read_checkpoint(src), exported, original)
    assert AqrCmt.from_checkpoint(exported).config == original
    assert not AqrCmt.from_checkpoint(exported, config=original).config.aqr.postprocess_perspective
    with pytest.raises(CheckpointError, match=r"aqr\.postprocess_perspective: checkpoint False, config True"):
        AqrCmt.from_checkpoint(exported, config=CONFIG)


def test_rejects_a_truncated_checkpoint_naming_the_keys(tmp_path):
    path = tmp_path / "truncated.pth"
    write_synthetic_checkpoint(path, load_manifest(), drop_keys=("pts_bbox_head.reference_points.weight",))
    with pytest.raises(CheckpointError, match="reference_points.weight"):
        AqrCmt.from_checkpoint(path, config=CONFIG)


def test_output_contract(detections):
    det = detections
    k = det.boxes.shape[0]
    assert det.boxes.shape == (k, 9) and 0 < k <= 300
    assert det.scores.shape == det.labels.shape == det.query_index.shape == (k,)
    assert torch.all(det.scores[:-1] >= det.scores[1:])
    assert int(det.labels.min()) >= 0 and int(det.labels.max()) < 10
    assert int(det.query_index.min()) >= 0 and int(det.query_index.max()) < 900
    assert det.lidar_weights.shape == det.camera_weights.shape == (900,)
    assert torch.all((det.lidar_weights > 0) & (det.lidar_weights < 1))
    assert det.bev_weight_map.shape == (128, 128)
    assert det.camera_weight_map.shape == (6, 20, 50)
    for t in (det.boxes, det.scores, det.lidar_weights, det.bev_weight_map, det.camera_weight_map):
        assert torch.isfinite(t).all()
    # post_center_range on (x, y, z_centre), both ends inclusive
    centre_z = det.boxes[:, 2] + det.boxes[:, 5] / 2
    assert torch.all(det.boxes[:, :2].abs() <= 61.2) and torch.all(centre_z.abs() <= 10)
    assert torch.all(det.boxes[:, 3:6] > 0)
    assert det.class_names[0] == "car" and len(det.class_names) == 10


def test_repeated_runs_are_identical(model, frame, detections):
    again = model.infer(frame.points, frame.images, frame.lidar2img, frame.camera_valid)
    for name in ("boxes", "scores", "labels", "query_index", "bev_weight_map", "camera_weight_map"):
        assert torch.equal(getattr(again, name), getattr(detections, name)), name


def test_camera_map_clamped_with_fix_and_unbounded_with_bug(model, frame, detections):
    clamp = model.config.aqr.max_weight_clamp
    assert float(detections.bev_weight_map.max()) <= clamp
    assert float(detections.camera_weight_map.max()) <= clamp

    buggy_cfg = dataclasses.replace(model.config, aqr=dataclasses.replace(model.config.aqr, postprocess_perspective=False))
    buggy = AqrCmt(buggy_cfg)
    buggy.load_state_dict(model.state_dict())
    bug = buggy.infer(frame.points, frame.images, frame.lidar2img, frame.camera_valid)
    # Invisible queries pile up on CAM_FRONT cell (0, 0): without the post-processing it exceeds the clamp.
    assert float(bug.camera_weight_map[0, 0, 0]) > clamp
    assert torch.equal(bug.bev_weight_map, detections.bev_weight_map)
    assert torch.equal(bug.lidar_weights, detections.lidar_weights)


def test_absent_cameras_get_no_weight_and_still_detect(model, frame):
    valid = np.ones(6, dtype=bool)
    valid[[1, 4]] = False
    images = frame.images.clone()
    images[[1, 4]] = float("nan")  # whatever an absent camera carries must not leak in
    det = model.infer(frame.points, images, frame.lidar2img, valid)
    assert det.boxes.shape[0] > 0 and torch.isfinite(det.boxes).all()
    assert torch.count_nonzero(det.camera_weight_map[[1, 4]]) == 0
    assert torch.count_nonzero(det.camera_weight_map[[0, 2, 3, 5]]) > 0


def test_empty_lidar_sweep_runs_on_cameras_alone(model, frame):
    det = model.infer(np.zeros((0, 5), np.float32), frame.images, frame.lidar2img, frame.camera_valid)
    assert det.boxes.shape[0] > 0
    assert torch.isfinite(det.boxes).all() and torch.isfinite(det.bev_weight_map).all()


def test_rejects_wrong_input_shapes(model, frame):
    with pytest.raises(ValueError, match="images"):
        model.infer(frame.points, frame.images[:5], frame.lidar2img)
    with pytest.raises(ValueError, match="lidar2img"):
        model.infer(frame.points, frame.images, frame.lidar2img[:, :3])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_and_fp16_runs(model, frame, detections):
    gpu = AqrCmt(model.config)
    gpu.load_state_dict(model.state_dict())
    gpu = gpu.to("cuda").eval()
    det = gpu.infer(frame.points, frame.images, frame.lidar2img, frame.camera_valid)
    torch.testing.assert_close(det.lidar_weights.cpu(), detections.lidar_weights, atol=2e-3, rtol=0)
    torch.testing.assert_close(det.bev_weight_map.cpu(), detections.bev_weight_map, atol=2e-3, rtol=0)
    half = gpu.infer(frame.points, frame.images, frame.lidar2img, frame.camera_valid, fp16=True)
    assert torch.isfinite(half.boxes).all() and half.boxes.shape[0] > 0
