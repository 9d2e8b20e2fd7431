"""Model inputs straight from the synthetic rig, without ROS: for the model benchmark and model tests.

The rig's clouds and images go through the same :class:`~aqr_ros.pipeline.frame.FrameAssembler` the node
uses, so the points are accumulated over sweeps with the time-lag channel and motion-compensated through the
rig's ego poses, and lidar2img includes the resize/crop and the REP-103 → nuScenes axis change.
"""

from __future__ import annotations

import numpy as np
import torch

from aqr_ros.model.config import ModelConfig
from aqr_ros.pipeline.frame import CameraCalibration, FrameAssembler, ModelInput
from aqr_ros.tools.synthetic_rig import LIDAR_PERIOD, SyntheticRig

#: Axis convention of the rig's ``lidar_top`` frame.
RIG_LIDAR_AXES = "rep103"


def rig_calibrations(rig: SyntheticRig) -> list[CameraCalibration]:
    """Per-camera K, image size and ``T_optical_lidar`` of the rig, in model view order."""
    calibs = []
    for i in range(len(rig.rig.cameras)):
        info = rig.camera_info(i)
        calibs.append(CameraCalibration(K=info.K, size=(info.height, info.width), T_cam_lidar=rig.rig.T_cam_lidar(i)))
    return calibs


def rig_model_input(
    rig: SyntheticRig,
    config: ModelConfig,
    frame_index: int,
    device: torch.device | str = "cpu",
    camera_valid: np.ndarray | None = None,
) -> ModelInput:
    """Model input for LiDAR frame ``frame_index``: its sweep plus up to ``num_sweeps`` earlier ones, and
    the six camera images taken at that sweep's time (cameras with ``camera_valid[i]`` false are left out).
    """
    assembler = FrameAssembler(config, RIG_LIDAR_AXES, device)
    first = max(0, frame_index - config.lidar.num_sweeps)
    T_base_lidar = rig.rig.T_base_lidar
    for k in range(first, frame_index + 1):
        t = k * LIDAR_PERIOD
        cloud = rig.lidar_sweep(t)
        points = np.stack([cloud["x"], cloud["y"], cloud["z"], cloud["intensity"]], axis=1)
        assembler.push_cloud(points, t, rig.ego_pose(t) @ T_base_lidar)
    t_key = frame_index * LIDAR_PERIOD
    num_views = config.image.num_views
    valid = np.ones(num_views, dtype=bool) if camera_valid is None else np.asarray(camera_valid, dtype=bool)
    images = [rig.camera_image(i, t_key) if valid[i] else None for i in range(num_views)]
    return assembler.assemble(images, rig_calibrations(rig))
