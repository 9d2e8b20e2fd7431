"""One model frame, ROS-free: decoded clouds and images plus calibration in, model tensors out, and back.

:class:`FrameAssembler` keeps the LiDAR sweeps, builds ``points`` / ``images`` / ``lidar2img`` /
``camera_valid`` for :meth:`AqrCmt.infer`, and turns its model-frame detections into boxes in the input
(ROS) LiDAR frame. The node, the benchmarks and the demo share it, so it imports neither ROS nor messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from aqr_ros.model.config import ModelConfig
from aqr_ros.pipeline.boxes import RosBoxes, select_detections, to_ros_boxes
from aqr_ros.pipeline.calibration import axes_to_model, lidar2img, model_intrinsics, validate_intrinsics
from aqr_ros.pipeline.pictures import bev_weight_picture, camera_weight_picture
from aqr_ros.pipeline.preprocess import ImagePreprocessor, lidar2img_tensor, points_to_tensor
from aqr_ros.pipeline.sweeps import SweepAccumulator, scale_intensity

if TYPE_CHECKING:
    from aqr_ros.model.detector import Detections


@dataclass(frozen=True)
class CameraCalibration:
    """What one camera needs for projection: its camera_info and its extrinsic."""

    #: 3x3 pinhole matrix of the camera's own images.
    K: np.ndarray
    #: (height, width) of the camera's images, from camera_info.
    size: tuple[int, int]
    #: 4x4 ``T_optical_lidar``: input-LiDAR-frame points into the camera's optical frame (tf lookup).
    T_cam_lidar: np.ndarray


@dataclass(frozen=True)
class ModelInput:
    """Arguments of :meth:`AqrCmt.infer` for one frame and what diagnostics report about them."""

    points: torch.Tensor
    images: torch.Tensor
    lidar2img: torch.Tensor
    camera_valid: np.ndarray
    #: Per camera, why it is masked although an image was given (None when used or when no image came).
    camera_issues: tuple[str | None, ...]
    num_points: int
    num_sweeps: int
    num_uncompensated: int


@dataclass(frozen=True)
class FrameDetections:
    """Selected detections of one frame, in the input LiDAR frame and in the model frame."""

    boxes: RosBoxes
    #: [K, 9] model-frame boxes (for the BEV picture).
    boxes_model: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    scores: np.ndarray
    query_index: np.ndarray
    #: AQR LiDAR / camera weight of each detection's query.
    lidar_weight: np.ndarray
    camera_weight: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def names(self) -> list[str]:
        """Class name of every detection."""
        return [self.class_names[i] for i in self.labels]


def calibration_issue(image: np.ndarray, calib: CameraCalibration | None) -> str | None:
    """Why ``image`` cannot be used with ``calib`` (missing calibration, bad K, size mismatch), else None."""
    if calib is None:
        return "no calibration (camera_info or tf extrinsic missing)"
    bad_k = validate_intrinsics(calib.K, calib.size)
    if bad_k is not None:
        return bad_k
    if tuple(image.shape[:2]) != tuple(calib.size):
        return (f"image is {image.shape[1]}x{image.shape[0]} but camera_info says "
                f"{calib.size[1]}x{calib.size[0]}")
    return None


class FrameAssembler:
    """Builds model inputs from decoded sensor data and converts detections back into the input frame."""

    def __init__(
        self,
        config: ModelConfig,
        lidar_axes: str,
        device: torch.device | str = "cpu",
        intensity_scale: float = 1.0,
        max_sweep_lag_s: float | None = None,
    ) -> None:
        """``lidar_axes`` names the input cloud frame's axis convention (see ``calibration.axes_to_model``);
        sweeps older than ``max_sweep_lag_s`` before the key cloud are left out (None: any age)."""
        self.config = config
        self.lidar_axes = lidar_axes
        self.device = torch.device(device)
        self.intensity_scale = intensity_scale
        self._T_model_lidar = axes_to_model(lidar_axes)
        self.sweeps = SweepAccumulator(config.lidar.num_sweeps, max_sweep_lag_s)
        self.preprocessor = ImagePreprocessor(config.image, self.device)
        #: Model image input, allocated once and refilled by every :meth:`assemble` (saves ~5 ms per frame on CPU).
        self._images = torch.empty((config.image.num_views, 3, *config.image.input_size), dtype=torch.float32,
                                   device=self.device)

    def reset(self) -> None:
        """Forget the stored sweeps (time jumped back)."""
        self.sweeps.reset()

    def push_cloud(self, points: np.ndarray, stamp_s: float, T_fixed_lidar: np.ndarray | None) -> bool:
        """Store a decoded cloud ([N, 4] x, y, z, raw intensity, input frame) as the new key frame.

        ``T_fixed_lidar`` is the LiDAR pose in the fixed frame (None when tf has none). True when the
        stamp went backwards and the older sweeps were dropped.
        """
        return self.sweeps.push(scale_intensity(points, self.intensity_scale), stamp_s, T_fixed_lidar)

    def lidar2img(self, calib: CameraCalibration) -> np.ndarray:
        """float64 4x4 projection of model-frame points into this camera's model-input pixels."""
        transform = self.preprocessor.transform_for(*calib.size)
        return lidar2img(model_intrinsics(calib.K, transform), calib.T_cam_lidar, self.lidar_axes)

    def assemble(
        self,
        images: Sequence[np.ndarray | None],
        calibrations: Sequence[CameraCalibration | None],
    ) -> ModelInput:
        """Model input from the stored sweeps and one HxWx3 uint8 BGR image (or None) per view.

        A view is valid when its image is given and its calibration is usable; other views are zeroed and
        masked through ``camera_valid``. The returned ``images`` tensor is refilled by the next call.
        """
        num_views = self.config.image.num_views
        if len(images) != num_views or len(calibrations) != num_views:
            raise ValueError(f"expected {num_views} images and calibrations, got {len(images)} and {len(calibrations)}")
        issues = tuple(None if img is None else calibration_issue(img, cal) for img, cal in zip(images, calibrations))
        valid = np.array([img is not None and issue is None for img, issue in zip(images, issues)], dtype=bool)
        batch = self.sweeps.build(self._T_model_lidar)
        used = [img if ok else None for img, ok in zip(images, valid)]
        matrices = [self.lidar2img(cal) if ok else None for cal, ok in zip(calibrations, valid)]
        return ModelInput(
            points=points_to_tensor(batch.points, self.device),
            images=self.preprocessor(used, out=self._images),
            lidar2img=lidar2img_tensor(matrices, self.device),
            camera_valid=valid,
            camera_issues=issues,
            num_points=len(batch.points),
            num_sweeps=batch.num_sweeps,
            num_uncompensated=batch.num_uncompensated,
        )

    def detections(self, det: Detections, score_threshold: float, max_count: int) -> FrameDetections:
        """Select (score, count) and convert :class:`Detections` (any device) into the input LiDAR frame."""
        scores = det.scores.detach().cpu().numpy()
        labels = det.labels.detach().cpu().numpy().astype(np.int64)
        keep = select_detections(scores, score_threshold, max_count)
        boxes_model = det.boxes.detach().cpu().numpy()[keep].astype(np.float64)
        query = det.query_index.detach().cpu().numpy().astype(np.int64)[keep]
        return FrameDetections(
            boxes=to_ros_boxes(boxes_model, self.lidar_axes),
            boxes_model=boxes_model,
            labels=labels[keep],
            class_names=tuple(det.class_names),
            scores=scores[keep].astype(np.float64),
            query_index=query,
            lidar_weight=det.lidar_weights.detach().cpu().numpy()[query].astype(np.float64),
            camera_weight=det.camera_weights.detach().cpu().numpy()[query].astype(np.float64),
        )

    def bev_picture(self, bev_weight_map: np.ndarray, frame: FrameDetections,
                    stamp_s: float | None = None) -> np.ndarray:
        """RGB BEV weight-map picture (forward up, ego and LiDAR axes, range rings, the frame's detections) with
        title (and ``stamp_s``), colour bar 0..``aqr.max_weight_clamp`` and legend."""
        return bev_weight_picture(bev_weight_map, frame.boxes_model, frame.labels, frame.class_names,
                                  self.config.lidar.point_cloud_range, self.lidar_axes,
                                  self.config.aqr.max_weight_clamp, stamp_s)

    def camera_picture(
        self,
        image_bgr: np.ndarray,
        camera_map: np.ndarray,
        alpha: float,
        view: int | None = None,
        frame: FrameDetections | None = None,
        lidar2img: np.ndarray | None = None,
        stamp_s: float | None = None,
    ) -> np.ndarray:
        """RGB picture of camera ``view`` (None: unnamed in the title), the image's size: its [h, w] weight map
        blended over the pixels the model saw, the frame's detections projected with the camera's 4x4 model-input
        ``lidar2img`` (both or neither), title, colour bar and legend. Camera maps are only clamped with
        ``aqr.postprocess_perspective``; without it the colour bar's top label reads ">=clamp"."""
        names = self.config.image.camera_names
        if view is not None and not 0 <= view < len(names):
            raise ValueError(f"camera view {view} out of range 0..{len(names) - 1}")
        if (frame is None) != (lidar2img is None):
            raise ValueError("frame and lidar2img go together: both are needed to project the detections")
        aqr = self.config.aqr
        transform = self.preprocessor.transform_for(*image_bgr.shape[:2])
        title = "camera weight" if view is None else f"camera{view} ({names[view]}) camera weight"
        if frame is None:
            return camera_weight_picture(image_bgr, camera_map, transform, aqr.max_weight_clamp, alpha, title, stamp_s,
                                         not aqr.postprocess_perspective)
        return camera_weight_picture(image_bgr, camera_map, transform, aqr.max_weight_clamp, alpha, title, stamp_s,
                                     not aqr.postprocess_perspective, frame.boxes_model, frame.labels, frame.scores,
                                     frame.class_names, lidar2img)
