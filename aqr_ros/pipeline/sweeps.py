"""Multi-sweep LiDAR accumulation with ego-motion compensation and the time-lag channel (docs/model.md §2.2)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SweepBatch:
    """The model's point input for one key frame plus what diagnostics need to know about it."""

    #: [M, 5] float32 (x, y, z, intensity, time_lag_s): key frame first, then older sweeps, most recent first.
    points: np.ndarray
    #: Previous sweeps included (the key frame not counted).
    num_sweeps: int
    #: Previous sweeps used without motion compensation because a pose was missing.
    num_uncompensated: int


@dataclass(frozen=True)
class _Sweep:
    points: np.ndarray
    stamp_s: float
    T_fixed_lidar: np.ndarray | None


class SweepAccumulator:
    """Keeps the key frame and up to ``num_sweeps`` previous clouds and builds the 5-channel model input.

    Clouds are stored as homogeneous [N, 5] rows (x, y, z, intensity, 1) so that building moves a sweep,
    copies its intensity and writes its time lag with a single matrix product.
    """

    def __init__(self, num_sweeps: int, max_lag_s: float | None = None) -> None:
        """``max_lag_s`` (optional) leaves out sweeps older than that relative to the key frame."""
        if num_sweeps < 0:
            raise ValueError(f"num_sweeps must be >= 0, got {num_sweeps}")
        if max_lag_s is not None and not max_lag_s > 0:
            raise ValueError(f"max_lag_s must be positive, got {max_lag_s}")
        self.num_sweeps = num_sweeps
        self.max_lag_s = max_lag_s
        self._sweeps: deque[_Sweep] = deque(maxlen=num_sweeps + 1)

    def __len__(self) -> int:
        return len(self._sweeps)

    def reset(self) -> None:
        """Forget every stored sweep."""
        self._sweeps.clear()

    def push(self, points: np.ndarray, stamp_s: float, T_fixed_lidar: np.ndarray | None = None) -> bool:
        """Add a cloud ([N, 4] float32 x, y, z, intensity in its LiDAR frame) as the new key frame.

        ``T_fixed_lidar`` is the LiDAR pose in a fixed frame (e.g. odom) at ``stamp_s``, or None when unknown.
        Returns True when the stamp went backwards (bag loop): the history was cleared first. A cloud with the
        same stamp as the current key frame replaces it.
        """
        points = np.asarray(points)
        if points.ndim != 2 or points.shape[1] != 4:
            raise ValueError(f"points must be [N, 4], got shape {points.shape}")
        pose = None if T_fixed_lidar is None else np.asarray(T_fixed_lidar, dtype=np.float64)
        if pose is not None and pose.shape != (4, 4):
            raise ValueError(f"T_fixed_lidar must be 4x4, got shape {pose.shape}")
        went_back = bool(self._sweeps) and stamp_s < self._sweeps[-1].stamp_s
        if went_back:
            self._sweeps.clear()
        elif self._sweeps and stamp_s == self._sweeps[-1].stamp_s:
            self._sweeps.pop()
        homogeneous = np.empty((len(points), 5), dtype=np.float32)
        homogeneous[:, :4] = points
        homogeneous[:, 4] = 1.0
        self._sweeps.append(_Sweep(homogeneous, float(stamp_s), pose))
        return went_back

    def build(self, T_model_lidar: np.ndarray | None = None) -> SweepBatch:
        """Concatenate the key frame and the previous sweeps into [M, 5] float32 in the key LiDAR frame.

        Each previous sweep is moved by ``inv(T_key) @ T_then`` when both poses are known, else used as is
        (counted in ``num_uncompensated``). ``T_model_lidar`` (e.g. :func:`~aqr_ros.pipeline.calibration.axes_to_model`)
        is folded into every sweep's transform so the result is directly in the model frame.
        """
        if not self._sweeps:
            return SweepBatch(np.zeros((0, 5), dtype=np.float32), 0, 0)
        axes = np.eye(4) if T_model_lidar is None else np.asarray(T_model_lidar, dtype=np.float64)
        key = self._sweeps[-1]
        used = [key]
        for sweep in reversed(list(self._sweeps)[:-1]):
            if self.max_lag_s is not None and key.stamp_s - sweep.stamp_s > self.max_lag_s:
                break
            used.append(sweep)
        inv_key = None if key.T_fixed_lidar is None else np.linalg.inv(key.T_fixed_lidar)
        out = np.empty((sum(len(s.points) for s in used), 5), dtype=np.float32)
        start = uncompensated = 0
        for i, sweep in enumerate(used):
            T = axes
            if i > 0:
                if inv_key is not None and sweep.T_fixed_lidar is not None:
                    T = axes @ inv_key @ sweep.T_fixed_lidar
                else:
                    uncompensated += 1
            # Row-vector form: [x y z i 1] @ M = [R p + t, i, lag].
            M = np.zeros((5, 5), dtype=np.float32)
            M[:3, :3] = T[:3, :3].T
            M[4, :3] = T[:3, 3]
            M[3, 3] = 1.0
            M[4, 4] = key.stamp_s - sweep.stamp_s
            stop = start + len(sweep.points)
            np.matmul(sweep.points, M, out=out[start:stop])
            start = stop
        return SweepBatch(out, len(used) - 1, uncompensated)


def scale_intensity(points: np.ndarray, scale: float) -> np.ndarray:
    """Copy of ``points`` [N, >= 4] with column 3 multiplied by ``scale`` and clipped to the model's [0, 255]."""
    out = np.array(points, dtype=np.float32)
    np.clip(out[:, 3] * np.float32(scale), 0.0, 255.0, out=out[:, 3])
    return out
