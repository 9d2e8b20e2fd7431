"""Undistortion of raw camera images (aqr_ros.pipeline.undistort) on synthetic-rig images with a known lens."""

import dataclasses

import cv2
import numpy as np
import pytest

from aqr_ros.pipeline.undistort import (LensCalibration, RectificationCache, ignored_distortion,
                                        projection_intrinsics, rectification)
from aqr_ros.tools.synthetic_rig import SyntheticRig, invert_rigid

#: A wide-angle automotive plumb_bob lens (k1, k2, p1, p2, k3): pixels near the image corners move by ~60 px.
PLUMB_BOB_D = np.array([-0.12, 0.03, 0.0008, -0.0005, 0.0])
LENSES = {
    "plumb_bob": PLUMB_BOB_D,
    "rational_polynomial": np.array([-0.12, 0.03, 0.0008, -0.0005, 0.002, 0.01, -0.004, 0.001]),
    "equidistant": np.array([-0.02, 0.004, -0.001, 0.0002]),
}
CAMERA = 0
#: cv2.remap's fixed-point maps resolve 1/32 px.
MAP_RESOLUTION_PX = 1.0 / 32.0


def rig_lens(D, model, alpha=0.0):
    """The rig's front camera with lens ``D``, P from OpenCV's optimal new camera matrix (alpha 0: no black border)."""
    cam = SyntheticRig(0, noise=False).rig.cameras[CAMERA]
    size = (cam.width, cam.height)
    if model == "equidistant":
        new_K = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(cam.K, D, size, np.eye(3), balance=alpha)
    else:
        new_K, _ = cv2.getOptimalNewCameraMatrix(cam.K, D, size, alpha)
    return LensCalibration(cam.K.copy(), D, model, (cam.height, cam.width), np.c_[new_K, np.zeros(3)])


def distorted_pixels(lens, pinhole_uv, K_pinhole):
    """Raw-image pixels of the rays through ``pinhole_uv`` [N, 2] of the pinhole camera ``K_pinhole``."""
    rays = np.c_[(pinhole_uv - K_pinhole[:2, 2]) / np.diag(K_pinhole)[:2], np.ones(len(pinhole_uv))]
    if lens.model == "equidistant":
        uv, _ = cv2.fisheye.projectPoints(rays[:, None, :], np.zeros(3), np.zeros(3), lens.K, lens.D)
    else:
        uv, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), lens.K, lens.D)
    return uv.reshape(-1, 2)


@pytest.mark.parametrize("model", sorted(LENSES))
def test_maps_send_every_pinhole_pixel_to_its_raw_pixel(model):
    lens = rig_lens(LENSES[model], model)
    rect = rectification(lens, rectified=False)
    np.testing.assert_array_equal(rect.K, lens.P[:, :3])
    assert rect.maps is not None and rect.ignored is None and model in rect.description
    map_x, map_y = cv2.convertMaps(*rect.maps, cv2.CV_32FC1)
    v, u = np.mgrid[0:lens.size[0]:37, 0:lens.size[1]:41]
    expected = distorted_pixels(lens, np.c_[u.ravel(), v.ravel()].astype(np.float64), rect.K)
    got = np.c_[map_x[v, u].ravel(), map_y[v, u].ravel()]
    assert np.abs(got - expected).max() <= MAP_RESOLUTION_PX


def with_camera(rig, K, width, height):
    """``rig`` with camera CAMERA replaced by a pinhole camera of intrinsics ``K``, ``width`` x ``height`` pixels."""
    cameras = list(rig.rig.cameras)
    cameras[CAMERA] = dataclasses.replace(cameras[CAMERA], K=K, width=width, height=height)
    return SyntheticRig(rig.seed, noise=False, rig=dataclasses.replace(rig.rig, cameras=tuple(cameras)),
                        scene=rig.scene)


def render_distorted(rig, lens, t):
    """What camera CAMERA of ``rig`` with ``lens`` sees at ``t``: a pinhole render on a canvas large enough for every
    raw pixel's ray, resampled at the undistorted position of every raw pixel."""
    h, w = lens.size
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    raw = np.stack([u.ravel(), v.ravel()], axis=1)[:, None, :]
    exact = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    ideal = cv2.undistortPoints(raw, lens.K, lens.D, P=lens.K, criteria=exact).reshape(h, w, 2)
    assert np.abs(distorted_pixels(lens, ideal.reshape(-1, 2), lens.K) - raw.reshape(-1, 2)).max() < 1e-6
    pad = np.ceil(np.maximum(-ideal.min(axis=(0, 1)), ideal.max(axis=(0, 1)) - [w - 1, h - 1])).astype(int) + 2
    K_canvas = lens.K.copy()
    K_canvas[:2, 2] += pad
    canvas = with_camera(rig, K_canvas, w + 2 * pad[0], h + 2 * pad[1]).camera_image(CAMERA, t)
    maps = (ideal + pad).astype(np.float32)
    return cv2.remap(canvas, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR)


def object_box_errors(rig, image, K, t):
    """Per object fully inside ``image`` and visible: bounding box of its pixels (exact body or front colour) minus
    that of its projected box corners with ``K`` (x0, y0, x1, y1 in px; pixel centres at integers)."""
    cam = rig.rig.cameras[CAMERA]
    corners = rig.box_corners(t, invert_rigid(rig.ego_pose(t) @ cam.T_base_cam))
    h, w = image.shape[:2]
    errors = {}
    for m, obj in enumerate(rig.scene.objects):
        if corners[m, :, 2].min() < 1.0:
            continue
        uvw = corners[m] @ K.T
        uv = uvw[:, :2] / uvw[:, 2:3]
        box = np.r_[uv.min(axis=0), uv.max(axis=0)]
        if box[0] < 0 or box[1] < 0 or box[2] > w - 1 or box[3] > h - 1:
            continue
        mask = np.all(image == obj.color, axis=2) | np.all(image == obj.front_color, axis=2)
        if mask.any():
            ys, xs = np.nonzero(mask)
            errors[m] = np.array([xs.min() - 0.5, ys.min() - 0.5, xs.max() + 0.5, ys.max() + 0.5]) - box
    return errors


def test_undistorted_rig_image_matches_the_pinhole_render():
    rig, t = SyntheticRig(0, noise=False), 0.0
    lens = rig_lens(PLUMB_BOB_D, "plumb_bob")
    raw = render_distorted(rig, lens, t)
    rect = rectification(lens, rectified=False)
    undistorted = rect.apply(raw)
    pinhole = with_camera(rig, rect.K, lens.size[1], lens.size[0]).camera_image(CAMERA, t)

    # Object edges: the undistorted image shows every object where its box corners project with rect.K (P), within
    # 1.5 px (measured <= 0.95 px: bilinear blending at an edge takes at most one pixel off an exact-colour mask).
    errors = object_box_errors(rig, undistorted, rect.K, t)
    assert len(errors) >= 5, errors
    assert max(np.abs(e).max() for e in errors.values()) <= 1.5, errors
    # Ignoring D (what the node did): objects away from the centre are off by up to ~27 px.
    ignored = object_box_errors(rig, raw, lens.K, t)
    assert max(np.abs(e).max() for e in ignored.values()) > 10.0, ignored
    # Whole image: only edge pixels differ from the pinhole render (measured 0.17 %; 2.1 % with D ignored).
    differs = np.abs(undistorted.astype(np.int16) - pinhole).max(axis=2) > 40
    differs_ignored = np.abs(raw.astype(np.int16) - rig.camera_image(CAMERA, t)).max(axis=2) > 40
    assert differs.mean() < 0.005 and differs_ignored.mean() > 4 * differs.mean()


def test_rectified_and_undistorted_inputs_use_p_raw_pinhole_inputs_k():
    lens = rig_lens(PLUMB_BOB_D, "plumb_bob")
    rect = rectification(lens, rectified=True)
    np.testing.assert_array_equal(rect.K, lens.P[:, :3])
    assert rect.maps is None and "rectified" in rect.description
    image = np.zeros((*lens.size, 3), dtype=np.uint8)
    assert rect.apply(image) is image
    no_distortion = rectification(dataclasses.replace(lens, D=np.zeros(5)), rectified=False)
    np.testing.assert_array_equal(no_distortion.K, lens.K)
    assert no_distortion.maps is None and no_distortion.ignored is None
    unset_p = rectification(dataclasses.replace(lens, P=np.zeros((3, 4))), rectified=False)
    np.testing.assert_array_equal(unset_p.K, lens.K)
    assert unset_p.maps is not None and "P unset" in unset_p.description
    assert projection_intrinsics(np.zeros((3, 4)), lens.size) is None
    wrong_size = np.zeros((450, 800, 3), dtype=np.uint8)
    assert rectification(lens, rectified=False).apply(wrong_size) is wrong_size


@pytest.mark.parametrize("D, model, fragment", [
    (PLUMB_BOB_D, "kannala_brandt", "distortion model 'kannala_brandt' is not supported"),
    (PLUMB_BOB_D, "", "distortion model '' is not supported"),
    (PLUMB_BOB_D[:3], "plumb_bob", "plumb_bob takes 4 or 5 coefficients, got 3"),
    (np.array([np.nan, 0.0, 0.0, 0.0, 0.0]), "plumb_bob", "non-finite"),
])
def test_distortion_that_cannot_be_undistorted_is_reported(D, model, fragment):
    reason = ignored_distortion(D, model)
    assert reason is not None and fragment in reason and "ignored" in reason
    lens = dataclasses.replace(rig_lens(PLUMB_BOB_D, "plumb_bob"), D=D, model=model)
    rect = rectification(lens, rectified=False)
    assert rect.ignored == reason and rect.maps is None and reason in rect.description
    np.testing.assert_array_equal(rect.K, lens.K)


def test_zero_or_applicable_distortion_is_not_reported():
    assert ignored_distortion(np.zeros(5), "unknown") is None
    assert ignored_distortion(np.zeros(0), "") is None
    assert all(ignored_distortion(D, model) is None for model, D in LENSES.items())


def test_cache_builds_maps_once_per_calibration():
    cache = RectificationCache(rectified=False)
    lens = rig_lens(PLUMB_BOB_D, "plumb_bob")
    first = cache.get(0, lens)
    noisy = dataclasses.replace(lens, K=lens.K + 1e-9, P=lens.P + 1e-9)  # republished with float noise
    assert cache.get(0, noisy) is first
    assert cache.get(1, lens) is not first  # per camera
    changed = cache.get(0, dataclasses.replace(lens, D=PLUMB_BOB_D * 0.5))
    assert changed is not first and cache.get(0, dataclasses.replace(lens, D=PLUMB_BOB_D * 0.5)) is changed
