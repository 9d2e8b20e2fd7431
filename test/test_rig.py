"""The synthetic rig's geometry, LiDAR, timing, ego motion and determinism (numpy only, no ROS)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from aqr_ros.tools.synthetic_rig import (CAMERA_NAMES, CAMERA_PERIOD, LIDAR_PERIOD, POINT_DTYPE, CameraFrame,
                                         LidarFrame, SyntheticRig, invert_rigid)

TIMES = (0.0, 1.3)
LIDAR_HEIGHT = 1.84


def box_corners(box: np.ndarray) -> np.ndarray:
    """[8, 3] corners of one [x, y, z_bottom, dx, dy, dz, yaw, ...] box, written independently of the rig."""
    x, y, z, dx, dy, dz, yaw = box[:7]
    local = np.array([[sx * dx / 2, sy * dy / 2, sz * dz] for sx in (-1, 1) for sy in (-1, 1) for sz in (0, 1)])
    c, s = math.cos(yaw), math.sin(yaw)
    return local @ np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]) + [x, y, z]


def project(lidar2img: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates [N, 2] and depths [N] of lidar-frame points."""
    h = np.c_[pts, np.ones(len(pts))] @ lidar2img.T
    return h[:, :2] / h[:, 2:3], h[:, 2]


def inside_box(points: np.ndarray, box: np.ndarray, margin: float) -> np.ndarray:
    """Mask of points inside ``box`` grown by ``margin`` metres."""
    x, y, z, dx, dy, dz, yaw = box[:7]
    c, s = math.cos(yaw), math.sin(yaw)
    px, py = points["x"] - x, points["y"] - y
    lx, ly = c * px + s * py, -s * px + c * py
    return ((np.abs(lx) <= dx / 2 + margin) & (np.abs(ly) <= dy / 2 + margin)
            & (points["z"] >= z - margin) & (points["z"] <= z + dz + margin))


@pytest.fixture(scope="module")
def rig() -> SyntheticRig:
    return SyntheticRig(seed=3)


@pytest.fixture(scope="module")
def images(rig: SyntheticRig) -> dict[float, list[np.ndarray]]:
    return {t: [rig.camera_image(i, t) for i in range(6)] for t in TIMES}


@pytest.fixture(scope="module")
def clean_sweep() -> tuple[SyntheticRig, np.ndarray]:
    rig = SyntheticRig(seed=3, noise=False)
    return rig, rig.lidar_sweep(0.4)


def test_rig_layout_and_intrinsics(rig: SyntheticRig) -> None:
    cams = rig.rig.cameras
    assert tuple(c.name for c in cams) == CAMERA_NAMES
    assert rig.rig.camera_frame_ids[0] == "cam_front_optical"
    expected_yaw = [0.0, -55.0, 55.0, 180.0, 110.0, -110.0]
    T = rig.rig.T_base_cam
    assert T.shape == (6, 4, 4)
    for i, cam in enumerate(cams):
        R = T[i, :3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        optical_z, optical_x, optical_y = R[:, 2], R[:, 0], R[:, 1]
        yaw = math.degrees(math.atan2(optical_z[1], optical_z[0]))
        assert (yaw - expected_yaw[i] + 180.0) % 360.0 - 180.0 == pytest.approx(0.0, abs=0.5)
        assert optical_y[2] < -0.99  # y down
        assert np.cross(optical_z, optical_x)[2] < -0.99  # x right of the viewing direction (z x x = y = down)
        assert (cam.width, cam.height) == (1600, 900)
    assert cams[0].K[0, 0] == pytest.approx(1266.4) and cams[0].K[0, 2] == pytest.approx(816.3)
    assert cams[3].K[0, 0] == pytest.approx(809.2)
    np.testing.assert_allclose(rig.rig.T_base_lidar[:3, :3], np.eye(3))
    assert rig.rig.T_base_lidar[2, 3] == pytest.approx(LIDAR_HEIGHT)


def test_lidar2img_projects_the_road_ahead_into_the_front_camera(rig: SyntheticRig) -> None:
    ahead = np.array([[1000.0, 0.0, 0.0]])  # far along the LiDAR's x axis: the front camera's principal point
    uv, depth = project(rig.rig.lidar2img(0), ahead)
    assert depth[0] > 0
    np.testing.assert_allclose(uv[0], rig.rig.cameras[0].K[:2, 2], atol=15.0)
    assert project(rig.rig.lidar2img(3), ahead)[1][0] < 0  # behind the back camera
    behind = np.array([[-1000.0, 0.0, 0.0]])
    uv, depth = project(rig.rig.lidar2img(3), behind)
    assert depth[0] > 0 and abs(uv[0, 0] - rig.rig.cameras[3].K[0, 2]) < 15.0
    K4 = np.eye(4)
    K4[:3, :3] = rig.rig.cameras[1].K
    np.testing.assert_allclose(rig.rig.lidar2img(1), K4 @ rig.rig.T_cam_lidar(1))
    np.testing.assert_array_equal(rig.rig.lidar2img_all()[4], rig.rig.lidar2img(4))
    # T_cam_lidar maps the LiDAR origin to where the LiDAR sits seen from the camera.
    lidar_in_base = rig.rig.T_base_lidar[:3, 3]
    cam_T = rig.rig.T_base_cam[1]
    np.testing.assert_allclose(rig.rig.T_cam_lidar(1)[:3, 3], cam_T[:3, :3].T @ (lidar_in_base - cam_T[:3, 3]))


def test_camera_info(rig: SyntheticRig) -> None:
    info = rig.camera_info(3)
    assert info.frame_id == "cam_back_optical" and (info.width, info.height) == (1600, 900)
    assert info.distortion_model == "plumb_bob" and not info.D.any()
    np.testing.assert_array_equal(info.P[:, :3], info.K)
    np.testing.assert_array_equal(info.P[:, 3], 0.0)
    np.testing.assert_array_equal(info.R, np.eye(3))


@pytest.mark.parametrize("t", TIMES)
def test_box_corners_land_on_the_drawn_objects(rig: SyntheticRig, images, t: float) -> None:
    boxes, names = rig.ground_truth_boxes(t)
    colors = rig.scene.colors
    seen_by: dict[int, set[int]] = {}
    for i in range(6):
        img = images[t][i]
        l2i, T_cam_lidar = rig.rig.lidar2img(i), rig.rig.T_cam_lidar(i)
        cam_distance = np.linalg.norm(boxes[:, :3] @ T_cam_lidar[:3, :3].T + T_cam_lidar[:3, 3], axis=1)
        for m, box in enumerate(boxes):
            uv, depth = project(l2i, box_corners(box))
            if depth.min() < 0.5:
                continue
            drawn = (img == colors[m]).all(axis=2)
            # The object's colour lies only within its projected silhouette (1 px tolerance).
            mask = np.zeros(img.shape[:2], np.uint8)
            cv2.fillConvexPoly(mask, cv2.convexHull(np.round(uv * 16).astype(np.int32)), 1, shift=4)
            assert not (drawn & (cv2.dilate(mask, np.ones((3, 3), np.uint8)) == 0)).any(), (
                f"camera {i} draws the {names[m]} {m} outside its projection")
            # Samples strictly inside the silhouette: the centre and every corner pulled 20 % towards it.
            centre_uv, _ = project(l2i, box[None, :3] + [0.0, 0.0, box[5] / 2])
            samples = np.round(np.vstack([centre_uv, uv + 0.2 * (centre_uv - uv)])).astype(int)
            in_image = (samples >= 0).all(axis=1) & (samples < [1600, 900]).all(axis=1)
            if not in_image[0]:
                continue
            got = img[samples[in_image, 1], samples[in_image, 0]]
            own = (got == colors[m]).all(axis=1)
            nearer = colors[(cam_distance < cam_distance[m]) & (np.arange(len(boxes)) != m)]
            for pixel in got[~own]:
                # Whatever is not the object's own colour must be a nearer object hiding it.
                assert (pixel == nearer).all(axis=1).any(), (
                    f"camera {i}, {names[m]} {m}: pixel {pixel} is neither its colour nor a nearer object's")
            if own[0]:
                seen_by.setdefault(m, set()).add(i)
    assert len(seen_by) >= 7
    if t == 0.0:  # the scene starts with objects where neighbouring cameras overlap
        assert sum(len(cams) >= 2 for cams in seen_by.values()) >= 3


def test_images_are_bgr_uint8_with_sky_and_ground(images) -> None:
    img = images[0.0][0]
    assert img.shape == (900, 1600, 3) and img.dtype == np.uint8 and img.flags.c_contiguous
    top, bottom = img[5, 5].astype(int), img[895, 5].astype(int)
    assert top[0] > top[2] + 40  # blue sky (BGR)
    assert abs(bottom[0] - bottom[2]) < 15 and bottom[0] < 140  # grey road


@pytest.mark.parametrize(("camera", "t"), [(2, 2.9), (4, 2.7)])
def test_objects_partly_behind_the_camera_draw_no_garbage(rig: SyntheticRig, camera: int, t: float) -> None:
    # The oncoming car is passing the ego on the left: some corners are behind the camera.
    box = rig.ground_truth_boxes(t)[0][2]
    _, depth = project(rig.rig.lidar2img(camera), box_corners(box))
    assert depth.min() < 0 < depth.max()
    img = rig.camera_image(camera, t)
    v, u = np.nonzero((img == rig.scene.colors[2]).all(axis=2))
    assert len(u) > 1000
    # Every pixel drawn in the car's colour looks at the car: cast its ray back into the lidar frame.
    T_lidar_cam = invert_rigid(rig.rig.T_cam_lidar(camera))
    rays = np.c_[u, v, np.ones(len(u))] @ np.linalg.inv(rig.rig.cameras[camera].K).T @ T_lidar_cam[:3, :3].T
    c, s = math.cos(box[6]), math.sin(box[6])
    to_box = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    origin = to_box @ (T_lidar_cam[:3, 3] - box[:3] - [0.0, 0.0, box[5] / 2])
    half = box[3:6] / 2 + 0.05
    with np.errstate(divide="ignore"):
        t1, t2 = (-half - origin) / (rays @ to_box.T), (half - origin) / (rays @ to_box.T)
    t_exit = np.maximum(t1, t2).min(axis=1)
    # The ray enters the box before it leaves it, in front of the camera (not through the part behind it).
    assert (np.minimum(t1, t2).max(axis=1) <= t_exit).all() and (t_exit > 0).all()


def test_lidar_fields_dtypes_and_firing_pattern(clean_sweep) -> None:
    rig, pts = clean_sweep
    assert pts.dtype == POINT_DTYPE
    assert pts.dtype.names == ("x", "y", "z", "intensity", "ring", "time")
    assert pts.dtype["ring"] == np.uint16 and pts.dtype["time"] == np.float32 and pts.dtype["x"] == np.float32
    assert 10_000 < len(pts) < 32 * 1000
    assert pts["ring"].max() <= 31
    assert set(np.unique(pts["ring"])) >= set(range(16))  # every downward ring sees the ground
    assert (pts["time"] >= 0).all() and (pts["time"] < LIDAR_PERIOD).all()
    assert (np.diff(pts["time"]) >= 0).all()
    rng_xy = np.hypot(pts["x"], pts["y"])
    assert np.sqrt(rng_xy ** 2 + pts["z"].astype(float) ** 2).max() <= 70.0 + 1e-3
    # Each point lies on its ring's elevation and on the azimuth the head pointed at when it fired.
    elev = np.degrees(np.arctan2(pts["z"], rng_xy))
    np.testing.assert_allclose(elev, rig.rig.lidar.elevations_deg[pts["ring"]], atol=1e-3)
    expected_az = math.pi - 2 * math.pi * pts["time"].astype(float) / LIDAR_PERIOD
    dz = np.angle(np.exp(1j * (np.arctan2(pts["y"], pts["x"]) - expected_az)))
    assert np.abs(dz).max() < 1e-4
    intensity = pts["intensity"]
    assert intensity.min() >= 0 and intensity.max() <= 255
    np.testing.assert_array_equal(intensity, np.round(intensity))


def test_lidar_hits_boxes_and_ground(clean_sweep) -> None:
    rig, pts = clean_sweep
    boxes, names = rig.ground_truth_boxes(0.4)
    on_object = np.zeros(len(pts), dtype=bool)
    for box, name in zip(boxes, names):
        # Objects move during the 50 ms turn: grow the box by the distance travelled.
        margin = 0.02 + np.hypot(box[7], box[8]) * LIDAR_PERIOD
        inside = inside_box(pts, box, margin)
        if np.hypot(box[0], box[1]) < 30.0:
            assert inside.sum() > 0, f"no LiDAR point on the {name} at {box[:2]}"
        on_object |= inside
        if name == "traffic_cone" and inside.any():
            assert np.median(pts["intensity"][inside]) > 100  # retro-reflective
    ground = pts[~on_object]
    np.testing.assert_allclose(ground["z"], -LIDAR_HEIGHT, atol=2e-3)
    assert np.median(ground["intensity"]) < 20
    assert on_object.sum() > 500


def test_noise_is_small_and_deterministic(clean_sweep) -> None:
    _, clean = clean_sweep
    a, b = SyntheticRig(seed=3).lidar_sweep(0.4), SyntheticRig(seed=3).lidar_sweep(0.4)
    assert a.tobytes() == b.tobytes()
    assert len(a) == len(clean)
    assert 0 < np.abs(a["z"] - clean["z"]).max() < 0.06


def test_same_seed_same_bytes_other_seed_other_scene(rig: SyntheticRig, images) -> None:
    other = SyntheticRig(seed=3)
    assert other.camera_image(4, TIMES[1]).tobytes() == images[TIMES[1]][4].tobytes()
    np.testing.assert_array_equal(other.ground_truth_boxes(1.0)[0], rig.ground_truth_boxes(1.0)[0])
    different = SyntheticRig(seed=4).ground_truth_boxes(1.0)[0]
    assert not np.allclose(different[:, :2], rig.ground_truth_boxes(1.0)[0][:, :2])


def test_schedule_timing(rig: SyntheticRig) -> None:
    events = rig.schedule(20)  # one second
    assert [e.t for e in events] == sorted(e.t for e in events)
    lidar = [e.t for e in events if e.sensor < 0]
    np.testing.assert_allclose(lidar, np.arange(20) * LIDAR_PERIOD)
    offsets = rig.rig.camera_offsets()
    assert len(np.unique(np.round(offsets, 6))) == 6
    assert (offsets >= 0).all() and (offsets < LIDAR_PERIOD).all()
    for i in range(6):
        times = np.array([e.t for e in events if e.sensor == i])
        assert len(times) == 12
        np.testing.assert_allclose(np.diff(times), CAMERA_PERIOD)
        assert times[0] == pytest.approx(offsets[i])
        assert [e.index for e in events if e.sensor == i] == list(range(12))
    # Each camera fires when the LiDAR beam crosses its optical axis: the front camera with the forward beam.
    pts = SyntheticRig(seed=3, noise=False).lidar_sweep(0.0)
    forward = np.abs(np.arctan2(pts["y"], pts["x"])) < math.radians(0.5)
    assert np.abs(pts["time"][forward] - offsets[0]).max() < 1e-4
    assert offsets[2] < offsets[0] < offsets[1]  # the head turns clockwise: left, front, right


def test_ego_motion_matches_poses_and_ground_truth(rig: SyntheticRig) -> None:
    np.testing.assert_allclose(rig.ego_pose(0.0), np.eye(4), atol=1e-12)
    speed, dt = rig.scene.ego.speed, 1e-4
    for t in (0.5, 2.0, 4.0):
        T0, T1 = rig.ego_pose(t), rig.ego_pose(t + dt)
        np.testing.assert_allclose(T0[:3, :3] @ T0[:3, :3].T, np.eye(3), atol=1e-12)
        velocity = (T1[:3, 3] - T0[:3, 3]) / dt
        np.testing.assert_allclose(velocity, T0[:3, :3] @ [speed, 0.0, 0.0], atol=1e-3)
        yaw = math.atan2(T0[1, 0], T0[0, 0])
        assert yaw == pytest.approx(rig.scene.ego.yaw_rate * t)
    assert 2.0 < speed < 15.0
    # Ground truth in the lidar frame, moved to odom with the ego pose, is where the objects are.
    to_odom = {t: rig.ego_pose(t) @ rig.rig.T_base_lidar for t in (0.0, 2.0)}
    odom_xy = {}
    for t, T in to_odom.items():
        boxes, _ = rig.ground_truth_boxes(t)
        odom_xy[t] = (np.c_[boxes[:, :3], np.ones(len(boxes))] @ T.T)[:, :3]
        np.testing.assert_allclose(odom_xy[t][:, 2], 0.0, atol=1e-9)  # boxes stand on the ground
        vel_odom = np.c_[boxes[:, 7:9], np.zeros(len(boxes))] @ T[:3, :3].T
        np.testing.assert_allclose(vel_odom[:, :2], [obj.velocity for obj in rig.scene.objects], atol=1e-9)
    velocities = np.array([obj.velocity for obj in rig.scene.objects])
    np.testing.assert_allclose(odom_xy[2.0][:, :2] - odom_xy[0.0][:, :2], velocities * 2.0, atol=1e-9)
    assert (np.hypot(*velocities.T) == 0).sum() >= 3 and (np.hypot(*velocities.T) > 0).sum() >= 3


def test_frames_iterator(rig: SyntheticRig) -> None:
    frames = list(rig.frames(3, start_time=100.0, cameras=(0, 3)))
    lidar = [f for f in frames if isinstance(f, LidarFrame)]
    cams = [f for f in frames if isinstance(f, CameraFrame)]
    assert [f.index for f in lidar] == [0, 1, 2]
    assert {f.camera for f in cams} == {0, 3} and len(cams) == 4  # 150 ms: two exposures per camera
    assert [f.t for f in frames] == sorted(f.t for f in frames)
    for f in frames:
        assert f.stamp == pytest.approx(100.0 + f.t)
        np.testing.assert_allclose(f.T_odom_base, rig.ego_pose(f.t))
    assert lidar[1].points.tobytes() == rig.lidar_sweep(LIDAR_PERIOD).tobytes()
    assert cams[0].image.shape == (900, 1600, 3)
    boxes, names = rig.ground_truth_boxes(lidar[2].t)
    np.testing.assert_array_equal(lidar[2].boxes, boxes)
    assert lidar[2].class_names == names
    assert set(names) == {"car", "pedestrian", "traffic_cone"}


def test_invert_rigid(rig: SyntheticRig) -> None:
    T = rig.rig.T_base_cam[4]
    np.testing.assert_allclose(invert_rigid(T) @ T, np.eye(4), atol=1e-12)
