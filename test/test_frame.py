"""Frame assembly (ROS-free): projection matrices, validity masks, sweeps and detections back to ROS axes."""

import numpy as np
import pytest
import torch

from aqr_ros.model.config import load_config
from aqr_ros.pipeline.calibration import axes_to_model
from aqr_ros.pipeline.frame import CameraCalibration, FrameAssembler, calibration_issue
from conftest import TINY_CONFIG

K_NUSC = np.array([[1266.4, 0.0, 816.3], [0.0, 1266.4, 491.5], [0.0, 0.0, 1.0]])

#: Optical frame of a forward camera <- REP-103 LiDAR frame (z forward = lidar x, x right = -lidar y), 1.5 m ahead.
T_FRONT = np.array([[0.0, -1.0, 0.0, 0.0],
                    [0.0, 0.0, -1.0, 0.0],
                    [1.0, 0.0, 0.0, -1.5],
                    [0.0, 0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def config():
    return load_config("cmt_aqr_voxel0100_r50_800x320")


def calib(size=(900, 1600), K=K_NUSC):
    return CameraCalibration(K=K, size=size, T_cam_lidar=T_FRONT)


def project(l2i, point_ros, axes):
    p_model = axes_to_model(axes) @ np.append(point_ros, 1.0)
    uvw = l2i @ p_model
    return uvw[:2] / uvw[2], uvw[2]


@pytest.mark.parametrize("axes", ["rep103", "nuscenes_lidar_top"])
def test_lidar2img_maps_model_points_to_resized_cropped_pixels(config, axes):
    asm = FrameAssembler(config, axes)
    l2i = asm.lidar2img(calib())
    # A point 11.5 m ahead on the optical axis lands on the principal point: (cx/2, cy/2 - 130) after 0.5x + crop.
    uv, depth = project(l2i, np.array([11.5, 0.0, 0.0]), axes)
    np.testing.assert_allclose(uv, [816.3 / 2, 491.5 / 2 - 130.0], atol=1e-9)
    assert depth == pytest.approx(10.0)
    # A point to the left (REP-103 +y) appears left of the centre.
    uv_left, _ = project(l2i, np.array([11.5, 2.0, 0.0]), axes)
    assert uv_left[0] == pytest.approx(816.3 / 2 - 0.5 * 1266.4 * 2.0 / 10.0)


def test_lidar2img_handles_other_resolutions(config):
    asm = FrameAssembler(config, "rep103")
    K = np.array([[1000.0, 0, 960.0], [0, 1000.0, 600.0], [0, 0, 1]])
    l2i = asm.lidar2img(calib(size=(1200, 1920), K=K))
    uv, _ = project(l2i, np.array([11.5, 0.0, 0.0]), "rep103")
    t = asm.preprocessor.transform_for(1200, 1920)
    np.testing.assert_allclose(uv, [960.0 * t.resize - t.crop[0], 600.0 * t.resize - t.crop[1]], atol=1e-9)


def test_calibration_issue_reasons():
    img = np.zeros((900, 1600, 3), np.uint8)
    assert calibration_issue(img, calib()) is None
    assert "no calibration" in calibration_issue(img, None)
    assert "all zeros" in calibration_issue(img, calib(K=np.zeros((3, 3))))
    assert "1600x900 but camera_info says 800x450" in calibration_issue(img, calib(size=(450, 800)))


def test_assemble_masks_views_and_accumulates_sweeps():
    cfg = load_config(TINY_CONFIG)
    asm = FrameAssembler(cfg, "rep103", intensity_scale=255.0)
    odom_t0 = np.eye(4)
    odom_t1 = np.eye(4)
    odom_t1[0, 3] = 2.0  # the LiDAR drove 2 m forward between the sweeps
    asm.push_cloud(np.array([[10.0, 0.0, 0.0, 0.5]], np.float32), 100.0, odom_t0)
    asm.push_cloud(np.array([[5.0, 1.0, 0.0, 1.0], [6.0, 0.0, 0.0, 2.0]], np.float32), 100.05, odom_t1)
    h, w = 900, 1600
    bright = np.full((h, w, 3), 200, np.uint8)
    images = [bright, None, bright, bright, bright, bright]
    calibs = [calib(), calib(), calib(size=(450, 800)), calib(K=np.zeros((3, 3))), None, calib()]
    out = asm.assemble(images, calibs)
    assert out.camera_valid.tolist() == [True, False, False, False, False, True]
    assert out.camera_issues[1] is None and "camera_info says" in out.camera_issues[2]
    assert "zeros" in out.camera_issues[3] and "no calibration" in out.camera_issues[4]
    assert out.images.shape == (6, 3, 128, 320) and out.images.dtype == torch.float32
    assert torch.all(out.images[1] == 0) and torch.all(out.images[3] == 0)
    assert torch.allclose(out.images[0, 0], torch.tensor((200 - 103.53) / 57.375), atol=1e-5)
    assert out.lidar2img.shape == (6, 4, 4)
    assert torch.equal(out.lidar2img[1], torch.eye(4))
    np.testing.assert_allclose(out.lidar2img[0].numpy(), asm.lidar2img(calibs[0]), rtol=1e-6)
    assert out.num_points == 3 and out.num_sweeps == 1 and out.num_uncompensated == 0
    pts = out.points.numpy()
    # Key frame first, in model axes (x right = -y_ros, y forward = x_ros), intensity scaled and clipped.
    np.testing.assert_allclose(pts[0], [-1.0, 5.0, 0.0, 255.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(pts[1], [0.0, 6.0, 0.0, 255.0, 0.0], atol=1e-6)
    # The old sweep's point (10 m ahead at t0) is 8 m ahead of the LiDAR at t1, 0.05 s older.
    np.testing.assert_allclose(pts[2], [0.0, 8.0, 0.0, 127.5, 0.05], atol=1e-5)


def test_assemble_without_poses_counts_uncompensated_sweeps():
    asm = FrameAssembler(load_config(TINY_CONFIG), "rep103")
    asm.push_cloud(np.ones((4, 4), np.float32), 1.0, None)
    asm.push_cloud(np.ones((2, 4), np.float32), 1.1, None)
    out = asm.assemble([None] * 6, [None] * 6)
    assert out.num_uncompensated == 1 and out.num_points == 6
    assert not out.camera_valid.any()
    asm.reset()
    assert asm.assemble([None] * 6, [None] * 6).num_points == 0


def test_sweeps_older_than_the_lag_cap_are_left_out():
    """A 10 Hz LiDAR with 10 sweeps would reach 0.9 s back; the cap keeps what the model saw in training."""
    asm = FrameAssembler(load_config(TINY_CONFIG), "rep103", max_sweep_lag_s=0.55)
    for k in range(8):
        asm.push_cloud(np.full((1, 4), k, np.float32), 1.0 + 0.1 * k, None)
    out = asm.assemble([None] * 6, [None] * 6)
    assert out.num_sweeps == 5 and out.num_points == 6  # the key cloud and the 5 within 0.5 s
    assert float(out.points[:, 4].max()) == pytest.approx(0.5)


def test_detections_selected_and_converted_to_ros_axes():
    from aqr_ros.model.detector import Detections

    asm = FrameAssembler(load_config(TINY_CONFIG), "rep103")
    boxes = torch.tensor([
        [0.0, 10.0, -1.0, 4.0, 2.0, 1.5, np.pi / 2, 0.0, 3.0],  # 10 m ahead, heading forward, moving forward
        [5.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0],
        [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0],
    ])
    det = Detections(
        boxes=boxes, scores=torch.tensor([0.9, 0.2, 0.5]), labels=torch.tensor([0, 8, 1]),
        query_index=torch.tensor([7, 3, 42]),
        lidar_weights=torch.linspace(0, 1, 100), camera_weights=torch.linspace(1, 0, 100),
        bev_weight_map=torch.rand(32, 32), camera_weight_map=torch.rand(6, 8, 20),
        class_names=("car", "truck") + ("x",) * 6 + ("pedestrian", "cone"),
    )
    frame = asm.detections(det, score_threshold=0.3, max_count=10)
    assert len(frame) == 2 and frame.names == ["car", "truck"]
    np.testing.assert_array_equal(frame.query_index, [7, 42])
    np.testing.assert_allclose(frame.lidar_weight, [7 / 99, 42 / 99], rtol=1e-5)
    np.testing.assert_allclose(frame.camera_weight, [1 - 7 / 99, 1 - 42 / 99], rtol=1e-5)
    # Model (x right, y forward) -> REP-103 (x forward, y left); geometric centre = bottom + dz / 2.
    np.testing.assert_allclose(frame.boxes.center[0], [10.0, 0.0, -0.25], atol=1e-9)
    assert frame.boxes.yaw[0] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(frame.boxes.velocity[0], [3.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(frame.boxes.size[0], [4.0, 2.0, 1.5])
    assert len(asm.detections(det, 0.3, max_count=1)) == 1
    bev = asm.bev_picture(det.bev_weight_map.numpy(), frame)
    assert bev.dtype == np.uint8 and bev.ndim == 3 and bev.shape[2] == 3
    img = np.zeros((900, 1600, 3), np.uint8)
    overlay = asm.camera_picture(img, det.camera_weight_map[0].numpy(), alpha=0.5)
    assert overlay.shape == (900, 1600, 3) and overlay.any()


def test_lidar2img_matches_the_synthetic_rig_ground_truth(config):
    from aqr_ros.tools.synthetic_rig import Rig

    rig = Rig.nuscenes_like()
    asm = FrameAssembler(config, "rep103")
    rng = np.random.default_rng(0)
    points_ros = np.c_[rng.uniform(-30, 30, (200, 3)), np.ones(200)]
    for i in range(6):
        info = rig.camera_info(i)
        l2i = asm.lidar2img(CameraCalibration(K=info.K, size=(info.height, info.width), T_cam_lidar=rig.T_cam_lidar(i)))
        model_uvw = (l2i @ (axes_to_model("rep103") @ points_ros.T)).T
        truth_uvw = (rig.lidar2img(i) @ points_ros.T).T  # full-resolution pixels of the rig
        in_front = truth_uvw[:, 2] > 0.5
        np.testing.assert_allclose(model_uvw[in_front, 2], truth_uvw[in_front, 2], rtol=1e-9)
        truth_uv = truth_uvw[in_front, :2] / truth_uvw[in_front, 2:3]
        # 1600x900 -> x0.5 -> crop 130 rows from the top (docs/model.md §2.1)
        expected = truth_uv * 0.5 - np.array([0.0, 130.0])
        np.testing.assert_allclose(model_uvw[in_front, :2] / model_uvw[in_front, 2:3], expected, atol=1e-6)
