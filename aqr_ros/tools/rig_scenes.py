"""Random street scenes for the synthetic rig: a scene distribution to train and test a detector on.

:func:`random_scene` draws, per seed, the ego's speed and yaw rate, a straight road along the ego's initial
heading (odom +x, right-hand traffic, the ego in a lane of its direction) with sidewalks on both sides, and the
objects of every class with nuScenes-like sizes: vehicles mostly driving in lanes or parked at the kerb, about a
quarter of them anywhere with any heading; pedestrians mostly on the sidewalks, some crossing; cones and barriers
along lane and road edges. Objects start within 50 m of the ego (|x|, |y|), and no two footprints, nor any
footprint and the ego's, come closer than 0.3 m during the first three seconds.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

from aqr_ros.tools.synthetic_rig import EgoMotion, Scene, SceneObject, background_clearance, front_color

#: Scene choices of the tools: the jittered fixed street, or a draw from the distribution of this module.
SCENE_KINDS = ("template", "random")
#: Half side (m) of the square around the ego at t = 0 in which objects start.
AREA_HALF_SIZE = 50.0
#: Seconds from t = 0 during which no two footprints (nor a footprint and the ego's) come closer than MIN_GAP.
HORIZON = 3.0
#: Smallest distance (m) kept between two BEV footprints, and between a footprint and the ego's.
MIN_GAP = 0.3
#: The ego's BEV footprint in base_link: length, width (m) and how far ahead of base_link its centre is.
EGO_LENGTH, EGO_WIDTH, EGO_CENTRE_AHEAD = 4.8, 2.0, 1.4
#: Fraction of vehicles placed anywhere with a uniformly random heading (parking lots, crossings).
FREE_VEHICLE_FRACTION = 0.25

# The ego is checked over intervals this long, moving by translation at the mid-interval heading; the extra gap
# covers the rotation left out (|yaw rate| * interval / 2 times the footprint's half diagonal, ~0.02 m).
_EGO_INTERVAL = 0.25
_EGO_EXTRA_GAP = 0.05
# Smallest per-channel distance between two colours of a scene, and between an object colour and the background.
_COLOR_GAP = 6
_BACKGROUND_GAP = 32
_ATTEMPTS = 40


@dataclass(frozen=True)
class ClassSpec:
    """Priors of one class: size ranges (length, width, height in m), count range, body and front LiDAR albedo."""

    size_low: tuple[float, float, float]
    size_high: tuple[float, float, float]
    count: tuple[int, int]
    albedo: tuple[float, float]
    #: Range of the front face's albedo; ``None`` for symmetric classes (the front is like the body).
    front_albedo: tuple[float, float] | None


#: Per-class priors (nuScenes means, varied by a few per cent), in placement order: large objects first.
CLASS_SPECS: dict[str, ClassSpec] = {
    "bus": ClassSpec((10.5, 2.75, 3.15), (12.5, 3.05, 3.45), (0, 1), (25.0, 60.0), (120.0, 200.0)),
    "truck": ClassSpec((6.5, 2.35, 2.6), (10.0, 2.65, 3.4), (0, 2), (25.0, 60.0), (120.0, 200.0)),
    "car": ClassSpec((4.3, 1.82, 1.58), (4.9, 2.08, 1.82), (4, 14), (25.0, 60.0), (120.0, 200.0)),
    "bicycle": ClassSpec((1.65, 0.56, 1.22), (1.85, 0.64, 1.38), (0, 3), (20.0, 50.0), (90.0, 160.0)),
    "barrier": ClassSpec((2.0, 0.46, 0.9), (2.6, 0.54, 1.0), (0, 6), (60.0, 160.0), None),
    "traffic_cone": ClassSpec((0.38, 0.38, 0.75), (0.44, 0.44, 1.05), (0, 8), (150.0, 220.0), None),
    "pedestrian": ClassSpec((0.64, 0.6, 1.62), (0.76, 0.7, 1.88), (2, 10), (15.0, 35.0), (35.0, 70.0)),
}
_VEHICLES = ("bus", "truck", "car")


@dataclass(frozen=True)
class Street:
    """A straight road along odom x with ``lanes`` lanes per direction and sidewalks on both sides.

    Right-hand traffic: lanes towards +x lie on the -y side of the centre line (y = ``centre_y``), lanes towards
    -x on the +y side; lane 0 is the one next to the centre line. The ego starts on ``lane_y(1, ego_lane)`` = 0.
    """

    centre_y: float
    half_width: float
    lane_width: float
    lanes: int
    sidewalk_width: float
    ego_lane: int

    def lane_y(self, direction: int, lane: int) -> float:
        """Centre line of ``lane`` of the lanes heading +x (``direction`` 1) or -x (-1)."""
        return self.centre_y - direction * (lane + 0.5) * self.lane_width

    def kerb_y(self, direction: int) -> float:
        """The road edge on the right of traffic heading +x (``direction`` 1) or -x (-1)."""
        return self.centre_y - direction * self.half_width

    def lane_lines(self) -> list[float]:
        """y of every lane marking, centre line included, and of both road edges."""
        offsets = [k * self.lane_width for k in range(self.lanes + 1)] + [self.half_width]
        return sorted({self.centre_y + s * o for o in offsets for s in (-1.0, 1.0)})


@dataclass(frozen=True)
class Placement:
    """A proposed BEV pose and motion: (x, y) at t = 0 in odom, yaw, constant (vx, vy)."""

    position: tuple[float, float]
    yaw: float
    velocity: tuple[float, float]


def heading_velocity(yaw: float, speed: float) -> tuple[float, float]:
    """Velocity of an object driving or walking forwards (along its heading) at ``speed``."""
    return speed * math.cos(yaw), speed * math.sin(yaw)


def draw_ego(rng: np.random.Generator) -> EgoMotion:
    """The ego's speed (0-12 m/s, standing still one time in six) and yaw rate (+-0.06 rad/s while moving)."""
    if rng.random() < 1.0 / 6.0:
        return EgoMotion(speed=0.0, yaw_rate=0.0)
    return EgoMotion(speed=float(rng.uniform(0.5, 12.0)), yaw_rate=float(rng.uniform(-0.06, 0.06)))


def draw_street(rng: np.random.Generator) -> Street:
    """A road of half-width 5-9 m with one or two lanes per direction; the ego (y = 0) in one of its own lanes."""
    half_width = float(rng.uniform(5.0, 9.0))
    lane_width = float(rng.uniform(3.0, 3.6))
    lanes = 2 if half_width >= 2.0 * lane_width else 1
    ego_lane = int(rng.integers(lanes))
    return Street(centre_y=(ego_lane + 0.5) * lane_width, half_width=half_width, lane_width=lane_width,
                  lanes=lanes, sidewalk_width=float(rng.uniform(2.5, 5.0)), ego_lane=ego_lane)


def draw_lane_speeds(rng: np.random.Generator, street: Street, ego: EgoMotion) -> dict[tuple[int, int], float]:
    """Traffic speed of every (direction, lane): 2-14 m/s or a jam (0-2 m/s); the ego's lane near its speed."""
    speeds = {}
    for direction in (1, -1):
        for lane in range(street.lanes):
            jam = rng.random() < 0.15
            speeds[direction, lane] = float(rng.uniform(0.0, 2.0) if jam else rng.uniform(2.0, 14.0))
    speeds[1, street.ego_lane] = max(0.0, ego.speed + float(rng.uniform(-1.5, 1.5)))
    return speeds


def _free_placement(rng: np.random.Generator, moving_speed: tuple[float, float]) -> Placement:
    """Anywhere in the area with a uniformly random heading; standing half of the time, else moving forwards."""
    x, y = rng.uniform(-AREA_HALF_SIZE, AREA_HALF_SIZE, size=2)
    yaw = float(rng.uniform(-math.pi, math.pi))
    speed = 0.0 if rng.random() < 0.5 else float(rng.uniform(*moving_speed))
    return Placement((float(x), float(y)), yaw, heading_velocity(yaw, speed))


def _along_road(rng: np.random.Generator, y: float, direction: int, speed: float, yaw_noise: float) -> Placement:
    """At a random x on the line ``y``, heading +x (``direction`` 1) or -x with a little noise, moving forwards."""
    yaw = (0.0 if direction > 0 else math.pi) + float(rng.normal(0.0, yaw_noise))
    x = float(rng.uniform(-AREA_HALF_SIZE, AREA_HALF_SIZE))
    return Placement((x, y), yaw, heading_velocity(yaw, speed))


def vehicle_placement(rng: np.random.Generator, street: Street, lane_speeds: dict[tuple[int, int], float],
                      width: float) -> Placement:
    """A car, truck or bus: free (a quarter), parked at a kerb (static, aligned) or driving in a lane."""
    mode = rng.random()
    if mode < FREE_VEHICLE_FRACTION:
        return _free_placement(rng, (1.0, 8.0))
    direction = 1 if rng.random() < 0.5 else -1
    if mode < FREE_VEHICLE_FRACTION + 0.2:
        facing = direction if rng.random() < 0.8 else -direction
        y = street.kerb_y(direction) + direction * (width / 2.0 + 0.25)
        return _along_road(rng, y, facing, 0.0, 0.02)
    lane = int(rng.integers(street.lanes))
    speed = max(0.0, lane_speeds[direction, lane] + float(rng.uniform(-0.5, 0.5)))
    return _along_road(rng, street.lane_y(direction, lane) + float(rng.normal(0.0, 0.15)), direction, speed, 0.03)


def bicycle_placement(rng: np.random.Generator, street: Street) -> Placement:
    """A bicycle: free (a quarter), parked on a sidewalk, or ridden along the right edge of the road."""
    mode = rng.random()
    if mode < FREE_VEHICLE_FRACTION:
        return _free_placement(rng, (2.0, 6.0))
    direction = 1 if rng.random() < 0.5 else -1
    if mode < 0.45:
        y = street.kerb_y(direction) - direction * float(rng.uniform(0.8, street.sidewalk_width - 0.5))
        yaw = float(rng.choice([0.0, math.pi, math.pi / 2.0, -math.pi / 2.0])) + float(rng.normal(0.0, 0.1))
        return Placement((float(rng.uniform(-AREA_HALF_SIZE, AREA_HALF_SIZE)), y), yaw, (0.0, 0.0))
    y = street.kerb_y(direction) + direction * float(rng.uniform(0.6, 1.1))
    return _along_road(rng, y, direction, float(rng.uniform(2.0, 7.0)), 0.05)


def pedestrian_placement(rng: np.random.Generator, street: Street) -> Placement:
    """A pedestrian: crossing the road (some), else on a sidewalk walking along it or standing, any heading."""
    mode = rng.random()
    if mode < 0.15:
        yaw = float(rng.choice([math.pi / 2.0, -math.pi / 2.0])) + float(rng.normal(0.0, 0.2))
        x = float(rng.uniform(-AREA_HALF_SIZE, AREA_HALF_SIZE))
        y = street.centre_y + float(rng.uniform(-street.half_width, street.half_width))
        return Placement((x, y), yaw, heading_velocity(yaw, float(rng.uniform(0.8, 1.8))))
    side = 1 if rng.random() < 0.5 else -1
    y = street.kerb_y(side) - side * float(rng.uniform(0.5, street.sidewalk_width - 0.4))
    if mode < 0.7:
        return _along_road(rng, y, 1 if rng.random() < 0.5 else -1, float(rng.uniform(0.6, 1.8)), 0.15)
    return Placement((float(rng.uniform(-AREA_HALF_SIZE, AREA_HALF_SIZE)), y),
                     float(rng.uniform(-math.pi, math.pi)), (0.0, 0.0))


class _Row:
    """A row of static street furniture (cones, barriers) along a line of constant y: where the next item goes."""

    def __init__(self, rng: np.random.Generator, street: Street, step: float, on_markings: bool):
        lines = street.lane_lines() if on_markings else [street.kerb_y(1) + 0.4, street.kerb_y(-1) - 0.4]
        self.y = float(rng.choice(lines))
        self.x = float(rng.uniform(-AREA_HALF_SIZE, AREA_HALF_SIZE))
        self.step = step * (1.0 if rng.random() < 0.5 else -1.0)

    def next(self, rng: np.random.Generator, yaw: float) -> Placement:
        """The next slot of the row (static), then move on by one step."""
        placement = Placement((self.x, self.y + float(rng.normal(0.0, 0.05))), yaw, (0.0, 0.0))
        self.x += self.step
        return placement


class FootprintIndex:
    """BEV footprints placed so far (rectangles moving at constant velocity) and the ego's, for overlap tests."""

    def __init__(self, ego: EgoMotion):
        self.centres = np.zeros((0, 2))
        self.yaws = np.zeros(0)
        self.halves = np.zeros((0, 2))
        self.velocities = np.zeros((0, 2))
        times = np.linspace(0.0, HORIZON, round(HORIZON / _EGO_INTERVAL) + 1)
        poses = np.stack([ego.pose(float(t)) for t in times])
        centres = poses[:, :2, 3] + EGO_CENTRE_AHEAD * poses[:, :2, 0]
        headings = np.arctan2(poses[:, 1, 0], poses[:, 0, 0])
        self._ego_start_times = times[:-1]
        self._ego_centres = centres[:-1]
        self._ego_shifts = np.diff(centres, axis=0)
        self._ego_yaws = (headings[:-1] + headings[1:]) / 2.0
        self._ego_halves = np.tile([EGO_LENGTH / 2.0, EGO_WIDTH / 2.0], (len(self._ego_yaws), 1))

    def fits(self, centre: np.ndarray, yaw: float, half: np.ndarray, velocity: np.ndarray) -> bool:
        """Whether a footprint stays ``MIN_GAP`` away from every placed one and from the ego during the horizon."""
        if not swept_apart(centre - self.centres, (velocity - self.velocities) * HORIZON, self.yaws, self.halves,
                           yaw, half, MIN_GAP).all():
            return False
        start = centre + velocity * self._ego_start_times[:, None]
        shift = velocity * _EGO_INTERVAL - self._ego_shifts
        return bool(swept_apart(start - self._ego_centres, shift, self._ego_yaws, self._ego_halves, yaw, half,
                                MIN_GAP + _EGO_EXTRA_GAP).all())

    def add(self, centre: np.ndarray, yaw: float, half: np.ndarray, velocity: np.ndarray) -> None:
        """Record a placed footprint."""
        self.centres = np.vstack([self.centres, centre])
        self.yaws = np.append(self.yaws, yaw)
        self.halves = np.vstack([self.halves, half])
        self.velocities = np.vstack([self.velocities, velocity])


def swept_apart(offset: np.ndarray, shift: np.ndarray, yaw_a: np.ndarray, half_a: np.ndarray, yaw_b: float,
                half_b: np.ndarray, gap: float) -> np.ndarray:
    """Whether rectangle B, moving by ``shift`` from ``offset`` relative to rectangle A, stays ``gap`` away from A.

    A separating axis test between A and the shape B sweeps (its start and end positions' convex hull), exact
    for a translation: the candidate axes are both rectangles' axes and the normal of the motion. ``offset`` and
    ``shift`` [N, 2] (B's centre minus A's, B's motion relative to A), ``yaw_a`` [N], ``half_a`` [N, 2]; result [N].
    """
    if len(offset) == 0:
        return np.ones(0, dtype=bool)
    ca, sa = np.cos(yaw_a), np.sin(yaw_a)
    cb, sb = math.cos(yaw_b), math.sin(yaw_b)
    norm = np.maximum(np.hypot(shift[:, 0], shift[:, 1]), 1e-12)
    axes = np.stack([np.stack([ca, sa], axis=-1), np.stack([-sa, ca], axis=-1),
                     np.broadcast_to([cb, sb], ca.shape + (2,)), np.broadcast_to([-sb, cb], ca.shape + (2,)),
                     np.stack([-shift[:, 1], shift[:, 0]], axis=-1) / norm[:, None]], axis=1)
    radius_a = (half_a[:, None, 0] * np.abs(axes[..., 0] * ca[:, None] + axes[..., 1] * sa[:, None])
                + half_a[:, None, 1] * np.abs(-axes[..., 0] * sa[:, None] + axes[..., 1] * ca[:, None]))
    radius_b = (half_b[0] * np.abs(axes[..., 0] * cb + axes[..., 1] * sb)
                + half_b[1] * np.abs(-axes[..., 0] * sb + axes[..., 1] * cb))
    start = np.einsum("nkd,nd->nk", axes, offset)
    end = start + np.einsum("nkd,nd->nk", axes, shift)
    reach = radius_a + radius_b + gap
    return ((np.minimum(start, end) > reach) | (np.maximum(start, end) < -reach)).any(axis=1)


class Palette:
    """Saturated object colours, each kept apart from every other colour of the scene and from the background."""

    def __init__(self) -> None:
        self.taken = np.zeros((0, 3), dtype=np.int32)

    def _free(self, color: tuple[int, int, int]) -> bool:
        far = len(self.taken) == 0 or np.abs(self.taken - color).max(axis=1).min() >= _COLOR_GAP
        return bool(far) and background_clearance(color) >= _BACKGROUND_GAP

    def draw(self, rng: np.random.Generator, class_name: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """A new (body, front) BGR pair for an object of ``class_name``; the front follows from the body."""
        while True:
            r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.65, 1.0), rng.uniform(0.45, 1.0))
            body = (round(b * 255), round(g * 255), round(r * 255))
            front = front_color(class_name, body)
            distinct = front == body or np.abs(np.subtract(front, body)).max() >= _COLOR_GAP
            if distinct and self._free(body) and self._free(front):
                self.taken = np.vstack([self.taken, body, front])
                return body, front


def _propose(rng: np.random.Generator, name: str, size: np.ndarray, street: Street,
             lane_speeds: dict[tuple[int, int], float], rows: dict[str, _Row]) -> Placement:
    """One candidate placement of an object of class ``name`` following the street's structure.

    Cones and barriers continue the class's current row in ``rows``, starting a new one when there is none.
    """
    if name in _VEHICLES:
        return vehicle_placement(rng, street, lane_speeds, float(size[1]))
    if name == "bicycle":
        return bicycle_placement(rng, street)
    if name == "pedestrian":
        return pedestrian_placement(rng, street)
    cone = name == "traffic_cone"
    if name not in rows:
        step = (2.0 if cone else float(size[0])) + float(rng.uniform(0.4, 2.0))
        rows[name] = _Row(rng, street, step, on_markings=cone or rng.random() < 0.3)
    return rows[name].next(rng, float(rng.uniform(-math.pi, math.pi)) if cone else float(rng.normal(0.0, 0.03)))


def _place(rng: np.random.Generator, name: str, size: np.ndarray, street: Street,
           lane_speeds: dict[tuple[int, int], float], rows: dict[str, _Row],
           footprints: FootprintIndex) -> Placement | None:
    """A placement inside the area that keeps clear of everything placed so far, or ``None`` after many tries."""
    half = size[:2] / 2.0
    for _ in range(_ATTEMPTS):
        placement = _propose(rng, name, size, street, lane_speeds, rows)
        centre, velocity = np.array(placement.position), np.array(placement.velocity)
        if (np.abs(centre) <= AREA_HALF_SIZE).all() and footprints.fits(centre, placement.yaw, half, velocity):
            footprints.add(centre, placement.yaw, half, velocity)
            return placement
        rows.pop(name, None)
    return None


def random_scene(seed: int) -> Scene:
    """A random street scene (see the module docstring): the same seed gives the same scene."""
    rng = np.random.default_rng(seed)
    ego = draw_ego(rng)
    street = draw_street(rng)
    lane_speeds = draw_lane_speeds(rng, street, ego)
    footprints = FootprintIndex(ego)
    palette = Palette()
    rows: dict[str, _Row] = {}
    objects: list[SceneObject] = []
    for name, spec in CLASS_SPECS.items():
        for _ in range(int(rng.integers(spec.count[0], spec.count[1] + 1))):
            size = rng.uniform(spec.size_low, spec.size_high)
            if name == "traffic_cone":
                size[1] = size[0]
            placement = _place(rng, name, size, street, lane_speeds, rows, footprints)
            if placement is None:
                continue
            body, front = palette.draw(rng, name)
            albedo = float(rng.uniform(*spec.albedo))
            front_albedo = None if spec.front_albedo is None else float(rng.uniform(*spec.front_albedo))
            objects.append(SceneObject(name, tuple(float(v) for v in size), placement.position,
                                       math.remainder(placement.yaw, 2.0 * math.pi), placement.velocity,
                                       body, albedo, front, front_albedo))
    return Scene(tuple(objects), ego)


def make_scene(kind: str, seed: int) -> Scene:
    """The scene of a tool's ``--scene`` choice: ``template`` (:meth:`Scene.generate`) or ``random``."""
    if kind == "template":
        return Scene.generate(seed)
    if kind == "random":
        return random_scene(seed)
    raise ValueError(f"unknown scene kind {kind!r}: expected one of {SCENE_KINDS}")
