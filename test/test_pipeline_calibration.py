"""Calibration maths: training resize/crop for any resolution, intrinsics, lidar2img, axis conventions."""

import dataclasses

import cv2
import numpy as np
import pytest

from aqr_ros.model.config import ImageConfig
from aqr_ros.pipeline.calibration import (
    ImageTransform,
    axes_to_model,
    lidar2img,
    model_intrinsics,
    points_to_model,
    validate_intrinsics,
)

CFG = ImageConfig()
# docs/golden.md §B: CAM_FRONT intrinsics.
K_FRONT = np.array([[1266.417, 0.0, 816.267], [0.0, 1266.417, 491.507], [0.0, 0.0, 1.0]])
# Optical frame (z forward, x right, y down) <- REP-103 LiDAR frame (x forward, y left, z up), lens 1.5 m ahead.
T_OPTICAL_ROS = np.array([
    [0.0, -1.0, 0.0, 0.0],
    [0.0, 0.0, -1.0, 0.0],
    [1.0, 0.0, 0.0, -1.5],
    [0.0, 0.0, 0.0, 1.0],
])


def test_golden_front_camera_transform_and_intrinsics():
    tf = ImageTransform.from_image_size(900, 1600, CFG)
    assert tf.resize == 0.5
    assert tf.resize_dims == (800, 450)
    assert tf.crop == (0, 130, 800, 450)
    K4 = model_intrinsics(K_FRONT, tf)
    assert K4.shape == (4, 4) and K4.dtype == np.float64
    np.testing.assert_allclose([K4[0, 0], K4[1, 1], K4[0, 2], K4[1, 2]],
                               [633.2085, 633.2085, 408.1335, 115.7535], atol=1e-9)
    np.testing.assert_array_equal(K4[2:], [[0, 0, 1, 0], [0, 0, 0, 1]])


@pytest.mark.parametrize(("size", "resize", "dims", "crop"), [
    ((900, 1600), 0.5, (800, 450), (0, 130, 800, 450)),
    ((1080, 1920), 800 / 1920, (800, 450), (0, 130, 800, 450)),
    ((720, 1280), 0.625, (800, 450), (0, 130, 800, 450)),
    ((1200, 1920), 800 / 1920, (800, 500), (0, 180, 800, 500)),
    ((480, 640), 1.25, (800, 600), (0, 280, 800, 600)),
    ((600, 600), 800 / 600, (800, 800), (0, 480, 800, 800)),
    ((1280, 720), 800 / 720, (800, 1422), (0, 1102, 800, 1422)),
    ((300, 2000), 320 / 300, (2133, 320), (666, 0, 1466, 320)),
])
def test_transform_for_other_resolutions(size, resize, dims, crop):
    tf = ImageTransform.from_image_size(*size, CFG)
    assert tf.resize == pytest.approx(resize)
    assert tf.resize_dims == dims
    assert tf.crop == crop
    assert tf.out_size == CFG.input_size


def test_bottom_crop_fraction_uses_its_mean():
    cfg = dataclasses.replace(CFG, bot_pct_lim=(0.0, 0.22))
    tf = ImageTransform.from_image_size(900, 1600, cfg)
    assert tf.crop == (0, int(0.89 * 450) - 320, 800, int(0.89 * 450))


def test_transform_rejects_empty_image():
    with pytest.raises(ValueError):
        ImageTransform.from_image_size(0, 1600, CFG)


def test_rep103_axes_rotate_forward_to_model_y():
    T = axes_to_model("rep103")
    np.testing.assert_allclose(T[:3, :3] @ [1, 0, 0], [0, 1, 0])   # forward -> model +y
    np.testing.assert_allclose(T[:3, :3] @ [0, 1, 0], [-1, 0, 0])  # left -> model -x (x is right)
    np.testing.assert_allclose(T[:3, :3] @ [0, 0, 1], [0, 0, 1])
    assert np.linalg.det(T) == pytest.approx(1.0)
    np.testing.assert_array_equal(axes_to_model("nuscenes_lidar_top"), np.eye(4))
    with pytest.raises(ValueError, match="rep103"):
        axes_to_model("enu")


def test_points_to_model_rotates_xyz_only():
    pts = np.array([[10.0, 2.0, -1.0, 42.0, 0.05]], dtype=np.float32)
    out = points_to_model(pts, "rep103")
    np.testing.assert_allclose(out, [[-2.0, 10.0, -1.0, 42.0, 0.05]], rtol=1e-6)
    assert out.dtype == np.float32 and pts[0, 0] == 10.0


@pytest.mark.parametrize("convention", ["rep103", "nuscenes_lidar_top"])
def test_lidar2img_in_model_frame_matches_projection_in_input_frame(convention):
    K4 = model_intrinsics(K_FRONT, ImageTransform.from_image_size(900, 1600, CFG))
    P = lidar2img(K4, T_OPTICAL_ROS, convention)
    assert P.dtype == np.float64
    rng = np.random.default_rng(0)
    p_in = np.c_[rng.uniform(-20, 20, (50, 3)), np.ones(50)]
    p_model = p_in @ axes_to_model(convention).T
    np.testing.assert_allclose(p_model @ P.T, p_in @ (K4 @ T_OPTICAL_ROS).T, rtol=1e-12, atol=1e-9)


def test_point_ahead_projects_to_principal_point():
    K4 = model_intrinsics(K_FRONT, ImageTransform.from_image_size(900, 1600, CFG))
    P = lidar2img(K4, T_OPTICAL_ROS, "rep103")
    p = P @ np.r_[axes_to_model("rep103")[:3, :3] @ [30.0, 0.0, 0.0], 1.0]
    assert p[2] == pytest.approx(28.5)
    np.testing.assert_allclose(p[:2] / p[2], [408.1335, 115.7535])


@pytest.mark.parametrize("size", [(1080, 1920), (720, 1280), (900, 1600)])
def test_projected_point_lands_on_the_same_scene_point_after_resize_and_crop(size):
    height, width = size
    K = np.array([[0.8 * width, 0.0, width / 2 + 13.0], [0.0, 0.8 * width, height / 2 - 7.0], [0.0, 0.0, 1.0]])
    tf = ImageTransform.from_image_size(height, width, CFG)
    P = lidar2img(model_intrinsics(K, tf), T_OPTICAL_ROS, "rep103")
    point_ros = np.array([25.0, 4.0, 1.0])
    # Where the point appears in the original image, then a bright blob there.
    cam = T_OPTICAL_ROS @ np.r_[point_ros, 1.0]
    u, v = (K @ cam[:3])[:2] / cam[2]
    image = np.zeros((height, width), dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    image[(np.abs(xx - u) <= 6) & (np.abs(yy - v) <= 6)] = 255
    x0, y0, x1, y1 = tf.crop
    model_image = cv2.resize(image, tf.resize_dims)[y0:y1, x0:x1].astype(np.float64)
    rows, cols = np.mgrid[: model_image.shape[0], : model_image.shape[1]]
    blob = np.array([(cols * model_image).sum(), (rows * model_image).sum()]) / model_image.sum()
    projected = P @ np.r_[axes_to_model("rep103")[:3, :3] @ point_ros, 1.0]
    np.testing.assert_allclose(projected[:2] / projected[2], blob, atol=1.0)
    np.testing.assert_allclose(tf.pixel_matrix() @ [u, v, 1.0], np.r_[projected[:2] / projected[2], 1.0])


@pytest.mark.parametrize(("K", "fragment"), [
    (np.zeros((3, 3)), "zeros"),
    (np.array([[np.nan, 0, 1], [0, 1, 1], [0, 0, 1]]), "non-finite"),
    (np.array([[-5.0, 0, 1], [0, 5, 1], [0, 0, 1]]), "positive"),
    (np.array([[5.0, 0, 1], [0, 0, 1], [0, 0, 1]]), "positive"),
    (np.array([[5.0, 0, 1], [0, 5, 1], [0, 0, 0]]), "last row"),
    (np.ones(6), "6 values"),
])
def test_validate_intrinsics_names_the_problem(K, fragment):
    reason = validate_intrinsics(K)
    assert reason is not None and fragment in reason


def test_validate_intrinsics_accepts_a_real_camera():
    assert validate_intrinsics(K_FRONT) is None
    assert validate_intrinsics(K_FRONT.reshape(-1)) is None
    assert validate_intrinsics(K_FRONT, (900, 1600)) is None


@pytest.mark.parametrize(("change", "fragment"), [
    ((0, 0, 1e300), "implausible focal lengths"),
    ((1, 1, 10.0), "implausible focal lengths"),
    ((0, 2, 1e5), "implausible principal point"),
])
def test_validate_intrinsics_bounds_k_by_the_image_size(change, fragment):
    K = K_FRONT.copy()
    K[change[0], change[1]] = change[2]
    assert validate_intrinsics(K) is None  # without the size only the form is checked
    reason = validate_intrinsics(K, (900, 1600))
    assert reason is not None and fragment in reason
