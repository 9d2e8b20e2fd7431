"""Weight-map colouring, the BEV picture's orientation, ego marker and footprints, the camera overlay geometry and
its projected boxes, and the self-explaining frame (title, colour bar, legend, unreached cells)."""

from dataclasses import replace

import cv2
import numpy as np
import pytest

from aqr_ros.model.config import ImageConfig, ModelConfig
from aqr_ros.pipeline.boxes import to_ros_boxes
from aqr_ros.pipeline.calibration import ImageTransform, lidar2img, model_intrinsics
from aqr_ros.pipeline.frame import FrameAssembler, FrameDetections
from aqr_ros.pipeline.pictures import (PANEL_RGB, UNREACHED_TEXT, LegendEntry, bar_ticks, bev_weight_picture,
                                       camera_weight_picture, framed, picture_title)
from aqr_ros.pipeline.weight_maps import (AXIS_RGB, CLASS_RGB, FALLBACK_RGB, HATCH_RGB, UNREACHED_RGB, bev_image,
                                          camera_overlay, class_rgb, colorize, draw_projected_boxes)

PC_RANGE = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)
NAMES = ("car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle", "bicycle", "pedestrian",
         "traffic_cone")
#: A weight too small for a colour step but not 0: "reached", coloured like 0 on the turbo scale.
TINY = 1e-4
#: Pinhole camera of a 1600x900 image looking along the model's +y (forward), at the LiDAR origin.
K = np.array([[1000.0, 0.0, 800.0], [0.0, 1000.0, 450.0], [0.0, 0.0, 1.0]])
T_CAM_MODEL = np.array([[1.0, 0, 0, 0], [0, 0, -1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]])


def turbo_rgb(grey: int) -> np.ndarray:
    """The RGB colour cv2's turbo map gives a grey level."""
    return cv2.applyColorMap(np.array([[grey]], dtype=np.uint8), cv2.COLORMAP_TURBO)[0, 0, ::-1]


def pixels_of(image: np.ndarray, rgb) -> np.ndarray:
    """[N, 2] (row, col) of the pixels exactly of colour ``rgb``."""
    return np.argwhere(np.all(image == np.asarray(rgb, dtype=np.uint8), axis=-1))


def camera_setup(height: int = 900, width: int = 1600) -> tuple[ImageTransform, np.ndarray]:
    """Transform and model-input lidar2img of the test camera (model-frame LiDAR, 1000 px focal length)."""
    tf = ImageTransform.from_image_size(height, width, ImageConfig())
    return tf, lidar2img(model_intrinsics(K, tf), T_CAM_MODEL, "nuscenes_lidar_top")


def find_colour_bar(picture: np.ndarray) -> tuple[int, int, int]:
    """(column, top row, bottom row) of the colour bar: among the last 160 columns the longest vertical run of
    pixels of turbo colours."""
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_TURBO)[:, 0, ::-1]
    best = (0, 0, -1)
    for col in range(picture.shape[1] - 160, picture.shape[1]):
        rows = np.flatnonzero(np.all(picture[:, col, None, :] == lut[None], axis=-1).any(axis=1))
        for run in np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1):
            if len(run) and run[-1] - run[0] > best[2] - best[1]:
                best = (col, int(run[0]), int(run[-1]))
    return best


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
    bev = np.full((128, 128), TINY, dtype=np.float32)
    cell = 108.0 / 128
    # Model frame x right, y forward: a hot cell 30 m ahead and 20 m to the right.
    row, col = int((30 + 54) / cell), int((20 + 54) / cell)
    bev[row, col] = 1.5
    image = bev_image(bev, np.zeros((0, 9)), np.zeros(0), PC_RANGE, "rep103", scale=4, ring_step_m=0)
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    hot = pixels_of(image, turbo_rgb(255))
    assert len(hot) == 16
    np.testing.assert_array_equal(hot.min(axis=0), [(127 - row) * 4, col * 4])
    assert hot[:, 0].max() < 256 and hot[:, 1].min() > 256  # upper half (ahead), right half (right)


@pytest.mark.parametrize("convention", ["rep103", "nuscenes_lidar_top"])
def test_bev_image_draws_footprint_and_heading_tick(convention):
    bev = np.full((128, 128), TINY, dtype=np.float32)
    # 8 m long, 4 m wide box 30 m ahead and 20 m to the left, heading forward (model yaw = +90 deg).
    box = np.array([[-20.0, 30.0, -1.0, 8.0, 4.0, 1.5, np.pi / 2, 0.0, 0.0]])
    image = bev_image(bev, box, np.array([0]), PC_RANGE, convention, scale=4, class_names=("car",), ring_step_m=0)
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
    # The lower half is map colour only, but for the ego marker and its y arrow (near the centre).
    lower = np.any(image != turbo_rgb(0), axis=-1)[256:]
    lower[:20, 200:320] = False
    assert not lower.any()


@pytest.mark.parametrize("background", [0, 255])
@pytest.mark.parametrize("name", ["car", "pedestrian", "traffic_cone"])
def test_box_outline_stands_out_on_white_and_on_black(background, name):
    """The class-colour line has an outline contrasting with the class colour, so a light or a dark class shows
    on a white and on a black image."""
    tf, l2i = camera_setup()
    plain = np.full((900, 1600, 3), background, dtype=np.uint8)
    box = np.array([[0.0, 15.0, -1.0, 4.0, 2.0, 1.5, np.pi / 2, 0.0, 0.0]])
    shown = draw_projected_boxes(plain, box, np.array([NAMES.index(name)]), np.array([0.9]), NAMES, l2i, tf)
    assert shown.tolist() == [True]
    colour = CLASS_RGB[name]
    assert len(pixels_of(plain, colour)) > 100
    outline = (0, 0, 0) if name == "car" else (255, 255, 255)  # orange is light; blue, dark slate are dark
    if outline[0] != background:
        assert len(pixels_of(plain, outline)) > 50
    luma = plain.astype(np.float64) @ [0.299, 0.587, 0.114]
    assert np.abs(luma - background).max() > 150  # the class colour or its outline stands out


@pytest.mark.parametrize("convention, forward_axis", [("rep103", 0), ("nuscenes_lidar_top", 1)])
def test_ego_marker_at_the_centre_with_the_forward_axis_up(convention, forward_axis):
    bev = np.full((128, 128), TINY, dtype=np.float32)
    image = bev_image(bev, np.zeros((0, 9)), np.zeros(0), PC_RANGE, convention, scale=4, ring_step_m=0)
    near = np.zeros(image.shape[:2], dtype=bool)
    near[256 - 45:256 + 45, 256 - 45:256 + 45] = True  # arrows and footprint, not the axis letters
    centre = np.array([255.5, 255.5])
    ego = pixels_of(image, (255, 255, 255))
    ego = ego[near[ego[:, 0], ego[:, 1]]]
    half_length, half_width = 2.3 * 512 / 108, 0.95 * 512 / 108
    assert len(ego) > 20
    assert np.abs(ego[:, 1] - centre[1]).max() <= half_width + 1.5
    assert ego[:, 0].max() == pytest.approx(centre[0] + half_length, abs=1.5)  # the rear of the footprint
    assert np.abs(ego - centre).max(axis=0)[0] <= half_length + 1.5
    arrows = {}
    for axis in (0, 1):
        at = pixels_of(image, AXIS_RGB[axis])
        arrows[axis] = at[near[at[:, 0], at[:, 1]]] - centre  # (down, right) offsets from the centre
    forward, side = arrows[forward_axis], arrows[1 - forward_axis]
    assert forward[:, 0].min() < -40 and np.abs(forward[:, 1]).max() < 12  # straight up, long
    lateral = -1 if convention == "rep103" else 1  # REP-103 y points left; nuScenes LIDAR_TOP x points right
    assert np.abs(side[:, 0]).max() < 12 and np.median(lateral * side[:, 1]) > 8
    assert (lateral * side[:, 1]).min() > -4


def test_bev_weight_picture_frames_the_map_with_colour_bar_title_and_legend():
    bev = np.full((128, 128), 1.5, dtype=np.float32)
    clamp = 2.5
    picture = bev_weight_picture(bev, np.zeros((0, 9)), np.zeros(0), NAMES, PC_RANGE, "rep103", clamp, stamp_s=12.5)
    panel = bev_image(bev, np.zeros((0, 9)), np.zeros(0), PC_RANGE, "rep103", vmax=clamp)
    title_h = np.flatnonzero(np.all(picture[:, 0] != PANEL_RGB, axis=-1)).min()  # first map row
    np.testing.assert_array_equal(picture[title_h:title_h + 512, :512], panel)
    # The map is coloured on the clamp's scale: 1.5 of 2.5 is grey level 153.
    np.testing.assert_array_equal(picture[title_h + 5, 5], turbo_rgb(153))
    assert picture.shape[0] == picture.shape[1]  # square, as before
    col, top, bottom = find_colour_bar(picture)
    assert col >= 512 and bottom - top > 400
    np.testing.assert_array_equal(picture[top, col], colorize(np.array([[clamp]]), clamp)[0, 0])
    np.testing.assert_array_equal(picture[bottom, col], colorize(np.array([[0.0]]), clamp)[0, 0])
    np.testing.assert_array_equal(picture[(top + bottom) // 2, col], turbo_rgb(128))
    # Tick labels: light text right of the bar at the top and the bottom of the bar.
    right_of_bar = picture[:, col + 10:]
    for row in (top, bottom):
        assert np.any(right_of_bar[max(0, row - 8):row + 8].min(axis=-1) > 200)
    # The title bar carries text; the legend strip below the map has the hatched swatch.
    assert np.any(picture[:title_h].min(axis=-1) > 200)
    assert len(pixels_of(picture[title_h + 512:], HATCH_RGB)) > 0
    assert len(pixels_of(picture[title_h + 512:], UNREACHED_RGB)) > 0


def test_small_bev_maps_are_enlarged_to_512_pixels():
    picture = bev_weight_picture(np.full((32, 32), 1.5, np.float32), np.zeros((0, 9)), np.zeros(0), NAMES, PC_RANGE,
                                 "rep103", 1.5)
    hot = pixels_of(picture, turbo_rgb(255))
    hot = hot[hot[:, 1] < 514]  # the map, not the colour bar (6 px right of it)
    assert hot[:, 1].max() - hot[:, 1].min() == 511  # 32 cells of 16 px


def test_unclamped_camera_maps_say_so_on_the_colour_bar():
    tf, _ = camera_setup()
    image = np.zeros((900, 1600, 3), dtype=np.uint8)
    cam_map = np.full((20, 50), 30.0, dtype=np.float32)  # an unclamped camera map (postprocess_perspective off)
    clamped = camera_weight_picture(image, cam_map, tf, 1.5, 0.5, "c", saturates=False)
    saturated = camera_weight_picture(image, cam_map, tf, 1.5, 0.5, "c", saturates=True)
    differs = np.flatnonzero(np.any(clamped != saturated, axis=(0, 2)))
    rows = np.flatnonzero(np.any(clamped != saturated, axis=(1, 2)))
    col, top, _ = find_colour_bar(clamped)
    assert len(differs) and differs.min() > col  # only the top tick label changes (">=1.5")
    assert np.abs(rows - top).max() < 30


def test_colour_bar_ticks_are_round_and_end_at_the_clamp():
    np.testing.assert_allclose(bar_ticks(1.5), [0.0, 0.5, 1.0, 1.5])
    np.testing.assert_allclose(bar_ticks(2.5), [0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    np.testing.assert_allclose(bar_ticks(1.0), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    with pytest.raises(ValueError):
        bar_ticks(0.0)


def test_title_names_the_map_and_the_stamp():
    assert picture_title("BEV LiDAR weight") == "BEV LiDAR weight"
    assert picture_title("BEV LiDAR weight", 1700000000.25) == "BEV LiDAR weight   t = 1700000000.250 s"


def test_unreached_cells_are_greyed_and_hatched_on_the_bev_map():
    bev = np.full((128, 128), 0.75, dtype=np.float32)
    bev[:, :64] = 0.0  # the left half (model x < 0) is reached by no query
    image = bev_image(bev, np.zeros((0, 9)), np.zeros(0), PC_RANGE, "rep103", ring_step_m=0)
    left, right = image[:, :200], image[:, 312:]  # away from the ego marker
    assert len(pixels_of(left, HATCH_RGB)) > 0.1 * left.shape[0] * left.shape[1]
    assert len(pixels_of(left, UNREACHED_RGB)) > 0.5 * left.shape[0] * left.shape[1]
    assert len(pixels_of(right, HATCH_RGB)) == 0 and len(pixels_of(right, UNREACHED_RGB)) == 0
    assert len(pixels_of(right, turbo_rgb(128))) == right.shape[0] * right.shape[1]


def test_unreached_cells_are_greyed_and_hatched_on_the_camera_overlay():
    tf, _ = camera_setup()
    image = np.full((900, 1600, 3), (10, 20, 30), dtype=np.uint8)  # BGR
    cam_map = np.full((20, 50), 0.5, dtype=np.float32)
    cam_map[:, :10] = 0.0  # the left fifth of the model input: model columns 0..159, source columns 0..319
    out = camera_overlay(image, cam_map, tf, vmax=1.0, alpha=0.5)
    seen_rows = slice(int(tf.crop[1] / tf.resize) + 2, 900)
    unreached, reached = out[seen_rows, :318], out[seen_rows, 322:]
    grey = np.round(0.5 * np.array([30, 20, 10]) + 0.5 * np.array(UNREACHED_RGB))
    hatched = pixels_of(unreached, HATCH_RGB)
    assert 0.1 < len(hatched) / (unreached.shape[0] * unreached.shape[1]) < 0.5
    others = ~np.all(unreached == HATCH_RGB, axis=-1)
    assert np.abs(unreached[others] - grey).max() <= 1
    assert len(pixels_of(reached, HATCH_RGB)) == 0
    # The rows the model never saw keep the image colour, hatched or not.
    assert np.all(out[:int(tf.crop[1] / tf.resize) - 1] == [30, 20, 10])


@pytest.mark.parametrize("size", [(900, 1600), (720, 1280)])
def test_camera_overlay_lands_cells_on_their_source_pixels(size):
    height, width = size
    tf = ImageTransform.from_image_size(height, width, ImageConfig())
    image = np.full((height, width, 3), (10, 20, 30), dtype=np.uint8)  # BGR
    cam_map = np.full((20, 50), TINY, dtype=np.float32)
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


def test_projected_box_lands_on_the_pixels_its_corners_project_to():
    tf, l2i = camera_setup()
    image = np.full((900, 1600, 3), 255, dtype=np.uint8)
    # A car 15 m ahead, 2 m right, heading forward; a pedestrian behind the camera is not drawn.
    boxes = np.array([[2.0, 15.0, -1.0, 4.0, 2.0, 1.5, np.pi / 2, 0.0, 0.0],
                      [0.0, -10.0, -1.0, 1.0, 1.0, 1.8, 0.0, 0.0, 0.0]])
    shown = draw_projected_boxes(image, boxes, np.array([0, 8]), np.array([0.87, 0.5]), NAMES, l2i, tf)
    assert shown.tolist() == [True, False]
    assert len(pixels_of(image, CLASS_RGB["pedestrian"])) == 0
    # Corners through K and the extrinsic alone (full-resolution pixels), independent of the resize and crop.
    x, y, z, length, width, height = boxes[0, :6]
    corners = np.array([(x + dx, y + dy, z + dz, 1.0) for dx in (-width / 2, width / 2)
                        for dy in (-length / 2, length / 2) for dz in (0.0, height)])
    uvw = (K @ (T_CAM_MODEL @ corners.T)[:3]).T
    uv = uvw[:, :2] / uvw[:, 2:3]
    car = np.all(image == CLASS_RGB["car"], axis=-1)
    for u, v in uv:
        r, c = int(round(v)), int(round(u))
        assert car[r - 2:r + 3, c - 2:c + 3].any(), f"no car outline at corner pixel ({u:.1f}, {v:.1f})"
    rows, cols = np.nonzero(car)
    # Everything drawn in car colour lies within the projected corners' hull (plus line width), and the label
    # ("car 0.87" on a car-coloured field) sits at its top-left.
    assert cols.min() >= uv[:, 0].min() - 4 and cols.max() <= uv[:, 0].max() + 4
    assert rows.max() <= uv[:, 1].max() + 4
    label_field = car[int(uv[:, 1].min()) - 25:int(uv[:, 1].min()), int(uv[:, 0].min()):int(uv[:, 0].min()) + 40]
    assert label_field.mean() > 0.5


def test_framed_camera_picture_keeps_the_camera_size_and_labels_what_is_drawn():
    tf, l2i = camera_setup()
    image = np.full((900, 1600, 3), 128, dtype=np.uint8)
    cam_map = np.full((20, 50), 0.5, dtype=np.float32)
    boxes = np.array([[2.0, 15.0, -1.0, 4.0, 2.0, 1.5, np.pi / 2, 0.0, 0.0]])
    picture = camera_weight_picture(image, cam_map, tf, 1.5, 0.5, "camera0 (CAM_FRONT) camera weight", 3.0,
                                    boxes_model=boxes, labels=np.array([0]), scores=np.array([0.9]),
                                    class_names=NAMES, lidar2img=l2i)
    assert picture.shape == (900, 1600, 3)
    col, top, bottom = find_colour_bar(picture)
    np.testing.assert_array_equal(picture[top, col], turbo_rgb(255))
    np.testing.assert_array_equal(picture[bottom, col], turbo_rgb(0))
    legend = picture[800:]
    assert len(pixels_of(legend, HATCH_RGB)) > 0  # the "no query reaches here" swatch
    assert len(pixels_of(legend, CLASS_RGB["car"])) > 50  # the car swatch: a car is in view
    with pytest.raises(ValueError, match="together"):
        camera_weight_picture(image, cam_map, tf, 1.5, 0.5, "x", boxes_model=boxes)


def test_frame_assembler_pictures_use_the_config_clamp_names_and_axes():
    config = ModelConfig(name="test")
    config = replace(config, aqr=replace(config.aqr, max_weight_clamp=2.5))
    asm = FrameAssembler(config, "rep103")
    boxes = np.array([[2.0, 15.0, -1.0, 4.0, 2.0, 1.5, np.pi / 2, 0.0, 0.0]])
    frame = FrameDetections(boxes=to_ros_boxes(boxes, "rep103"), boxes_model=boxes, labels=np.array([0]),
                            class_names=NAMES, scores=np.array([0.9]), query_index=np.array([0]),
                            lidar_weight=np.ones(1), camera_weight=np.ones(1))
    bev = np.full((128, 128), 0.5, dtype=np.float32)
    expected = bev_weight_picture(bev, boxes, frame.labels, NAMES, config.lidar.point_cloud_range, "rep103", 2.5, 4.0)
    np.testing.assert_array_equal(asm.bev_picture(bev, frame, stamp_s=4.0), expected)
    image = np.full((900, 1600, 3), 90, dtype=np.uint8)
    cam_map = np.full((20, 50), 0.5, dtype=np.float32)
    tf, l2i = camera_setup()
    got = asm.camera_picture(image, cam_map, 0.5, view=3, frame=frame, lidar2img=l2i, stamp_s=4.0)
    want = camera_weight_picture(image, cam_map, tf, 2.5, 0.5, "camera3 (CAM_BACK) camera weight", 4.0, False,
                                 boxes, frame.labels, frame.scores, NAMES, l2i)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="camera view 6"):
        asm.camera_picture(image, cam_map, 0.5, view=6)
    with pytest.raises(ValueError, match="together"):
        asm.camera_picture(image, cam_map, 0.5, view=0, frame=frame)


def test_legend_wraps_and_marks_hatched_entries():
    panel = np.zeros((512, 512, 3), dtype=np.uint8)
    entries = [LegendEntry(UNREACHED_TEXT, UNREACHED_RGB, hatched=True)] + [
        LegendEntry(name, class_rgb(name, i)) for i, name in enumerate(NAMES)]
    one_line = framed(panel, "t", 1.5, entries[:1])
    wrapped = framed(panel, "t", 1.5, entries)
    assert wrapped.shape[0] >= one_line.shape[0] + 20 and wrapped.shape[1] == one_line.shape[1]  # 2 lines
    for name in NAMES:
        assert len(pixels_of(wrapped[-80:], CLASS_RGB[name])) > 0, name


def test_class_colours_by_name_with_a_fallback_by_label():
    assert class_rgb("pedestrian", 0) == (0, 0, 230)
    assert class_rgb("forklift", 5) == FALLBACK_RGB[1]
