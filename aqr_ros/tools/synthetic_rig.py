"""Deterministic synthetic nuScenes-like sensor rig: six cameras, a spinning 32-ring LiDAR, a moving ego and boxes.

Frames (all right-handed, ``T_a_b`` maps points from frame ``b`` into frame ``a``: ``p_a = T_a_b @ p_b``):

* ``odom``: fixed world frame, z up, the ground is the plane z = 0.
* ``base_link``: the ego vehicle, REP-103 (x forward, y left, z up), origin on the ground.
* ``lidar_top``: the LiDAR, REP-103 axes (x forward). The model's nuScenes LIDAR_TOP frame has different axes
  (x right, y forward); converting clouds, lidar2img and boxes into it is the pipeline's job
  (``aqr_ros.pipeline.calibration``), not the rig's.
* ``cam_*_optical``: camera optical frames (z forward, x right, y down), pixels follow ``K`` (OpenCV convention).

Times ``t`` are seconds since the start of the sequence; ROS stamps are ``start_time + t``. LiDAR sweeps start
every 50 ms (20 Hz); camera ``i`` exposes at ``camera_offsets[i] + n / 12`` (12 Hz), the offset being the moment
the LiDAR beam sweeps across that camera's optical axis, as on the nuScenes car. Everything is a pure function of
the seed and ``t``: the same seed gives identical bytes.

Scenes: :meth:`Scene.generate` jitters one fixed street; :func:`aqr_ros.tools.rig_scenes.random_scene` draws
streets from a distribution for training. Objects have a front face of their own colour and LiDAR albedo, and
cars and trucks an asymmetric profile of box parts (:func:`object_parts`), so that their heading is observable
from any side.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import cv2
import numpy as np

ODOM_FRAME = "odom"
BASE_FRAME = "base_link"
LIDAR_FRAME = "lidar_top"
#: Camera names in model view order; also the topic namespaces (``/cam_front/image_raw``).
CAMERA_NAMES = ("cam_front", "cam_front_right", "cam_front_left", "cam_back", "cam_back_left", "cam_back_right")
IMAGE_WIDTH, IMAGE_HEIGHT = 1600, 900
LIDAR_PERIOD = 0.05
CAMERA_PERIOD = 1.0 / 12.0
#: Packed point layout of :meth:`SyntheticRig.lidar_sweep` (22 bytes, like a Velodyne driver's XYZIRT cloud).
POINT_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4"),
                        ("ring", "<u2"), ("time", "<f4")])

# Camera mounting: (x, y, z) in base_link [m], yaw, pitch (nose down positive), roll [deg], fx, fy, cx, cy.
_CAMERA_MOUNTS = (
    ((1.70, 0.00, 1.52), 0.0, 0.6, 0.2, 1266.4, 1266.4, 816.3, 491.5),
    ((1.55, -0.49, 1.50), -55.0, 0.4, -0.3, 1260.8, 1260.8, 807.9, 495.3),
    ((1.52, 0.49, 1.51), 55.0, 0.8, 0.1, 1272.6, 1272.6, 826.6, 479.8),
    ((0.03, 0.00, 1.57), 180.0, 0.9, -0.2, 809.2, 809.2, 829.2, 481.8),
    ((1.04, 0.48, 1.56), 110.0, 0.5, 0.3, 1256.7, 1256.7, 792.1, 492.8),
    ((1.05, -0.48, 1.56), -110.0, 0.7, -0.1, 1259.5, 1259.5, 807.3, 501.2),
)
_LIDAR_MOUNT = (0.94, 0.00, 1.84)
# Optical axes expressed in a camera body frame with REP-103 axes: z_opt → x, x_opt → -y, y_opt → -z.
_R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])

# Box faces as corner indices, counter-clockwise seen from outside; corner k has signs of _CORNER_SIGNS[k].
_CORNER_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
_FACES = np.array([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]])
_FACE_NORMALS = np.array([[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, -1], [0, 0, 1]], dtype=np.float64)
# Whether each face lies on the max corner's side of a box (+x, +y, +z) rather than the min corner's.
_FACE_OUTWARD_MAX = _FACE_NORMALS.sum(axis=1) > 0.0
#: Index in _FACES of the front face (+x in the object frame: where the heading points).
_FRONT_FACE = 1
# Part layouts: (min, max) corners of each part as fractions of (length, width, height), x and y from the box
# centre, z from the ground; the first part carries the object's front face. Other classes are one whole box.
_PART_LAYOUTS = {
    # A lower body over the whole box, 0.55 high (long bonnet in front, short boot behind); the greenhouse on it,
    # half the length, set back (centre at -0.08 L) and slightly narrower.
    "car": (((-0.5, -0.5, 0.0), (0.5, 0.5, 0.55)), ((-0.33, -0.45, 0.55), (0.17, 0.45, 1.0))),
    # A lower cab at the front, a gap, then the full-height cargo box over the rear 70 %.
    "truck": (((0.25, -0.5, 0.0), (0.5, 0.5, 0.8)), ((-0.5, -0.5, 0.0), (0.2, 0.5, 1.0))),
}
_WHOLE_BOX = (((-0.5, -0.5, 0.0), (0.5, 0.5, 1.0)),)

_GROUND_ALBEDO = 14.0
# Image background: sky and ground colours (BGR) at the top of the image, and how much they darken (sky) or
# brighten (ground) towards the bottom row.
_SKY_BGR = np.array([250.0, 215.0, 175.0])
_SKY_GRADIENT = -40.0
_GROUND_BGR = np.array([78.0, 82.0, 86.0])
_GROUND_GRADIENT = 24.0
#: Classes whose front (+x face) differs from the body: headlights and number plate, a face and chest.
FRONT_CLASSES = frozenset({"car", "truck", "bus", "bicycle", "pedestrian"})
# Front colours: vehicles mix their body colour into a warm headlight white, pedestrians into white (lighter).
_VEHICLE_FRONT_MIX = (np.array([170.0, 240.0, 255.0]), 0.7)
_PEDESTRIAN_FRONT_MIX = (np.array([255.0, 255.0, 255.0]), 0.45)
_NEAR_PLANE = 0.05
# Rings within this many radians outside a box's elevation bounds are still cast against it (rounding).
_ELEVATION_PAD = 1e-6
_SUBPIXEL_BITS = 4


def _rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rigid(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def background_rows(height: int) -> tuple[np.ndarray, np.ndarray]:
    """[height, 3] uint8 sky and ground BGR colour of every image row (the vertical gradient of the background)."""
    f = (np.arange(height, dtype=np.float64) / height)[:, None]
    sky = _SKY_BGR + f * _SKY_GRADIENT
    ground = _GROUND_BGR + f * _GROUND_GRADIENT
    return sky.round().astype(np.uint8), ground.round().astype(np.uint8)


_BACKGROUND_COLORS = np.unique(np.concatenate(background_rows(IMAGE_HEIGHT)), axis=0).astype(np.int32)


def background_clearance(color: tuple[int, int, int]) -> int:
    """Per-channel (L-inf) distance from a BGR colour to the nearest sky or ground colour of a rig image.

    Object colours must keep clear of the background so that pixels can be attributed by exact colour.
    """
    return int(np.abs(_BACKGROUND_COLORS - np.asarray(color, dtype=np.int32)).max(axis=1).min())


def front_color(class_name: str, color: tuple[int, int, int]) -> tuple[int, int, int]:
    """Colour of an object's front face derived from its body colour, so that its heading shows in the images.

    Vehicles get a warm headlight white tinted by the body, pedestrians a lighter shade of it; symmetric classes
    (cones, barriers) keep the body colour.
    """
    if class_name not in FRONT_CLASSES:
        return tuple(int(c) for c in color)
    target, weight = _PEDESTRIAN_FRONT_MIX if class_name == "pedestrian" else _VEHICLE_FRONT_MIX
    mixed = (1.0 - weight) * np.asarray(color, dtype=np.float64) + weight * target
    return tuple(int(c) for c in np.round(mixed))


def object_parts(class_name: str, size: tuple[float, float, float]) -> np.ndarray:
    """[P, 2, 3] min and max corners of an object's axis-aligned parts in its frame (x forward, z up from the ground).

    Cars and trucks get an asymmetric profile, so that their heading shows from the side as well; other classes
    are one box. The parts do not overlap, their bounding box is ``size`` and the first carries the front face.
    """
    return np.array(_PART_LAYOUTS.get(class_name, _WHOLE_BOX)) * np.asarray(size, dtype=np.float64)


def invert_rigid(T: np.ndarray) -> np.ndarray:
    """Inverse of a 4x4 rigid transform (transpose the rotation), exact up to rounding."""
    R, t = T[:3, :3], T[:3, 3]
    return _rigid(R.T, -R.T @ t)


@dataclass(frozen=True, eq=False)
class CameraInfoData:
    """The contents of a sensor_msgs/CameraInfo for one rig camera (no distortion, rectified)."""

    frame_id: str
    width: int
    height: int
    K: np.ndarray
    D: np.ndarray
    R: np.ndarray
    P: np.ndarray
    distortion_model: str = "plumb_bob"


@dataclass(frozen=True, eq=False)
class CameraSpec:
    """One camera: name (topic namespace), optical frame id, 3x3 intrinsics, image size and pose on the car."""

    name: str
    frame_id: str
    K: np.ndarray
    width: int
    height: int
    #: 4x4 base_link ← optical frame.
    T_base_cam: np.ndarray


@dataclass(frozen=True, eq=False)
class LidarSpec:
    """A spinning multi-ring LiDAR: ring elevations, azimuth steps per turn, range limits and turn period."""

    elevations_deg: np.ndarray = field(default_factory=lambda: np.linspace(-30.67, 10.67, 32))
    azimuth_steps: int = 1000
    max_range: float = 70.0
    min_range: float = 1.0
    period: float = LIDAR_PERIOD
    #: Azimuth (rad, lidar frame) of the first firing; the head turns clockwise seen from above.
    start_azimuth: float = math.pi

    def azimuths(self) -> np.ndarray:
        """Azimuth of every firing column in firing order (rad, counter-clockwise from x)."""
        return self.start_azimuth - 2.0 * math.pi * np.arange(self.azimuth_steps) / self.azimuth_steps

    def firing_times(self) -> np.ndarray:
        """Time of every firing column relative to the sweep start (s)."""
        return self.period * np.arange(self.azimuth_steps) / self.azimuth_steps

    def crossing_time(self, azimuth: float) -> float:
        """When, within a sweep, the beam points at ``azimuth`` (rad, lidar frame)."""
        turn = ((self.start_azimuth - azimuth) / (2.0 * math.pi)) % 1.0
        return self.period * turn


@dataclass(frozen=True, eq=False)
class Rig:
    """The sensor rig: six cameras in model order and the LiDAR, as static transforms relative to base_link."""

    cameras: tuple[CameraSpec, ...]
    #: 4x4 base_link ← lidar_top.
    T_base_lidar: np.ndarray
    lidar: LidarSpec

    @classmethod
    def nuscenes_like(cls) -> Rig:
        """The nuScenes-like default rig: 1600x900 cameras at yaws 0, -55, +55, 180, +110, -110 deg, a 32-ring LiDAR."""
        cameras = []
        for name, (xyz, yaw, pitch, roll, fx, fy, cx, cy) in zip(CAMERA_NAMES, _CAMERA_MOUNTS):
            R = _rot_z(math.radians(yaw)) @ _rot_y(math.radians(pitch)) @ _rot_x(math.radians(roll)) @ _R_BODY_OPTICAL
            K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
            cameras.append(CameraSpec(name, f"{name}_optical", K, IMAGE_WIDTH, IMAGE_HEIGHT,
                                      _rigid(R, np.array(xyz))))
        return cls(tuple(cameras), _rigid(np.eye(3), np.array(_LIDAR_MOUNT)), LidarSpec())

    @property
    def T_base_cam(self) -> np.ndarray:
        """[6, 4, 4] base_link ← optical frame of every camera, in model order."""
        return np.stack([cam.T_base_cam for cam in self.cameras])

    @property
    def camera_frame_ids(self) -> tuple[str, ...]:
        """Optical frame id of every camera in model order."""
        return tuple(cam.frame_id for cam in self.cameras)

    def T_cam_lidar(self, i: int) -> np.ndarray:
        """4x4 optical frame of camera ``i`` ← lidar_top (what a tf lookup camera ← lidar returns)."""
        return invert_rigid(self.cameras[i].T_base_cam) @ self.T_base_lidar

    def lidar2img(self, i: int) -> np.ndarray:
        """4x4 ``K4 @ T_cam_lidar(i)``: lidar_top points to full-resolution pixels (u*d, v*d, d, 1)."""
        K4 = np.eye(4)
        K4[:3, :3] = self.cameras[i].K
        return K4 @ self.T_cam_lidar(i)

    def lidar2img_all(self) -> np.ndarray:
        """[6, 4, 4] :meth:`lidar2img` of every camera in model order."""
        return np.stack([self.lidar2img(i) for i in range(len(self.cameras))])

    def camera_info(self, i: int) -> CameraInfoData:
        """CameraInfo contents of camera ``i``: K, zero plumb_bob distortion, identity R, P = [K | 0]."""
        cam = self.cameras[i]
        P = np.zeros((3, 4))
        P[:, :3] = cam.K
        return CameraInfoData(cam.frame_id, cam.width, cam.height, cam.K.copy(), np.zeros(5), np.eye(3), P)

    def static_transforms(self) -> list[tuple[str, str, np.ndarray]]:
        """(parent, child, T_parent_child) of every static frame: base_link → lidar_top and → each optical frame."""
        return [(BASE_FRAME, LIDAR_FRAME, self.T_base_lidar)] + [
            (BASE_FRAME, cam.frame_id, cam.T_base_cam) for cam in self.cameras]

    def camera_offsets(self) -> np.ndarray:
        """[6] exposure phase of each camera (s): when the LiDAR beam crosses the camera's optical axis."""
        T_lidar_base = invert_rigid(self.T_base_lidar)
        axes = np.stack([(T_lidar_base[:3, :3] @ cam.T_base_cam[:3, :3])[:, 2] for cam in self.cameras])
        return np.array([self.lidar.crossing_time(math.atan2(a[1], a[0])) for a in axes])

    def nearest_exposure(self, i: int, t: float) -> float:
        """Time of camera ``i``'s exposure nearest to ``t`` (``camera_offsets()[i] + n / 12``, n >= 0)."""
        offset = float(self.camera_offsets()[i])
        return offset + max(0, round((t - offset) / CAMERA_PERIOD)) * CAMERA_PERIOD


@dataclass(frozen=True)
class SceneObject:
    """An object on the ground: class name (nuScenes list), size, pose and velocity in odom at t = 0, colours, albedos.

    Its shape is :func:`object_parts` of its class within the box ``size``. The front face (+x face of the first
    part, where ``yaw`` points) has its own colour and albedo so that the heading is observable; left as ``None``
    they are set to the body's (a symmetric object).
    """

    class_name: str
    #: (length dx, width dy, height dz) in metres.
    size: tuple[float, float, float]
    #: (x, y) of the bottom centre in odom at t = 0.
    position: tuple[float, float]
    yaw: float
    #: (vx, vy) in odom, m/s; constant.
    velocity: tuple[float, float]
    #: BGR colour of the body (every face but the front) in the camera images; unique per scene.
    color: tuple[int, int, int]
    #: LiDAR reflectivity (0..255) of the body at normal incidence.
    albedo: float
    #: BGR colour of the front face; unique per scene unless it equals ``color``. ``None``: ``color``.
    front_color: tuple[int, int, int] | None = None
    #: LiDAR reflectivity of the front face (headlights, number plate). ``None``: ``albedo``.
    front_albedo: float | None = None

    def __post_init__(self) -> None:
        """Resolve an unset front colour or albedo to the body's."""
        if self.front_color is None:
            object.__setattr__(self, "front_color", self.color)
        if self.front_albedo is None:
            object.__setattr__(self, "front_albedo", self.albedo)


@dataclass(frozen=True)
class EgoMotion:
    """Constant speed and yaw rate from the odom origin: the ego drives forward on a gentle left curve."""

    speed: float = 5.0
    yaw_rate: float = 0.04

    def pose(self, t: float) -> np.ndarray:
        """4x4 odom ← base_link at time ``t`` (exact circular arc)."""
        theta = self.yaw_rate * t
        # sin(theta)/w and (1 - cos(theta))/w written with sinc so that a zero yaw rate is exact.
        x = self.speed * t * np.sinc(theta / math.pi)
        y = self.speed * t * math.sin(theta / 2.0) * np.sinc(theta / (2.0 * math.pi))
        return _rigid(_rot_z(theta), np.array([x, y, 0.0]))


# Object templates: class, size, (x, y), yaw, (vx, vy), BGR colour, albedo. Colours are far from the background;
# several objects stand where neighbouring cameras overlap. Front colours follow from front_color(), front albedos
# from _TEMPLATE_FRONT_ALBEDO.
_TEMPLATE = (
    ("car", (4.6, 1.9, 1.6), (16.0, 0.3), 0.0, (6.5, 0.0), (48, 48, 224), 45.0),
    ("car", (4.4, 1.85, 1.55), (11.0, -5.3), 0.05, (0.0, 0.0), (224, 128, 32), 40.0),
    ("car", (4.7, 1.95, 1.7), (38.0, 3.7), math.pi, (-8.0, 0.0), (48, 192, 48), 50.0),
    ("car", (4.5, 1.9, 1.5), (-13.0, -0.2), 0.0, (5.5, 0.0), (208, 64, 208), 42.0),
    ("car", (4.3, 1.8, 1.5), (2.3, 8.5), 0.1, (0.0, 0.0), (32, 208, 240), 38.0),
    ("pedestrian", (0.7, 0.7, 1.8), (9.5, 4.4), -math.pi / 2, (0.0, -1.2), (255, 255, 64), 25.0),
    ("pedestrian", (0.65, 0.7, 1.75), (-8.0, -8.0), 0.6, (0.0, 0.0), (128, 0, 160), 22.0),
    ("pedestrian", (0.7, 0.65, 1.8), (2.5, -8.0), 0.0, (1.3, 0.0), (0, 0, 128), 28.0),
    ("traffic_cone", (0.4, 0.4, 0.7), (7.0, -2.6), 0.0, (0.0, 0.0), (0, 128, 255), 180.0),
    ("traffic_cone", (0.4, 0.4, 0.7), (9.5, -2.7), 0.3, (0.0, 0.0), (0, 96, 255), 180.0),
    ("traffic_cone", (0.4, 0.4, 0.7), (-7.5, 2.6), 0.0, (0.0, 0.0), (64, 160, 255), 180.0),
)
# Front albedo of the template's classes with a front: bright headlights and plates, lighter clothing in front.
_TEMPLATE_FRONT_ALBEDO = {"car": 160.0, "pedestrian": 45.0}


@dataclass(frozen=True)
class Scene:
    """Ground plane (odom z = 0), a few boxes moving at constant velocity, and the ego motion."""

    objects: tuple[SceneObject, ...]
    ego: EgoMotion = field(default_factory=EgoMotion)

    @classmethod
    def generate(cls, seed: int = 0) -> Scene:
        """The default street scene with positions, headings and sizes jittered by ``seed`` (same seed, same scene)."""
        rng = np.random.default_rng(seed)
        n = len(_TEMPLATE)
        shift = rng.uniform(-0.3, 0.3, size=(n, 2))
        turn = rng.uniform(-0.12, 0.12, size=n)
        scale = rng.uniform(0.95, 1.05, size=(n, 3))
        objects = tuple(
            SceneObject(name, tuple(float(v) for v in np.multiply(size, scale[k])),
                        (x + float(shift[k, 0]), y + float(shift[k, 1])), yaw + float(turn[k]),
                        velocity, color, albedo, front_color(name, color), _TEMPLATE_FRONT_ALBEDO.get(name))
            for k, (name, size, (x, y), yaw, velocity, color, albedo) in enumerate(_TEMPLATE))
        return cls(objects)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class name of every object, in object order."""
        return tuple(obj.class_name for obj in self.objects)

    @property
    def colors(self) -> np.ndarray:
        """[M, 3] uint8 BGR body colour of every object."""
        return np.array([obj.color for obj in self.objects], dtype=np.uint8).reshape(-1, 3)

    @property
    def front_colors(self) -> np.ndarray:
        """[M, 3] uint8 BGR front-face colour of every object."""
        return np.array([obj.front_color for obj in self.objects], dtype=np.uint8).reshape(-1, 3)

    def box_states(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Odom geometric centres [M, 3], rotations object → odom [M, 3, 3], half sizes [M, 3], velocities [M, 3]."""
        size = np.array([obj.size for obj in self.objects])
        vel = np.array([(*obj.velocity, 0.0) for obj in self.objects])
        pos = np.array([(*obj.position, 0.0) for obj in self.objects])
        yaw = np.array([obj.yaw for obj in self.objects])
        centre = pos + vel * t
        centre[:, 2] = size[:, 2] / 2.0
        c, s = np.cos(yaw), np.sin(yaw)
        R = np.zeros((len(yaw), 3, 3))
        R[:, 0, 0], R[:, 0, 1], R[:, 1, 0], R[:, 1, 1], R[:, 2, 2] = c, -s, s, c, 1.0
        return centre, R, size / 2.0, vel

    def part_bounds(self) -> list[np.ndarray]:
        """Per object, its parts' [P, 2, 3] min and max corners in the box frame of :meth:`box_states` (centred)."""
        return [object_parts(obj.class_name, obj.size) - [0.0, 0.0, obj.size[2] / 2.0] for obj in self.objects]


class SensorEvent(NamedTuple):
    """One scheduled measurement: time since start, sensor (-1 for the LiDAR, else a camera index), frame number."""

    t: float
    sensor: int
    index: int


@dataclass(frozen=True, eq=False)
class LidarFrame:
    """One LiDAR sweep with its stamp, the ego pose at the stamp and the ground truth in the lidar frame."""

    index: int
    t: float
    stamp: float
    points: np.ndarray
    T_odom_base: np.ndarray
    boxes: np.ndarray
    class_names: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class CameraFrame:
    """One camera image (900x1600x3 BGR uint8) with its camera index, stamp and ego pose at exposure."""

    camera: int
    index: int
    t: float
    stamp: float
    image: np.ndarray
    T_odom_base: np.ndarray


def _clip_near(poly: np.ndarray, z_near: float) -> np.ndarray:
    """The part of a convex polygon [n, 3] (camera frame) with z >= z_near, vertices in the same order."""
    if poly[:, 2].min() >= z_near:
        return poly
    nxt = np.roll(poly, -1, axis=0)
    inside, nxt_inside = poly[:, 2] >= z_near, nxt[:, 2] >= z_near
    # Edges parallel to the near plane give inf or nan crossings, never kept.
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (z_near - poly[:, 2]) / (nxt[:, 2] - poly[:, 2])
        crossing = poly + a[:, None] * (nxt - poly)
    candidates = np.stack([poly, crossing], axis=1)
    keep = np.stack([inside, inside != nxt_inside], axis=1)
    return candidates[keep]


def _enter_parts(parts: np.ndarray, origin: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slab test of rays against box parts [P, 2, 3] (all in the parts' frame): entry ranges and entered axes.

    ``origin`` and ``direction`` [..., 3] broadcast together; both results are [P, ...]: the range to the entry
    point (``inf`` where a ray misses the part or starts inside it) and the axis of the face it enters through.
    """
    shape = (len(parts),) + (1,) * (direction.ndim - 1) + (3,)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (parts[:, 0].reshape(shape) - origin) / direction
        t2 = (parts[:, 1].reshape(shape) - origin) / direction
    t_enter_axes = np.fmin(t1, t2)
    t_enter = t_enter_axes.max(axis=-1)
    hit = (t_enter <= np.fmax(t1, t2).min(axis=-1)) & (t_enter > 0.0)
    return np.where(hit, t_enter, np.inf), t_enter_axes.argmax(axis=-1)


def _painting_order(parts: np.ndarray, eye: np.ndarray) -> np.ndarray:
    """Indices of an object's parts [P, 2, 3] in the order to paint them seen from ``eye`` (same frame).

    Two disjoint boxes are separated by a plane across one axis; the one on the eye's side may hide the other but
    never the reverse, so it is painted later; parts are sorted by how many others they may hide (exact for two
    parts, or parts in a row). Distance would not do: seen from ahead, a car's lower body, whose top runs under the
    cabin, is nearer than the cabin.
    """
    hides = np.zeros(len(parts), dtype=np.int64)
    for a, b in itertools.combinations(range(len(parts)), 2):
        # gaps[0]: how far b lies above a along each axis, gaps[1]: a above b; the largest is a separation.
        gaps = np.stack([parts[b, 0] - parts[a, 1], parts[a, 0] - parts[b, 1]])
        side, axis = np.unravel_index(np.argmax(gaps), gaps.shape)
        low, high = (a, b) if side == 0 else (b, a)
        plane = (parts[low, 1, axis] + parts[high, 0, axis]) / 2.0
        hides[high if eye[axis] > plane else low] += 1
    return np.argsort(hides, kind="stable")


def _fill_face(image: np.ndarray, K: np.ndarray, face: np.ndarray, color: tuple[int, int, int]) -> None:
    """Paint one planar convex face [n, 3] (camera frame) into ``image`` in ``color``, clipped at the near plane."""
    poly = _clip_near(face, _NEAR_PLANE)
    if len(poly) < 3:
        return
    uvw = poly @ K.T
    uv = np.round(uvw[:, :2] / uvw[:, 2:3] * float(1 << _SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillConvexPoly(image, uv, color, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)


class SyntheticRig:
    """The rig, the scene and the ego motion together: LiDAR sweeps, camera images, CameraInfo and ground truth."""

    def __init__(self, seed: int = 0, noise: bool = True, rig: Rig | None = None, scene: Scene | None = None):
        self.seed = seed
        self.noise = noise
        self.rig = rig if rig is not None else Rig.nuscenes_like()
        self.scene = scene if scene is not None else Scene.generate(seed)

    def ego_pose(self, t: float) -> np.ndarray:
        """4x4 odom ← base_link at time ``t``."""
        return self.scene.ego.pose(t)

    def camera_info(self, i: int) -> CameraInfoData:
        """CameraInfo contents of camera ``i``."""
        return self.rig.camera_info(i)

    def _boxes_in(self, T_frame_odom: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        centre, R, half, vel = self.scene.box_states(t)
        Rf = T_frame_odom[:3, :3]
        return centre @ Rf.T + T_frame_odom[:3, 3], Rf @ R, half, vel @ Rf.T

    def box_corners(self, t: float, T_frame_odom: np.ndarray) -> np.ndarray:
        """[M, 8, 3] corners of every object's box at ``t`` in the frame ``T_frame_odom`` maps odom points into
        (e.g. a camera's optical frame at its exposure: where the renderer paints the object)."""
        centre, R, half, _ = self._boxes_in(T_frame_odom, t)
        return centre[:, None, :] + np.einsum("mij,mkj->mki", R, _CORNER_SIGNS[None] * half[:, None, :])

    def ground_truth_boxes(self, t: float) -> tuple[np.ndarray, tuple[str, ...]]:
        """[M, 9] boxes x, y, z_bottom, dx, dy, dz, yaw, vx, vy in lidar_top at ``t`` (absolute velocity), names.

        The velocity is the object's odom velocity rotated into the lidar frame (nuScenes convention).
        """
        T_lidar_odom = invert_rigid(self.ego_pose(t) @ self.rig.T_base_lidar)
        centre, R, half, vel = self._boxes_in(T_lidar_odom, t)
        yaw = np.arctan2(R[:, 1, 0], R[:, 0, 0])
        bottom = centre - R[:, :, 2] * half[:, 2:3]
        boxes = np.column_stack([bottom, 2.0 * half, yaw, vel[:, :2]])
        return boxes, self.scene.class_names

    def lidar_sweep(self, t: float) -> np.ndarray:
        """One 50 ms LiDAR turn starting at ``t``: a structured array of :data:`POINT_DTYPE` in firing order.

        Points are in the lidar frame at the sweep start (ego motion already compensated); each object is
        sampled where it is when its column fires. ``time`` is seconds since the sweep start.
        """
        lidar = self.rig.lidar
        az, tau = lidar.azimuths(), lidar.firing_times()
        el = np.radians(lidar.elevations_deg)
        # Unit ray directions [A, R, 3] in firing order (column by column).
        dirs = np.stack(np.broadcast_arrays(np.cos(el)[None, :] * np.cos(az)[:, None],
                                            np.cos(el)[None, :] * np.sin(az)[:, None], np.sin(el)[None, :]), axis=-1)
        T_lidar_odom = invert_rigid(self.ego_pose(t) @ self.rig.T_base_lidar)
        t_obj, albedo_obj, cos_obj = self._cast_boxes(dirs, tau, *self._boxes_in(T_lidar_odom, t))

        # Ground plane (odom z = 0) in the lidar frame: n . p = offset.
        normal = T_lidar_odom[:3, 2]
        offset = normal @ T_lidar_odom[:3, 3]
        down = dirs @ normal
        with np.errstate(divide="ignore", invalid="ignore"):
            t_ground = np.where(down < 0.0, offset / down, np.inf)

        use_obj = t_obj < t_ground
        rng_m = np.where(use_obj, t_obj, t_ground)
        intensity = np.where(use_obj, albedo_obj * (0.35 + 0.65 * cos_obj),
                             _GROUND_ALBEDO * (0.35 + 0.65 * np.abs(down)))
        valid = (rng_m >= lidar.min_range) & (rng_m <= lidar.max_range)
        if self.noise:
            rng = np.random.default_rng([self.seed, round(t * 1e6)])
            rng_m = rng_m + rng.normal(0.0, 0.01, size=rng_m.shape)
            intensity = intensity + rng.normal(0.0, 1.5, size=intensity.shape)

        ring = np.broadcast_to(np.arange(len(el), dtype=np.uint16)[None, :], valid.shape)
        time = np.broadcast_to(tau[:, None], valid.shape)
        out = np.empty(int(valid.sum()), dtype=POINT_DTYPE)
        xyz = dirs[valid] * rng_m[valid][:, None]
        out["x"], out["y"], out["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        out["intensity"] = np.clip(np.round(intensity[valid]), 0.0, 255.0)
        out["ring"] = ring[valid]
        out["time"] = time[valid]
        return out

    def _cast_boxes(self, dirs: np.ndarray, tau: np.ndarray, centre: np.ndarray, R: np.ndarray, half: np.ndarray,
                    vel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest object hit of every ray [A, R]: range (inf if none), albedo of the face hit, |cos| of incidence.

        Each object's parts are slab-tested in its own frame, where it is when the column fires, and only against
        the rays that can reach its box (:meth:`_reachable_rays`); the nearest part wins, the earlier part on equal
        ranges, and on equal ranges between objects the earlier object.
        """
        t_obj = np.full(dirs.shape[:2], np.inf)
        albedo_obj = np.zeros(dirs.shape[:2])
        cos_obj = np.zeros(dirs.shape[:2])
        for m, (obj, parts) in enumerate(zip(self.scene.objects, self.scene.part_bounds())):
            cols, rings = self._reachable_rays(centre[m], R[m], half[m], vel[m])
            if len(cols) == 0 or len(rings) == 0:
                continue
            rays = np.ix_(cols, rings)
            # Row vectors times R give R^T p: object-frame ray origins [C, 1, 3] and directions [C, R', 3].
            origin_local = -((centre[m] + vel[m] * tau[cols, None]) @ R[m])[:, None, :]
            dir_local = dirs[rays] @ R[m]
            t_part, axis_part = _enter_parts(parts, origin_local, dir_local)
            part = t_part.argmin(axis=0)
            t_enter = t_part.min(axis=0)
            entered = np.choose(part, axis_part)
            closer = t_enter < t_obj[rays]
            # The front face is the first part's +x slab entered from outside, i.e. by a ray running towards -x.
            front = (part == 0) & (entered == 0) & (dir_local[..., 0] < 0.0)
            cos_entered = np.abs(np.choose(entered, np.moveaxis(dir_local, -1, 0)))
            t_obj[rays] = np.where(closer, t_enter, t_obj[rays])
            albedo_obj[rays] = np.where(closer, np.where(front, obj.front_albedo, obj.albedo), albedo_obj[rays])
            cos_obj[rays] = np.where(closer, cos_entered, cos_obj[rays])
        return t_obj, albedo_obj, cos_obj

    def _reachable_rays(self, centre: np.ndarray, R: np.ndarray, half: np.ndarray,
                        vel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Firing columns and rings whose rays can meet a box (lidar frame) during the turn, in increasing order.

        Columns: the azimuth span of its corners at the start and the end of the turn, padded by a column each
        side. Rings: the elevations its heights span seen from its nearest and farthest horizontal distance. All
        rays when the LiDAR is inside or close to the box, none when the box is entirely out of range.
        """
        lidar = self.rig.lidar
        steps, elevations = lidar.azimuth_steps, np.radians(lidar.elevations_deg)
        corners = centre + (_CORNER_SIGNS * half) @ R.T
        swept = np.concatenate([corners, corners + vel * lidar.period])
        xy = swept[:, :2]
        reach = float(np.linalg.norm(xy - centre[:2], axis=1).max())
        distance = math.hypot(centre[0], centre[1])
        if distance - reach > lidar.max_range:
            return np.arange(0), np.arange(0)
        if distance <= reach + 0.5:
            return np.arange(steps), np.arange(len(elevations))
        near, far = distance - reach, distance + reach
        low, high = float(swept[:, 2].min()), float(swept[:, 2].max())
        lowest = math.atan2(low, near if low < 0.0 else far)
        highest = math.atan2(high, near if high > 0.0 else far)
        rings = np.flatnonzero((elevations >= lowest - _ELEVATION_PAD) & (elevations <= highest + _ELEVATION_PAD))
        bearing = math.atan2(centre[1], centre[0])
        offsets = np.angle(np.exp(1j * (np.arctan2(xy[:, 1], xy[:, 0]) - bearing)))
        per_rad = steps / (2.0 * math.pi)
        middle = (lidar.start_azimuth - bearing) * per_rad
        first = math.floor(middle - offsets.max() * per_rad) - 1
        last = math.ceil(middle - offsets.min() * per_rad) + 1
        if last - first + 1 >= steps:
            return np.arange(steps), rings
        return np.sort(np.arange(first, last + 1) % steps), rings

    def camera_image(self, i: int, t: float) -> np.ndarray:
        """900x1600x3 uint8 BGR image of camera ``i`` at ``t``: sky, ground and every object's visible faces.

        Objects are painted far to near, each one's parts in :func:`_painting_order`; the first part's +x face in
        the object's front colour, every other face in its body colour.
        """
        cam = self.rig.cameras[i]
        T_cam_odom = invert_rigid(self.ego_pose(t) @ cam.T_base_cam)
        image = self._background(cam, T_cam_odom)
        centre, R, _, _ = self._boxes_in(T_cam_odom, t)
        all_parts = self.scene.part_bounds()
        for m in np.argsort(-np.linalg.norm(centre, axis=1), kind="stable"):
            obj, parts = self.scene.objects[m], all_parts[m]
            # The camera (origin of its frame) in the object's frame: R^T (0 - centre).
            eye = -(centre[m] @ R[m])
            for p in _painting_order(parts, eye):
                corners = centre[m] + np.where(_CORNER_SIGNS > 0.0, parts[p, 1], parts[p, 0]) @ R[m].T
                if corners[:, 2].max() < _NEAR_PLANE:
                    continue
                # A face is seen from outside its plane: n . eye > n . (its max corner for +n, its min for -n).
                plane = np.where(_FACE_OUTWARD_MAX, _FACE_NORMALS @ parts[p, 1], _FACE_NORMALS @ parts[p, 0])
                for f in np.flatnonzero(_FACE_NORMALS @ eye > plane):
                    color = obj.front_color if p == 0 and f == _FRONT_FACE else obj.color
                    _fill_face(image, cam.K, corners[_FACES[f]], color)
        return image

    @staticmethod
    def _background(cam: CameraSpec, T_cam_odom: np.ndarray) -> np.ndarray:
        """Sky above and ground below the horizon of the odom ground plane, with a gentle vertical gradient."""
        up = T_cam_odom[:3, 2]
        a, b, c = up @ np.linalg.inv(cam.K)
        u = np.arange(cam.width, dtype=np.float64)
        v = np.arange(cam.height, dtype=np.float64)
        is_ground = (a * u[None, :] + b * v[:, None] + c) < 0.0
        sky, ground = background_rows(cam.height)
        image = np.empty((cam.height, cam.width, 3), dtype=np.uint8)
        image[:] = sky[:, None, :]
        np.copyto(image, ground[:, None, :], where=is_ground[:, :, None])
        return image

    def schedule(self, num_lidar_frames: int) -> list[SensorEvent]:
        """Every LiDAR and camera event in ``[0, num_lidar_frames * 50 ms)``, sorted by time (LiDAR first on ties)."""
        duration = num_lidar_frames * LIDAR_PERIOD
        events = [SensorEvent(k * LIDAR_PERIOD, -1, k) for k in range(num_lidar_frames)]
        for i, offset in enumerate(self.rig.camera_offsets()):
            count = math.ceil((duration - offset) / CAMERA_PERIOD)
            events += [SensorEvent(offset + n * CAMERA_PERIOD, i, n) for n in range(max(count, 0))]
        return sorted(events)

    def frames(self, num_lidar_frames: int, start_time: float = 0.0,
               cameras: tuple[int, ...] | None = None) -> Iterator[LidarFrame | CameraFrame]:
        """Render the sequence in time order: LiDAR sweeps at 20 Hz and the chosen cameras at 12 Hz.

        Stamps are ``start_time + t``; ``cameras`` (default all) picks which cameras are rendered.
        """
        wanted = range(len(self.rig.cameras)) if cameras is None else cameras
        for event in self.schedule(num_lidar_frames):
            pose = self.ego_pose(event.t)
            if event.sensor < 0:
                boxes, names = self.ground_truth_boxes(event.t)
                yield LidarFrame(event.index, event.t, start_time + event.t, self.lidar_sweep(event.t), pose,
                                 boxes, names)
            elif event.sensor in wanted:
                yield CameraFrame(event.sensor, event.index, event.t, start_time + event.t,
                                  self.camera_image(event.sensor, event.t), pose)
