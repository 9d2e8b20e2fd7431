"""The synthetic rig's geometry, LiDAR, timing, ego motion and determinism (numpy only, no ROS)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from aqr_ros.tools.synthetic_rig import (CAMERA_NAMES, CAMERA_PERIOD, LIDAR_PERIOD, POINT_DTYPE, CameraFrame,
                                         LidarFrame, Scene, SceneObject, SyntheticRig, background_clearance,
                                         background_rows, invert_rigid, object_parts)

TIMES = (0.0, 1.3)
LIDAR_HEIGHT = 1.84


def to_lidar(box: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Points [..., 3] in the frame of one [x, y, z_bottom, dx, dy, dz, yaw, ...] box (z from its bottom) → lidar."""
    c, s = math.cos(box[6]), math.sin(box[6])
    return local @ np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]) + box[:3]


def box_corners(box: np.ndarray) -> np.ndarray:
    """[8, 3] corners of one [x, y, z_bottom, dx, dy, dz, yaw, ...] box, written independently of the rig."""
    dx, dy, dz = box[3:6]
    return to_lidar(box, np.array([[sx * dx / 2, sy * dy / 2, sz * dz]
                                   for sx in (-1, 1) for sy in (-1, 1) for sz in (0, 1)]))


def cuboid_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """[8, 3] corners of the axis-aligned cuboid between ``lo`` and ``hi``."""
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def front_face_corners(box: np.ndarray, name: str) -> np.ndarray:
    """[4, 3] corners of the front face (the +x face of the first part), in the order of a quadrilateral's outline."""
    (_, y0, z0), (x1, y1, z1) = object_parts(name, tuple(box[3:6]))[0]
    return to_lidar(box, np.array([[x1, y0, z0], [x1, y1, z0], [x1, y1, z1], [x1, y0, z1]]))


def lone_vehicle(name: str, size: tuple[float, float, float], position: tuple[float, float],
                 yaw: float) -> SyntheticRig:
    """A noise-free rig whose scene is a single parked vehicle."""
    vehicle = SceneObject(name, size, position, yaw, (0.0, 0.0), (48, 48, 224), 45.0, (150, 200, 240), 160.0)
    return SyntheticRig(seed=0, noise=False, scene=Scene((vehicle,)))


def object_palettes(rig: SyntheticRig) -> list[np.ndarray]:
    """Per object, the [k, 3] BGR colours (body and front) a pixel showing it can have."""
    return [np.unique(np.stack([body, front]), axis=0)
            for body, front in zip(rig.scene.colors, rig.scene.front_colors)]


def shows(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Mask of the pixels [..., 3] whose colour is one of ``palette`` [k, 3]."""
    return (pixels[..., None, :] == palette).all(axis=-1).any(axis=-1)


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
    palettes = object_palettes(rig)
    seen_by: dict[int, set[int]] = {}
    for i in range(6):
        img = images[t][i]
        l2i, T_cam_lidar = rig.rig.lidar2img(i), rig.rig.T_cam_lidar(i)
        cam_distance = np.linalg.norm(boxes[:, :3] @ T_cam_lidar[:3, :3].T + T_cam_lidar[:3, 3], axis=1)
        for m, box in enumerate(boxes):
            uv, depth = project(l2i, box_corners(box))
            if depth.min() < 0.5:
                continue
            drawn = shows(img, palettes[m])
            # The object's colours lie only within its projected silhouette (1 px tolerance).
            mask = np.zeros(img.shape[:2], np.uint8)
            cv2.fillConvexPoly(mask, cv2.convexHull(np.round(uv * 16).astype(np.int32)), 1, shift=4)
            assert not (drawn & (cv2.dilate(mask, np.ones((3, 3), np.uint8)) == 0)).any(), (
                f"camera {i} draws the {names[m]} {m} outside its projection")
            # Samples inside the solid: the box centre and every part's corners pulled 20 % towards its centre.
            centre_uv, _ = project(l2i, box[None, :3] + [0.0, 0.0, box[5] / 2])
            parts = np.stack([cuboid_corners(lo, hi) for lo, hi in object_parts(names[m], tuple(box[3:6]))])
            inner = parts + 0.2 * (parts.mean(axis=1, keepdims=True) - parts)
            inner_uv, _ = project(l2i, to_lidar(box, inner).reshape(-1, 3))
            samples = np.round(np.vstack([centre_uv, inner_uv])).astype(int)
            in_image = (samples >= 0).all(axis=1) & (samples < [1600, 900]).all(axis=1)
            if not in_image[0]:
                continue
            got = img[samples[in_image, 1], samples[in_image, 0]]
            own = shows(got, palettes[m])
            nearer = np.concatenate([palettes[k] for k in np.flatnonzero(cam_distance < cam_distance[m]) if k != m]
                                    + [np.zeros((0, 3), np.uint8)])
            for pixel in got[~own]:
                # Whatever is not one of the object's own colours must be a nearer object hiding it.
                assert shows(pixel, nearer), (
                    f"camera {i}, {names[m]} {m}: pixel {pixel} is neither its colour nor a nearer object's")
            if own[0]:
                seen_by.setdefault(m, set()).add(i)
    assert len(seen_by) >= 7
    if t == 0.0:  # the scene starts with objects where neighbouring cameras overlap
        assert sum(len(cams) >= 2 for cams in seen_by.values()) >= 3


def test_object_colours_are_unique_and_clear_of_the_background(rig: SyntheticRig) -> None:
    bodies, fronts = rig.scene.colors.astype(int), rig.scene.front_colors.astype(int)
    has_front = (bodies != fronts).any(axis=1)
    assert {n for n, f in zip(rig.scene.class_names, has_front) if f} == {"car", "pedestrian"}
    colours = np.concatenate([bodies, fronts[has_front]])
    assert len(np.unique(colours, axis=0)) == len(colours)
    sky, ground = background_rows(900)
    background = np.concatenate([sky, ground]).astype(int)
    for colour in colours:
        clearance = np.abs(background - colour).max(axis=1).min()
        assert clearance == background_clearance(tuple(colour)) and clearance >= 30


@pytest.mark.parametrize("t", TIMES)
def test_front_faces_are_drawn_where_the_projected_front_is(rig: SyntheticRig, images, t: float) -> None:
    boxes, names = rig.ground_truth_boxes(t)
    fronts = rig.scene.front_colors
    palettes = object_palettes(rig)
    seen = 0
    for i in range(6):
        img = images[t][i]
        l2i, T_lidar_cam = rig.rig.lidar2img(i), invert_rigid(rig.rig.T_cam_lidar(i))
        for m, box in enumerate(boxes):
            if len(palettes[m]) == 1:
                continue
            face = front_face_corners(box, names[m])
            uv, depth = project(l2i, face)
            drawn = shows(img, fronts[m][None])
            heading = np.array([math.cos(box[6]), math.sin(box[6]), 0.0])
            facing_camera = (T_lidar_cam[:3, 3] - face.mean(axis=0)) @ heading > 0.0
            if depth.min() < 0.5 or not facing_camera:
                # A front face turned away (or partly behind the camera, checked elsewhere) is not in front colour.
                assert depth.min() < 0.5 or not drawn.any(), f"camera {i}: hidden front of {names[m]} {m} drawn"
                continue
            mask = np.zeros(img.shape[:2], np.uint8)
            cv2.fillConvexPoly(mask, np.round(uv * 16).astype(np.int32), 1, shift=4)
            assert not (drawn & (cv2.dilate(mask, np.ones((3, 3), np.uint8)) == 0)).any(), (
                f"camera {i} draws the front of {names[m]} {m} outside its projected front face")
            centre_uv, _ = project(l2i, face.mean(axis=0)[None])
            u, v = np.round(centre_uv[0]).astype(int)
            if mask.sum() > 50 and 0 <= u < 1600 and 0 <= v < 900 and drawn[v, u]:
                seen += 1
    assert seen >= 2


def test_lidar_front_faces_return_the_front_albedo(clean_sweep) -> None:
    rig, pts = clean_sweep
    boxes, names = rig.ground_truth_boxes(0.4)
    xyz = np.stack([pts["x"], pts["y"], pts["z"]], axis=1).astype(np.float64)
    unit = xyz / np.linalg.norm(xyz, axis=1, keepdims=True)
    counts = {"front": 0, "back": 0, "body": 0}
    for box, obj in zip(boxes, rig.scene.objects):
        if obj.front_albedo == obj.albedo:
            continue
        # Each point in the box's frame where the box was when the point fired.
        c, s = math.cos(box[6]), math.sin(box[6])
        rel = xyz[:, :2] - box[:2] - box[7:9] * pts["time"][:, None].astype(np.float64)
        lx, ly = rel @ [c, s], rel @ [-s, c]
        height = xyz[:, 2] - box[2]
        cos = np.abs(unit[:, :2] @ [c, s])
        # The front is the +x face of the first part, the back the -x face of the rearmost part.
        parts = object_parts(obj.class_name, obj.size)
        rear = parts[np.argmin(parts[:, 0, 0])]
        for side, (lo, hi), x_face, albedo in (("front", parts[0], parts[0, 1, 0], obj.front_albedo),
                                               ("back", rear, rear[0, 0], obj.albedo)):
            on_face = ((np.abs(lx - x_face) < 2e-3) & (ly > lo[1] + 0.03) & (ly < hi[1] - 0.03)
                       & (height > lo[2] + 0.03) & (height < hi[2] - 0.03))
            expected = np.round(albedo * (0.35 + 0.65 * cos[on_face]))
            np.testing.assert_allclose(pts["intensity"][on_face], expected, atol=1.0)
            counts[side] += int(on_face.sum())
        # Every other return behind the front plane has the body albedo (the cabin's +x face is a windscreen).
        in_box = ((np.abs(lx) <= box[3] / 2 + 0.02) & (np.abs(ly) <= box[4] / 2 + 0.02) & (height >= -0.02)
                  & (height <= box[5] + 0.02))
        behind = in_box & (lx < parts[0, 1, 0] - 2e-3)
        assert (pts["intensity"][behind] <= obj.albedo + 0.5).all()
        counts["body"] += int(behind.sum())
    assert counts["front"] > 20 and counts["back"] > 20 and counts["body"] > 200


def test_vehicle_profiles_are_asymmetric_parts_of_the_box() -> None:
    size = (4.6, 1.9, 1.6)
    length, width, height = size
    body, cabin = object_parts("car", size)
    # A lower body over the whole footprint; a cabin of half the length, set back, on top: long bonnet, short boot.
    np.testing.assert_allclose(body, [[-length / 2, -width / 2, 0.0], [length / 2, width / 2, 0.55 * height]])
    np.testing.assert_allclose(cabin[1] - cabin[0], [0.5 * length, 0.9 * width, 0.45 * height])
    np.testing.assert_allclose(cabin.mean(axis=0)[:2], [-0.08 * length, 0.0], atol=1e-12)
    assert cabin[0, 2] == pytest.approx(0.55 * height) and cabin[1, 2] == pytest.approx(height)
    cab, cargo = object_parts("truck", size)
    np.testing.assert_allclose(cab, [[0.25 * length, -width / 2, 0.0], [length / 2, width / 2, 0.8 * height]])
    np.testing.assert_allclose(cargo, [[-length / 2, -width / 2, 0.0], [0.2 * length, width / 2, height]])
    whole = [[-length / 2, -width / 2, 0.0], [length / 2, width / 2, height]]
    for name in ("bus", "pedestrian", "bicycle", "traffic_cone", "barrier"):
        np.testing.assert_allclose(object_parts(name, size), [whole])
    for name in ("car", "truck", "bus"):
        parts = object_parts(name, size)
        # The parts span the box exactly, the first reaches the front, and no two overlap.
        np.testing.assert_allclose([parts[:, 0].min(axis=0), parts[:, 1].max(axis=0)], whole)
        assert parts[0, 1, 0] == pytest.approx(length / 2)
        for a in range(len(parts)):
            for b in range(a):
                assert ((parts[a, 1] <= parts[b, 0]) | (parts[b, 1] <= parts[a, 0])).any(), (name, a, b)


@pytest.mark.parametrize(("yaw", "y"), [(0.0, 6.0), (math.pi, 6.0), (0.0, -9.0), (math.pi, -9.0)])
def test_lidar_sees_a_low_bonnet_and_a_high_cabin_from_the_side(yaw: float, y: float) -> None:
    # A lone car beside the LiDAR (x = 0.94 m in base_link), side-on; every return above the ground is on it.
    rig = lone_vehicle("car", (4.6, 1.9, 1.6), (0.94, y), yaw)
    pts = rig.lidar_sweep(0.0)
    box = rig.ground_truth_boxes(0.0)[0][0]
    on_car = pts[pts["z"] > -LIDAR_HEIGHT + 1e-3]
    assert inside_box(on_car, box, 0.02).all()
    c, s = math.cos(box[6]), math.sin(box[6])
    along = (on_car["x"] - box[0]) * c + (on_car["y"] - box[1]) * s
    height = on_car["z"] - box[2]
    length, top = box[3], box[5]
    front, middle = along > 0.15 * length, np.abs(along) < 0.15 * length
    assert front.sum() > 50 and middle.sum() > 50
    # The top of the returns: bonnet height over the front 35 %, roof height over the middle.
    assert np.quantile(height[front], 0.9) < 0.6 * top
    assert np.quantile(height[middle], 0.9) > 0.85 * top


@pytest.mark.parametrize("yaw", [math.pi / 2, -math.pi / 2])
def test_camera_draws_a_car_above_its_bonnet_only_over_the_cabin(yaw: float) -> None:
    # A lone car 14 m ahead of the front camera, side-on: its length runs across the image.
    rig = lone_vehicle("car", (4.6, 1.9, 1.6), (14.0, 0.0), yaw)
    img = rig.camera_image(0, 0.0)
    box = rig.ground_truth_boxes(0.0)[0][0]
    l2i = rig.rig.lidar2img(0)
    body, cabin = object_parts("car", tuple(box[3:6]))
    v, u = np.nonzero(shows(img, object_palettes(rig)[0]))
    # Above the upper (far) edge of the bonnet height along the car, a pixel can only show the cabin.
    edges = [project(l2i, to_lidar(box, np.array([[body[0, 0], y, body[1, 2]], [body[1, 0], y, body[1, 2]]])))[0]
             for y in (body[0, 1], body[1, 1])]
    bonnet_v = np.min([np.interp(u, *edge[np.argsort(edge[:, 0])].T) for edge in edges], axis=0)
    above = v < bonnet_v - 1.5
    cabin_u = project(l2i, to_lidar(box, cuboid_corners(*cabin)))[0][:, 0]
    box_u = project(l2i, box_corners(box))[0][:, 0]
    assert above.sum() > 1000
    assert cabin_u.min() - 1.5 <= u[above].min() and u[above].max() <= cabin_u.max() + 1.5
    assert len(np.unique(u[above])) >= cabin_u.max() - cabin_u.min() - 2.0  # over all of the cabin's length
    assert u.min() <= box_u.min() + 1.5 and u.max() >= box_u.max() - 1.5  # the body spans the whole length
    # The cabin sits towards the rear: the heading shows.
    ends_uv, _ = project(l2i, to_lidar(box, np.array([[body[1, 0], 0.0, 0.0], [body[0, 0], 0.0, 0.0]])))
    front_u, rear_u = ends_uv[:, 0]
    assert abs(u[above].mean() - rear_u) < abs(u[above].mean() - front_u)


def test_camera_paints_a_truck_cab_over_the_cargo_box_behind_it() -> None:
    # A lone truck 20 m ahead facing the ego; its cab is taller than the camera, the cargo box rises behind it.
    rig = lone_vehicle("truck", (8.0, 2.5, 3.0), (20.0, 0.0), math.pi)
    img = rig.camera_image(0, 0.0)
    box = rig.ground_truth_boxes(0.0)[0][0]
    obj = rig.scene.objects[0]
    cab, cargo = object_parts("truck", obj.size)
    grid = np.linspace(0.1, 0.9, 7)

    def face_pixels(x: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Pixels [n, 3] at a grid of points on the +x face at ``x`` between (y, z) corners ``lo`` and ``hi``."""
        local = np.array([[x, lo[0] + a * (hi[0] - lo[0]), lo[1] + b * (hi[1] - lo[1])] for a in grid for b in grid])
        uv = np.round(project(rig.rig.lidar2img(0), to_lidar(box, local))[0]).astype(int)
        return img[uv[:, 1], uv[:, 0]]

    # The whole cab front in the front colour; the cargo box's front in the body colour where it shows above the
    # cab (seen from 1.5 m, the 2.4 m high cab hides it up to about 2.55 m).
    cab_front = face_pixels(cab[1, 0], cab[0, 1:], cab[1, 1:])
    cargo_above = face_pixels(cargo[1, 0], np.array([cargo[0, 1], 0.9 * cargo[1, 2]]), cargo[1, 1:])
    np.testing.assert_array_equal(cab_front, np.broadcast_to(obj.front_color, cab_front.shape))
    np.testing.assert_array_equal(cargo_above, np.broadcast_to(obj.color, cargo_above.shape))


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
    v, u = np.nonzero(shows(img, object_palettes(rig)[2]))
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
