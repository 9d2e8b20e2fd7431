"""Weight-map colouring, the BEV picture's orientation and footprints, and the camera overlay geometry."""

import cv2
import numpy as np
import pytest

from aqr_ros.model.config import ImageConfig
from aqr_ros.pipeline.calibration import ImageTransform
from aqr_ros.pipeline.weight_maps import CLASS_RGB, FALLBACK_RGB, bev_image, camera_overlay, class_rgb, colorize

PC_RANGE = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)


def turbo_rgb(grey: int) -> np.ndarray:
    """The RGB colour cv2's turbo map gives a grey level."""
    return cv2.applyColorMap(np.array([[grey]], dtype=np.uint8), cv2.COLORMAP_TURBO)[0, 0, ::-1]


def test_colorize_uses_a_fixed_scale_in_rgb():
    values = np.array([[0.0, 0.75, 1.5, 3.0, np.nan, -1.0]])
    rgb = colorize(values, vmax=1.5)
    assert rgb.shape == (1, 6, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 0], turbo_rgb(0))
    np.testing.assert_array_equal(rgb[0, 1], turbo_rgb(128))
    np.testing.assert_array_equal(rgb[0, 2], turbo_rgb(255))
    np.testing.assert_array_equal(rgb[0, 3], turbo_rgb(255))  # clipped, not rescaled
    np.testing.assert_array_equal(rgb[0, 4], turbo_rgb(0))
    np.testing.assert_array_equal(rgb[0, 5], turbo_rgb(0))
    # Same value, same colour, whatever else is in the frame.
    np.testing.assert_array_equal(colorize(np.array([[0.75, 0.0]]), 1.5)[0, 0], rgb[0, 1])
    with pytest.raises(ValueError):
        colorize(values, vmax=0.0)


def test_bev_image_puts_forward_up_and_right_right():
    bev = np.zeros((128, 128), dtype=np.float32)
    cell = 108.0 / 128
    # Model frame x right, y forward: a hot cell 30 m ahead and 20 m to the right.
    row, col = int((30 + 54) / cell), int((20 + 54) / cell)
    bev[row, col] = 1.5
    image = bev_image(bev, np.zeros((0, 9)), np.zeros(0), PC_RANGE, "rep103", scale=4)
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    hot = np.argwhere(np.all(image == turbo_rgb(255), axis=-1))
    assert len(hot) == 16
    np.testing.assert_array_equal(hot.min(axis=0), [(127 - row) * 4, col * 4])
    assert hot[:, 0].max() < 256 and hot[:, 1].min() > 256  # upper half (ahead), right half (right)


@pytest.mark.parametrize("convention", ["rep103", "nuscenes_lidar_top"])
def test_bev_image_draws_footprint_and_heading_tick(convention):
    bev = np.zeros((128, 128), dtype=np.float32)
    # 8 m long, 4 m wide box 30 m ahead and 20 m to the left, heading forward (model yaw = +90 deg).
    box = np.array([[-20.0, 30.0, -1.0, 8.0, 4.0, 1.5, np.pi / 2, 0.0, 0.0]])
    image = bev_image(bev, box, np.array([0]), PC_RANGE, convention, scale=4, class_names=("car",))
    drawn = np.all(image == CLASS_RGB["car"], axis=-1)  # line centres carry the class colour
    px = 512 / 108.0
    r0, c0 = (54 - 30) * px, (-20 + 54) * px
    rows, cols = np.nonzero(drawn)
    # The outline spans the footprint: 8 m tall (forward), 4 m wide on screen.
    assert rows.min() == pytest.approx(r0 - 4 * px, abs=2.0) and rows.max() == pytest.approx(r0 + 4 * px, abs=2.0)
    assert cols.min() == pytest.approx(c0 - 2 * px, abs=2.0) and cols.max() == pytest.approx(c0 + 2 * px, abs=2.0)
    # Heading tick from the centre towards the front (up), nothing drawn inside the rear half.
    assert drawn[int(r0 - 2 * px), int(round(c0))]
    assert not drawn[int(r0 + 2 * px), int(round(c0))]
    assert not drawn[:256, 256:].any() and not drawn[256:].any()
    assert not np.any(image != turbo_rgb(0), axis=-1)[256:].any()


def test_bev_image_rejects_unknown_convention_and_label_mismatch():
    with pytest.raises(ValueError):
        bev_image(np.zeros((4, 4)), np.zeros((0, 9)), np.zeros(0), PC_RANGE, "enu")
    with pytest.raises(ValueError, match="labels"):
        bev_image(np.zeros((4, 4)), np.zeros((2, 9)), np.zeros(1), PC_RANGE, "rep103")


@pytest.mark.parametrize("size", [(900, 1600), (720, 1280)])
def test_camera_overlay_lands_cells_on_their_source_pixels(size):
    height, width = size
    tf = ImageTransform.from_image_size(height, width, ImageConfig())
    image = np.full((height, width, 3), (10, 20, 30), dtype=np.uint8)  # BGR
    cam_map = np.zeros((20, 50), dtype=np.float32)
    cam_map[2, 10] = 1.0
    out = camera_overlay(image, cam_map, tf, vmax=1.0, alpha=0.5)
    assert out.shape == (height, width, 3) and out.dtype == np.uint8
    rgb = np.array([30, 20, 10])
    # Cell (2, 10) is model pixels rows 32..47, cols 160..175; in the source: / resize after adding the crop.
    top, bottom = (32 + tf.crop[1]) / tf.resize, (48 + tf.crop[1]) / tf.resize
    left, right = 160 / tf.resize, 176 / tf.resize
    expected_hot = np.round(0.5 * rgb + 0.5 * turbo_rgb(255))
    expected_cold = np.round(0.5 * rgb + 0.5 * turbo_rgb(0))
    np.testing.assert_allclose(out[int((top + bottom) / 2), int((left + right) / 2)], expected_hot, atol=1)
    np.testing.assert_allclose(out[int(top) - 2, int(left) + 3], expected_cold, atol=1)
    np.testing.assert_allclose(out[int(bottom) + 2, int(left) + 3], expected_cold, atol=1)
    hot_rows = np.nonzero(np.all(np.abs(out[:, int((left + right) / 2)] - expected_hot) <= 1, axis=-1))[0]
    assert hot_rows.min() == pytest.approx(top, abs=1.5) and hot_rows.max() == pytest.approx(bottom, abs=1.5)
    # Rows above the crop were never seen by the model: untouched.
    first_seen = tf.crop[1] / tf.resize
    np.testing.assert_array_equal(out[: int(first_seen) - 1], np.broadcast_to(rgb, out[: int(first_seen) - 1].shape))
    assert np.all(out[int(first_seen) + 1:] != rgb)


def test_camera_overlay_checks_the_transform_size():
    tf = ImageTransform.from_image_size(900, 1600, ImageConfig())
    with pytest.raises(ValueError):
        camera_overlay(np.zeros((720, 1280, 3), dtype=np.uint8), np.zeros((20, 50)), tf, vmax=1.0)


def test_class_colours_by_name_with_a_fallback_by_label():
    assert class_rgb("pedestrian", 0) == (0, 0, 230)
    assert class_rgb("forklift", 5) == FALLBACK_RGB[1]
