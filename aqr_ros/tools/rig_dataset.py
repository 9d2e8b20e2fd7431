"""Training and evaluation samples from random synthetic-rig scenes, built through the node's own input path.

A sample is one LiDAR key frame of the scene of one seed (``rig_scenes.random_scene``): the key sweep and
``num_sweeps`` earlier sweeps go through :class:`~aqr_ros.pipeline.frame.FrameAssembler` (time-lag channel,
motion compensation through the rig's odom poses, REP-103 → model axes) with, per camera, the image the node
would fuse (the exposure nearest to the key stamp plus the camera's phase offset), resized and cropped as
the node does. Ground truth comes from the rig in the model frame. Rendering a sample takes about a second,
so samples are cached as ``.npz`` files keyed by everything that shapes them; training and evaluation read
the cache. Seeds 9000 and above are reserved for evaluation (:data:`EVAL_SEEDS`) and refused for training.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from aqr_ros.model.config import ModelConfig
from aqr_ros.pipeline.calibration import axes_to_model
from aqr_ros.pipeline.frame import FrameAssembler
from aqr_ros.tools.detection_metrics import points_in_boxes
from aqr_ros.tools.rig_inputs import RIG_LIDAR_AXES, rig_calibrations
from aqr_ros.tools.rig_scenes import random_scene
from aqr_ros.tools.synthetic_rig import CAMERA_PERIOD, LIDAR_PERIOD, SyntheticRig

#: Bumped whenever the rig or the sample layout changes, so stale caches are never read.
DATASET_VERSION = 3
#: Seeds of the held-out evaluation scenes; training refuses every seed from the first of them on.
EVAL_SEEDS = range(9000, 9020)
FIRST_EVAL_SEED = EVAL_SEEDS.start
#: Latest key-frame time drawn for a scene (s): the rig's scenes are free of collisions for 3 s.
MAX_KEY_TIME = 2.0


@dataclass(frozen=True)
class RigSample:
    """One model input with its ground truth, everything in the model (nuScenes LIDAR_TOP) frame.

    ``points`` [N, 5] float32 (x, y, z, intensity, time lag) inside the point cloud range; ``images`` [V, 3, H, W]
    uint8 BGR model-input pixels (resized and cropped, not normalised); ``lidar2img`` [V, 4, 4] float64;
    ``gt_boxes`` [M, 9] (x, y, z_bottom, dx, dy, dz, yaw, vx, vy); ``gt_labels`` [M] class indices of the
    config; ``gt_num_points`` [M] key-sweep LiDAR points inside each box; ``key_time`` the key stamp (s).
    """

    seed: int
    key_time: float
    points: np.ndarray
    images: np.ndarray
    lidar2img: np.ndarray
    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    gt_num_points: np.ndarray


def normalised_images(pixels: np.ndarray, config: ModelConfig) -> torch.Tensor:
    """uint8 model-input pixels [V, 3, H, W] → the model's float32 input ``(x - mean) / std`` (BGR)."""
    mean = torch.tensor(config.image.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(config.image.std, dtype=torch.float32).view(1, 3, 1, 1)
    return (torch.from_numpy(pixels).float() - mean) / std


def key_time_of(seed: int, config: ModelConfig) -> float:
    """The key-frame time of ``seed``'s sample: a whole LiDAR period after enough sweeps, up to :data:`MAX_KEY_TIME`."""
    first = config.lidar.num_sweeps
    last = int(round(MAX_KEY_TIME / LIDAR_PERIOD))
    k = int(np.random.default_rng([seed, 1]).integers(first, last + 1))
    return k * LIDAR_PERIOD


def transform_boxes_planar(boxes: np.ndarray, A: np.ndarray) -> np.ndarray:
    """[M, 9] boxes under the planar linear map ``A`` (2x2 rotation or reflection) about z: centres, headings
    and velocities move with it, sizes and heights stay."""
    out = np.array(boxes, dtype=np.float64, copy=True).reshape(-1, 9)
    out[:, 0:2] = out[:, 0:2] @ A.T
    out[:, 7:9] = out[:, 7:9] @ A.T
    heading = np.stack([np.cos(out[:, 6]), np.sin(out[:, 6])], axis=1) @ A.T
    out[:, 6] = np.arctan2(heading[:, 1], heading[:, 0])
    return out


def camera_exposure_times(rig: SyntheticRig, key_time: float) -> np.ndarray:
    """[V] exposure time per camera the node fuses with a cloud at ``key_time`` when ``sync.camera_offsets`` holds
    the rig's phases: the exposure nearest to ``key_time + phase``."""
    offsets = rig.rig.camera_offsets()
    return offsets + round(key_time / CAMERA_PERIOD) * CAMERA_PERIOD


def render_sample(seed: int, config: ModelConfig) -> RigSample:
    """Render and assemble the sample of ``seed`` (about a second of CPU)."""
    rig = SyntheticRig(seed, scene=random_scene(seed))
    key_time = key_time_of(seed, config)
    key = int(round(key_time / LIDAR_PERIOD))
    assembler = FrameAssembler(config, RIG_LIDAR_AXES, "cpu")
    T_base_lidar = rig.rig.T_base_lidar
    key_cloud = None
    for k in range(key - config.lidar.num_sweeps, key + 1):
        t = k * LIDAR_PERIOD
        cloud = rig.lidar_sweep(t)
        key_cloud = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1)
        points = np.column_stack([key_cloud, cloud["intensity"]])
        assembler.push_cloud(points, t, rig.ego_pose(t) @ T_base_lidar)
    images = [rig.camera_image(i, t) for i, t in enumerate(camera_exposure_times(rig, key_time))]
    model_input = assembler.assemble(images, rig_calibrations(rig))

    boxes_lidar, names = rig.ground_truth_boxes(key_time)
    A = axes_to_model(RIG_LIDAR_AXES)[:2, :2]
    class_index = {name: i for i, name in enumerate(config.head.class_names)}
    labels = np.array([class_index[n] for n in names], dtype=np.int64)
    mean = np.asarray(config.image.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(config.image.std, dtype=np.float32)[:, None, None]
    pixels = np.rint(model_input.images.numpy() * std + mean).clip(0, 255).astype(np.uint8)
    return RigSample(
        seed=seed,
        key_time=key_time,
        points=_inside_range(model_input.points.numpy(), config),
        images=pixels,
        lidar2img=model_input.lidar2img.numpy().astype(np.float64),
        gt_boxes=transform_boxes_planar(boxes_lidar, A),
        gt_labels=labels,
        gt_num_points=points_in_boxes(key_cloud, boxes_lidar),
    )


def _inside_range(points: np.ndarray, config: ModelConfig) -> np.ndarray:
    """The points the voxelizer keeps (inside the point cloud range); the others only cost cache space."""
    r = np.asarray(config.lidar.point_cloud_range, dtype=np.float32)
    inside = ((points[:, :3] >= r[:3]) & (points[:, :3] < r[3:])).all(axis=1)
    return np.ascontiguousarray(points[inside], dtype=np.float32)


def sample_key(config: ModelConfig) -> str:
    """Short hash of everything that shapes a sample: the dataset version, the LiDAR and image config."""
    text = json.dumps([DATASET_VERSION, asdict(config.lidar), asdict(config.image), config.head.class_names],
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def default_cache_dir() -> Path:
    """``$AQR_ROS_CACHE`` or ``~/.cache/aqr_ros``, then ``rig_samples``."""
    root = os.environ.get("AQR_ROS_CACHE") or Path.home() / ".cache" / "aqr_ros"
    return Path(root) / "rig_samples"


class SampleCache:
    """Rendered samples of one config on disk: ``<root>/<config name>-<sample key>/<seed>.npz``."""

    def __init__(self, config: ModelConfig, root: Path | None = None) -> None:
        self.config = config
        self.folder = (root or default_cache_dir()) / f"{config.name}-{sample_key(config)}"

    def path(self, seed: int) -> Path:
        """Where the sample of ``seed`` is stored."""
        return self.folder / f"{seed}.npz"

    def load(self, seed: int) -> RigSample:
        """The cached sample of ``seed`` (render it with :meth:`ensure` first)."""
        with np.load(self.path(seed)) as data:
            fields = {name: data[name] for name in data.files}
        return RigSample(seed=int(fields.pop("seed")), key_time=float(fields.pop("key_time")), **fields)

    def ensure(self, seeds: Sequence[int], workers: int = 1,
               progress: Callable[[int, int], None] | None = None) -> None:
        """Render and store every missing sample of ``seeds`` with ``workers`` processes."""
        missing = [s for s in seeds if not self.path(s).is_file()]
        self.folder.mkdir(parents=True, exist_ok=True)
        done = len(seeds) - len(missing)
        if progress:
            progress(done, len(seeds))
        if not missing:
            return
        jobs = [(seed, self.config, str(self.path(seed))) for seed in missing]
        if workers <= 1:
            results: Iterable[int] = map(_render_to_file, jobs)
        else:
            pool = ProcessPoolExecutor(max_workers=workers, initializer=_single_thread)
            results = pool.map(_render_to_file, jobs, chunksize=4)
        try:
            for _ in results:
                done += 1
                if progress:
                    progress(done, len(seeds))
        finally:
            if workers > 1:
                pool.shutdown()


def _single_thread() -> None:
    """Worker initialiser: one torch thread per rendering process."""
    torch.set_num_threads(1)


def _render_to_file(job: tuple[int, ModelConfig, str]) -> int:
    """Render one sample and write it atomically (a temporary name, then a rename)."""
    seed, config, path = job
    sample = render_sample(seed, config)
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **{k: v for k, v in sample.__dict__.items()})
    os.replace(tmp, path)
    return seed


def parse_seeds(text: str) -> list[int]:
    """``"0-999"``, ``"9000-9019"`` or ``"1,5,7-9"`` → the list of seeds (ranges inclusive)."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi) if hi else int(lo)
        if last < first:
            raise ValueError(f"seed range {part!r} runs backwards")
        seeds.extend(range(first, last + 1))
    if not seeds:
        raise ValueError(f"no seeds in {text!r}")
    return seeds


@dataclass(frozen=True)
class Augmentation:
    """Global BEV augmentation of a sample, applied to points, boxes and lidar2img alike (CMT's
    ``GlobalRotScaleTransAll`` rotation and ``CustomRandomFlip3D`` without image flips)."""

    #: Largest rotation about z (rad), drawn uniformly in ±max_rotation. Kept small: the model should learn
    #: the road's orientation in the sensor frame, so that a wrong axis convention shows.
    max_rotation: float = math.pi / 8
    flip_probability: float = 0.5

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """A random 2x2 planar map: rotation, then flips of x and/or y."""
        angle = rng.uniform(-self.max_rotation, self.max_rotation)
        c, s = math.cos(angle), math.sin(angle)
        flip = np.diag([-1.0 if rng.random() < self.flip_probability else 1.0,
                        -1.0 if rng.random() < self.flip_probability else 1.0])
        return flip @ np.array([[c, -s], [s, c]])


def augment(sample: RigSample, A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply the planar map ``A`` to a sample → (points [N, 5], lidar2img [V, 4, 4], gt_boxes [M, 9]).

    A point p becomes A·p, and the cameras still see it at the same pixel: ``lidar2img' = lidar2img · A⁻¹``.
    """
    A4 = np.eye(4)
    A4[:2, :2] = A
    points = sample.points.copy()
    points[:, :2] = (points[:, :2].astype(np.float64) @ A.T).astype(np.float32)
    lidar2img = sample.lidar2img @ np.linalg.inv(A4)
    return points, lidar2img, transform_boxes_planar(sample.gt_boxes, A)
