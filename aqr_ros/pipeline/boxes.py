"""Detections from the model's LiDAR frame into the input (ROS) LiDAR frame, and score/count selection."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aqr_ros.pipeline.calibration import axes_to_model, points_from_model
from aqr_ros.pipeline.rotations import quaternion_from_matrix, quaternion_from_yaw, quaternion_product


@dataclass(frozen=True)
class RosBoxes:
    """K boxes in the input LiDAR frame, float64, laid out for vision_msgs / visualization_msgs."""

    #: [K, 3] geometric centre (the model's bottom centre raised by dz / 2).
    center: np.ndarray
    #: [K, 4] orientation quaternion (x, y, z, w): the yaw about z.
    quaternion: np.ndarray
    #: [K] yaw in radians, counter-clockwise about z from the frame's +x, wrapped to [-pi, pi).
    yaw: np.ndarray
    #: [K, 3] (length along the heading, width, height) = the model's (dx, dy, dz).
    size: np.ndarray
    #: [K, 3] velocity in m/s (z is always 0: the model predicts vx, vy only).
    velocity: np.ndarray

    def __len__(self) -> int:
        return len(self.center)


def to_ros_boxes(boxes: np.ndarray, convention: str) -> RosBoxes:
    """Convert [K, 9] model boxes (x, y, z_bottom, dx, dy, dz, yaw, vx, vy) into the ``convention`` input frame."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 9)
    R = axes_to_model(convention)[:3, :3]  # model <- input; rows of R map input vectors, R.T maps back
    center = boxes[:, 0:3].copy()
    center[:, 2] += boxes[:, 5] / 2.0
    center = points_from_model(center, convention)
    velocity = np.zeros((len(boxes), 3))
    velocity[:, :2] = boxes[:, 7:9]
    velocity = points_from_model(velocity, convention)
    yaw_offset = np.arctan2(R[0, 1], R[0, 0])  # rotation angle of R.T about z
    yaw = np.mod(boxes[:, 6] + yaw_offset + np.pi, 2.0 * np.pi) - np.pi
    return RosBoxes(center, quaternion_from_yaw(yaw), yaw, boxes[:, 3:6].copy(), velocity)


def transform_points(points: np.ndarray, T_out_in: np.ndarray | None) -> np.ndarray:
    """[N, 3] points of one frame expressed in another: ``T_out_in`` (4x4) maps the first into the second;
    None returns ``points`` themselves (no other frame)."""
    if T_out_in is None:
        return points
    T = np.asarray(T_out_in, dtype=np.float64)
    return np.asarray(points, dtype=np.float64) @ T[:3, :3].T + T[:3, 3]


def transform_boxes(boxes: RosBoxes, T_out_in: np.ndarray) -> RosBoxes:
    """The same boxes expressed in another frame: ``T_out_in`` (4x4) maps points of their frame into it.

    Centres are moved, velocities rotated (the frames' relative motion is not added), orientations
    composed exactly, and ``yaw`` is the heading's angle about the new frame's z.
    """
    T = np.asarray(T_out_in, dtype=np.float64)
    R = T[:3, :3]
    heading = np.stack([np.cos(boxes.yaw), np.sin(boxes.yaw), np.zeros_like(boxes.yaw)], axis=-1) @ R.T
    return RosBoxes(
        center=transform_points(boxes.center, T),
        quaternion=quaternion_product(quaternion_from_matrix(R), boxes.quaternion),
        yaw=np.arctan2(heading[:, 1], heading[:, 0]),
        size=boxes.size.copy(),
        velocity=boxes.velocity @ R.T,
    )


def select_detections(scores: np.ndarray, score_threshold: float, max_count: int | None) -> np.ndarray:
    """Indices of detections scoring at least ``score_threshold``, by descending score, at most ``max_count``.

    NaN scores never pass. Ties keep the original order.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if max_count is not None and max_count < 0:
        raise ValueError(f"max_count must be >= 0 or None, got {max_count}")
    keep = np.flatnonzero(scores >= float(score_threshold))
    order = keep[np.argsort(-scores[keep], kind="stable")]
    return order if max_count is None else order[:max_count]
