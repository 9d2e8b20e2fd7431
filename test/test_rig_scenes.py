"""The random street scenes of the synthetic rig and the rig's culled LiDAR ray casting (numpy only, no ROS)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from aqr_ros.tools.rig_scenes import SCENE_KINDS, make_scene, random_scene
from aqr_ros.tools.synthetic_rig import (FRONT_CLASSES, POINT_DTYPE, Scene, SceneObject, SyntheticRig,
                                         background_rows, invert_rigid, object_parts)

SEEDS = range(40)
HORIZON = 3.0
# Class priors as the scenes are meant to follow them: count range, (length, width, height) ranges, albedo range.
COUNTS = {"car": (4, 14), "truck": (0, 2), "bus": (0, 1), "pedestrian": (2, 10), "traffic_cone": (0, 8),
          "barrier": (0, 6), "bicycle": (0, 3)}
SIZES = {"car": ((4.6, 4.6), (1.95, 1.95), (1.7, 1.7)), "truck": ((6.5, 10.0), (2.5, 2.5), (2.6, 3.4)),
         "bus": ((10.5, 12.5), (2.9, 2.9), (3.3, 3.3)), "pedestrian": ((0.7, 0.7), (0.65, 0.65), (1.75, 1.75)),
         "traffic_cone": ((0.41, 0.41), (0.41, 0.41), (0.75, 1.05)), "barrier": ((2.0, 2.6), (0.5, 0.5), (0.95, 0.95)),
         "bicycle": ((1.75, 1.75), (0.6, 0.6), (1.3, 1.3))}
ALBEDOS = {"car": (25, 60), "truck": (25, 60), "bus": (25, 60), "pedestrian": (15, 35), "traffic_cone": (150, 220),
           "barrier": (60, 160), "bicycle": (20, 50)}
VEHICLES = ("car", "truck", "bus")


@pytest.fixture(scope="module")
def scenes() -> dict[int, Scene]:
    return {seed: random_scene(seed) for seed in SEEDS}


def footprint(centre: np.ndarray, yaw: float, length: float, width: float) -> np.ndarray:
    """[4, 2] corners of a BEV rectangle, counter-clockwise."""
    c, s = math.cos(yaw), math.sin(yaw)
    local = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * [length / 2, width / 2]
    return local @ np.array([[c, s], [-s, c]]) + centre


def convex_overlap(p: np.ndarray, q: np.ndarray) -> bool:
    """Separating axis test of two convex polygons [n, 2], [m, 2] (vertices in order): do they intersect?"""
    for poly in (p, q):
        edges = np.roll(poly, -1, axis=0) - poly
        for normal in np.stack([-edges[:, 1], edges[:, 0]], axis=1):
            a, b = p @ normal, q @ normal
            if a.max() < b.min() or b.max() < a.min():
                return False
    return True


def footprints_at(scene: Scene, t: float, grow: float) -> list[np.ndarray]:
    """BEV corners of every object at ``t``, each side pushed out by ``grow``."""
    return [footprint(np.add(obj.position, np.multiply(obj.velocity, t)), obj.yaw, obj.size[0] + 2 * grow,
                      obj.size[1] + 2 * grow) for obj in scene.objects]


def ego_footprint_at(scene: Scene, t: float, grow: float) -> np.ndarray:
    """BEV corners of the ego (4.8 x 2.0 m, centred 1.4 m ahead of base_link) at ``t``, pushed out by ``grow``."""
    T = scene.ego.pose(t)
    yaw = math.atan2(T[1, 0], T[0, 0])
    return footprint(T[:2, 3] + 1.4 * T[:2, 0], yaw, 4.8 + 2 * grow, 2.0 + 2 * grow)


def test_same_seed_same_scene_other_seed_other_scene(scenes) -> None:
    assert random_scene(7) == scenes[7]
    assert all(scenes[a] != scenes[b] for a in SEEDS for b in SEEDS if a < b)
    assert make_scene("random", 7) == scenes[7] and make_scene("template", 7) == Scene.generate(7)
    assert SCENE_KINDS == ("template", "random")
    with pytest.raises(ValueError):
        make_scene("forest", 7)


def test_class_counts_sizes_and_albedos(scenes) -> None:
    totals: Counter = Counter()
    for scene in scenes.values():
        counts = Counter(scene.class_names)
        assert set(counts) <= set(COUNTS)
        for name, (low, high) in COUNTS.items():
            assert low <= counts[name] <= high, (name, counts[name])
        totals.update(counts)
        for obj in scene.objects:
            for value, (low, high) in zip(obj.size, SIZES[obj.class_name]):
                assert 0.9 * low <= value <= 1.1 * high, (obj.class_name, obj.size)
            assert ALBEDOS[obj.class_name][0] <= obj.albedo <= ALBEDOS[obj.class_name][1]
            if obj.class_name in VEHICLES:
                assert 120 <= obj.front_albedo <= 200
            elif obj.class_name not in FRONT_CLASSES:
                assert obj.front_albedo == obj.albedo
    assert set(totals) == set(COUNTS)  # every class appears
    assert totals["car"] > 5 * len(SEEDS) and totals["pedestrian"] > 3 * len(SEEDS)


def test_colours_are_unique_saturated_and_clear_of_the_background(scenes) -> None:
    sky, ground = background_rows(900)
    background = np.concatenate([sky, ground]).astype(int)
    for scene in scenes.values():
        bodies, fronts = scene.colors.astype(int), scene.front_colors.astype(int)
        has_front = (bodies != fronts).any(axis=1)
        assert list(has_front) == [name in FRONT_CLASSES for name in scene.class_names]
        colours = np.concatenate([bodies, fronts[has_front]])
        assert len(np.unique(colours, axis=0)) == len(colours)
        assert (np.abs(background[None] - colours[:, None]).max(axis=2).min(axis=1) >= 30).all()
        saturation = (bodies.max(axis=1) - bodies.min(axis=1)) / np.maximum(bodies.max(axis=1), 1)
        assert (saturation > 0.6).all()


@pytest.mark.parametrize("seed", range(0, 40, 4))
def test_footprints_never_overlap_each_other_or_the_ego(scenes, seed: int) -> None:
    scene = scenes[seed]
    for t in np.linspace(0.0, HORIZON, 31):
        # Every footprint grown by 0.1 m: the scenes keep 0.3 m between footprints, which this implies.
        boxes = footprints_at(scene, t, 0.1)
        ego = ego_footprint_at(scene, t, 0.1)
        for a in range(len(boxes)):
            assert not convex_overlap(boxes[a], ego), (seed, t, scene.objects[a])
            for b in range(a):
                assert not convex_overlap(boxes[a], boxes[b]), (seed, t, scene.objects[a], scene.objects[b])


def test_the_overlap_check_sees_overlaps() -> None:
    diamond = footprint(np.zeros(2), math.pi / 4, 2.0, 2.0)  # |x| + |y| <= sqrt(2)
    assert convex_overlap(diamond, footprint(np.array([1.2, 1.2]), 0.0, 1.0, 1.0))
    # Bounding boxes overlap, the shapes do not: only the diamond's edge normal separates them.
    assert not convex_overlap(diamond, footprint(np.array([1.3, 1.3]), 0.0, 1.0, 1.0))


def test_positions_within_the_detection_range(scenes) -> None:
    for scene in scenes.values():
        xy = np.array([obj.position for obj in scene.objects])
        assert (np.abs(xy) <= 50.0).all()
    spread = np.concatenate([[obj.position for obj in s.objects] for s in scenes.values()])
    assert (spread[:, 0] > 35).any() and (spread[:, 0] < -35).any()  # the whole range is used, ahead and behind
    assert (spread[:, 1] > 20).any() and (spread[:, 1] < -20).any()  # and off the road


def test_headings_cover_the_circle_while_most_vehicles_follow_the_road(scenes) -> None:
    cars = [obj for s in scenes.values() for obj in s.objects if obj.class_name == "car"]
    yaw = np.array([obj.yaw for obj in cars])
    assert (np.abs(yaw) <= math.pi + 1e-12).all()
    quadrants = np.floor((yaw + math.pi) / (math.pi / 2)).astype(int) % 4
    assert set(quadrants) == {0, 1, 2, 3}
    aligned = np.abs(np.sin(yaw)) < math.sin(0.15)
    assert 0.6 < aligned.mean() < 0.95
    assert 0.2 < (np.cos(yaw[aligned]) > 0).mean() < 0.8  # both directions along the road
    # Moving vehicles, bicycles and pedestrians move forwards, at class-typical speeds.
    for s in scenes.values():
        for obj in s.objects:
            speed = math.hypot(*obj.velocity)
            limit = {"pedestrian": 1.8, "traffic_cone": 0.0, "barrier": 0.0, "bicycle": 7.0}.get(obj.class_name, 15.5)
            assert speed <= limit + 1e-9, obj
            if speed > 0:
                assert math.cos(math.atan2(obj.velocity[1], obj.velocity[0]) - obj.yaw) > 0.999, obj
    moving = [math.hypot(*obj.velocity) > 0 for obj in cars]
    assert 0.3 < np.mean(moving) < 0.95  # driving and parked cars


def test_the_ego_motion_varies(scenes) -> None:
    speeds = np.array([s.ego.speed for s in scenes.values()])
    yaw_rates = np.array([s.ego.yaw_rate for s in scenes.values()])
    assert (speeds >= 0).all() and (speeds <= 12).all() and (np.abs(yaw_rates) <= 0.06).all()
    assert (speeds == 0).any() and (speeds > 8).any() and len(np.unique(speeds)) > len(SEEDS) // 2
    assert (yaw_rates > 0.02).any() and (yaw_rates < -0.02).any()
    assert (yaw_rates[speeds == 0] == 0).all()  # a standing car does not turn on the spot


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_cars_near_the_ego_get_lidar_points_unless_hidden(seed: int) -> None:
    rig = SyntheticRig(seed=seed, noise=False, scene=random_scene(seed))
    pts = rig.lidar_sweep(0.0)
    boxes, names = rig.ground_truth_boxes(0.0)
    lidar = rig.rig.lidar
    xyz = np.stack([pts["x"], pts["y"], pts["z"]], axis=1).astype(np.float64)
    azimuth = np.arctan2(xyz[:, 1], xyz[:, 0])
    counts = [inside_box(xyz, pts["time"], box, 0.02).sum() for box in boxes]
    near_cars = [m for m, (box, name) in enumerate(zip(boxes, names)) if name == "car" and np.hypot(*box[:2]) < 30]
    assert near_cars
    for m in near_cars:
        if counts[m] > 0:
            continue
        # No point on the car: the ray closest to its centre must return from a nearer object that hides it.
        box = boxes[m].copy()
        centre_az = math.atan2(box[1], box[0])
        box[:2] += box[7:9] * lidar.crossing_time(centre_az)
        centre = box[:3] + [0.0, 0.0, box[5] / 2]
        elevation = math.degrees(math.atan2(centre[2], math.hypot(*centre[:2])))
        ring = int(np.argmin(np.abs(lidar.elevations_deg - elevation)))
        candidates = np.flatnonzero(pts["ring"] == ring)
        k = candidates[np.argmin(np.abs(np.angle(np.exp(1j * (azimuth[candidates] - centre_az)))))]
        assert np.linalg.norm(xyz[k]) < np.linalg.norm(centre), f"car {m} at {box[:2]} neither hit nor hidden"
        assert any(inside_box(xyz[k:k + 1], pts["time"][k:k + 1], other, 0.02)[0]
                   for j, other in enumerate(boxes) if j != m), f"car {m}: the hiding return is on no object"
    assert sum(counts[m] > 0 for m in near_cars) >= 0.7 * len(near_cars)


def inside_box(xyz: np.ndarray, time: np.ndarray, box: np.ndarray, margin: float) -> np.ndarray:
    """Mask of points inside ``box`` (grown by ``margin``) where the box was when each point fired."""
    x, y, z, dx, dy, dz, yaw, vx, vy = box
    c, s = math.cos(yaw), math.sin(yaw)
    px, py = xyz[:, 0] - x - vx * time, xyz[:, 1] - y - vy * time
    lx, ly = c * px + s * py, -s * px + c * py
    return ((np.abs(lx) <= dx / 2 + margin) & (np.abs(ly) <= dy / 2 + margin)
            & (xyz[:, 2] >= z - margin) & (xyz[:, 2] <= z + dz + margin))


def exhaustive_sweep(rig: SyntheticRig, t: float) -> np.ndarray:
    """Reference LiDAR turn: every ray slab-tested against every part of every object (what the rig culls), same
    noise draws; the nearest part wins, the first in object and part order on ties."""
    lidar = rig.rig.lidar
    az, tau = lidar.azimuths(), lidar.firing_times()
    el = np.radians(lidar.elevations_deg)
    dirs = np.stack(np.broadcast_arrays(np.cos(el)[None, :] * np.cos(az)[:, None],
                                        np.cos(el)[None, :] * np.sin(az)[:, None], np.sin(el)[None, :]), axis=-1)
    T_lidar_odom = invert_rigid(rig.ego_pose(t) @ rig.rig.T_base_lidar)
    centre, R, _, vel = rig.scene.box_states(t)
    Rf = T_lidar_odom[:3, :3]
    centre, R, vel = centre @ Rf.T + T_lidar_odom[:3, 3], Rf @ R, vel @ Rf.T
    t_obj = np.full(dirs.shape[:2], np.inf)
    albedo_obj, cos_obj = np.zeros(dirs.shape[:2]), np.zeros(dirs.shape[:2])
    for obj, c, R_obj, v in zip(rig.scene.objects, centre, R, vel):
        origin_local = -((c + v * tau[:, None]) @ R_obj)[:, None, :]
        dir_local = dirs @ R_obj
        # Parts in the object frame centred on its box (the ground at -dz / 2).
        for k, (lo, hi) in enumerate(object_parts(obj.class_name, obj.size) - [0.0, 0.0, obj.size[2] / 2.0]):
            with np.errstate(divide="ignore", invalid="ignore"):
                t1, t2 = (lo - origin_local) / dir_local, (hi - origin_local) / dir_local
            t_enter_axes = np.fmin(t1, t2)
            t_enter = t_enter_axes.max(axis=-1)
            hit = (t_enter <= np.fmax(t1, t2).min(axis=-1)) & (t_enter > 0.0) & (t_enter < t_obj)
            axis = t_enter_axes.argmax(axis=-1)
            front = (k == 0) & (axis == 0) & (dir_local[..., 0] < 0.0)
            t_obj = np.where(hit, t_enter, t_obj)
            albedo_obj = np.where(hit, np.where(front, obj.front_albedo, obj.albedo), albedo_obj)
            cos_obj = np.where(hit, np.abs(np.take_along_axis(dir_local, axis[..., None], axis=-1)[..., 0]), cos_obj)
    normal = T_lidar_odom[:3, 2]
    down = dirs @ normal
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = np.where(down < 0.0, (normal @ T_lidar_odom[:3, 3]) / down, np.inf)
    use_obj = t_obj < t_ground
    rng_m = np.where(use_obj, t_obj, t_ground)
    intensity = np.where(use_obj, albedo_obj * (0.35 + 0.65 * cos_obj), 14.0 * (0.35 + 0.65 * np.abs(down)))
    valid = (rng_m >= lidar.min_range) & (rng_m <= lidar.max_range)
    if rig.noise:
        rng = np.random.default_rng([rig.seed, round(t * 1e6)])
        rng_m = rng_m + rng.normal(0.0, 0.01, size=rng_m.shape)
        intensity = intensity + rng.normal(0.0, 1.5, size=intensity.shape)
    out = np.empty(int(valid.sum()), dtype=POINT_DTYPE)
    xyz = dirs[valid] * rng_m[valid][:, None]
    out["x"], out["y"], out["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    out["intensity"] = np.clip(np.round(intensity[valid]), 0.0, 255.0)
    out["ring"] = np.broadcast_to(np.arange(len(el), dtype=np.uint16)[None, :], valid.shape)[valid]
    out["time"] = np.broadcast_to(tau[:, None], valid.shape)[valid]
    return out


def crowded_scene() -> Scene:
    """A random scene plus the culling's corner cases: beside the LiDAR, across the azimuth wrap (behind the
    ego), fast and crossing the wrap during the turn, partly and wholly beyond the 70 m range."""
    scene = max((random_scene(seed) for seed in range(40)), key=lambda s: len(s.objects))
    extra = (
        SceneObject("car", (4.6, 1.9, 1.6), (1.0, 2.3), 0.4, (0.0, 0.0), (10, 250, 20), 40.0, (200, 20, 20), 150.0),
        SceneObject("bus", (11.0, 2.9, 3.3), (-20.0, 0.0), 1.2, (0.0, 0.0), (20, 10, 250), 40.0, (250, 250, 20), 99.0),
        SceneObject("car", (4.6, 1.9, 1.6), (-9.0, -3.0), 1.5, (0.0, 25.0), (250, 10, 250), 40.0, (20, 250, 250), 99.0),
        SceneObject("truck", (9.0, 2.5, 3.0), (66.0, -22.0), 0.0, (0.0, 0.0), (90, 10, 20), 40.0, (20, 90, 10), 150.0),
        SceneObject("truck", (9.0, 2.5, 3.0), (85.0, 0.0), 0.0, (0.0, 0.0), (20, 10, 90), 40.0, (10, 20, 90), 150.0),
    )
    return replace(scene, objects=scene.objects + extra)


@pytest.mark.parametrize("noise", [False, True])
def test_culled_lidar_matches_the_exhaustive_ray_cast(noise: bool) -> None:
    scene = crowded_scene()
    assert len(scene.objects) >= 35
    rig = SyntheticRig(seed=5, noise=noise, scene=scene)
    for t in (0.0, 1.35, 2.9):
        got, want = rig.lidar_sweep(t), exhaustive_sweep(rig, t)
        assert len(got) == len(want)
        for name in ("ring", "time", "intensity"):
            np.testing.assert_array_equal(got[name], want[name])
        for name in ("x", "y", "z"):
            np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-5)
    # The corner cases are hit (the car beside the LiDAR, the bus and the fast car across the wrap, the truck at
    # the range limit), all but the truck beyond the range.
    boxes, _ = rig.ground_truth_boxes(0.0)
    pts = rig.lidar_sweep(0.0)
    xyz = np.stack([pts["x"], pts["y"], pts["z"]], axis=1).astype(np.float64)
    hits = [inside_box(xyz, pts["time"], box, 0.02).sum() for box in boxes[-5:]]
    assert all(n > 0 for n in hits[:4]) and hits[4] == 0, hits


@pytest.mark.parametrize("t", [0.0, 1.35])
def test_every_lidar_point_on_an_object_lies_inside_its_box(t: float) -> None:
    scene = crowded_scene()
    hit = 0
    for obj in scene.objects:
        # The object alone: every return above the ground is on it.
        rig = SyntheticRig(seed=5, noise=False, scene=replace(scene, objects=(obj,)))
        pts = rig.lidar_sweep(t)
        box = rig.ground_truth_boxes(t)[0][0]
        pts = pts[pts["z"] > 1e-3 - rig.rig.T_base_lidar[2, 3]]
        xyz = np.stack([pts["x"], pts["y"], pts["z"]], axis=1).astype(np.float64)
        # Where the box was when each point fired (the motion during the turn), with float32 rounding.
        assert inside_box(xyz, pts["time"], box, 2e-3).all(), obj
        if np.hypot(*box[:2]) < 30.0:
            assert len(pts) > 0, obj
            hit += 1
    assert hit >= 20
