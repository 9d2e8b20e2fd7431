"""``AqrCmt``: the whole detector and its one inference entry point (docs/design.md §2).

The submodule names (``pts_middle_encoder``, ``pts_backbone``, ``pts_neck``, ``img_backbone``,
``img_neck``, ``pts_bbox_head``) are those of the original mmdet3d detector, so its checkpoints load
key for key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .bev_backbone import Second, SecondFpn
from .checkpoint import (
    CheckpointError,
    adapt_state_dict,
    bind_config,
    carried_config,
    check_training_values,
    read_checkpoint,
)
from .config import ModelConfig, load_config
from .decode import decode_boxes
from .head import CmtHead, HeadOutput
from .image_backbone import CpFpn, resnet
from .sparse_encoder import SparseEncoder
from .timing import StageTimer, maybe_stage
from .voxelize import drop_outside_sparse_shape, voxelize

_LOG = logging.getLogger(__name__)

#: Name of the configuration the research checkpoints were trained with.
DEFAULT_CONFIG = "cmt_aqr_voxel0100_r50_800x320"

RANDOM_WEIGHTS_WARNING = (
    "AqrCmt built with RANDOM weights (no checkpoint given): detections and weight maps are "
    "meaningless; use this only for plumbing tests and benchmarks."
)


@dataclass
class Detections:
    """Result of :meth:`AqrCmt.infer` for one frame, all tensors on the model's device.

    boxes [K, 9] (x, y, z_bottom, dx, dy, dz, yaw, vx, vy) in the model LiDAR frame; scores [K];
    labels [K] (index into ``class_names``); query_index [K]; lidar_weights / camera_weights [Q]
    (the AQR weight of every query); bev_weight_map [H, W] (128x128); camera_weight_map [V, h, w] (6x20x50).
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    query_index: Tensor
    lidar_weights: Tensor
    camera_weights: Tensor
    bev_weight_map: Tensor
    camera_weight_map: Tensor
    class_names: tuple[str, ...]

    def to(self, device: torch.device | str) -> "Detections":
        """A copy with every tensor moved to ``device`` (e.g. ``"cpu"`` before publishing)."""
        moved = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()}
        return Detections(**moved)


def _as_tensor(x: np.ndarray | Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return x.to(device=device, dtype=dtype, non_blocking=True)


class AqrCmt(nn.Module):
    """AQR-modulated CMT: LiDAR voxels + six camera images → 3-D boxes and modality weight maps."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        lid, img = config.lidar, config.image
        self.pts_middle_encoder = SparseEncoder(
            in_channels=lid.num_point_features,
            sparse_shape=lid.sparse_shape,
            base_channels=lid.base_channels,
            output_channels=lid.output_channels,
        )
        # The encoder's output depth (2 for the 41-voxel z extent) is folded into the BEV channels.
        self.pts_backbone = Second(in_channels=lid.output_channels * 2, out_channels=lid.bev_channels,
                                   layer_nums=lid.bev_layers)
        self.pts_neck = SecondFpn(in_channels=lid.bev_channels, out_channels=lid.bev_neck_channels)
        self.img_backbone = resnet(img.backbone, base_channels=img.base_channels)
        self.img_neck = CpFpn(in_channels=img.neck_in_channels, out_channels=config.head.hidden_dim)
        self.pts_bbox_head = CmtHead(config, in_channels=sum(lid.bev_neck_channels))
        self.eval()

    @property
    def device(self) -> torch.device:
        """Device holding the parameters."""
        return self.pts_bbox_head.reference_points.weight.device

    @property
    def class_names(self) -> tuple[str, ...]:
        """Label index → class name."""
        return self.config.head.class_names

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Checkpoint key → tensor shape this model loads (its own ``state_dict``)."""
        return {k: tuple(v.shape) for k, v in self.state_dict().items()}

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | None,
        config: str | Path | ModelConfig | None = None,
        device: str | torch.device = "cpu",
    ) -> "AqrCmt":
        """Build the model and load ``path`` strictly (``.pth`` of the original mmdet3d training or ``.safetensors``);
        ``None`` keeps random weights and warns that outputs are meaningless.

        A ``.safetensors`` written by this project carries its model config and is built with it; a ``config``
        given as well must agree with it (:func:`bind_config`). Otherwise ``config`` decides, by default
        :data:`DEFAULT_CONFIG`, and must agree with what a ``.pth``'s mmcv meta records (:func:`check_training_values`).
        """
        chosen = config if isinstance(config, ModelConfig) or config is None else load_config(config)
        raw = read_checkpoint(path) if path is not None else None
        cfg = bind_config(carried_config(raw, path) if raw is not None else None, chosen, path, DEFAULT_CONFIG)
        if raw is not None and raw.source_format == "pth":
            check_training_values(raw.meta, cfg, path)
        model = cls(cfg)
        if path is None:
            _LOG.warning(RANDOM_WEIGHTS_WARNING)
        else:
            state = adapt_state_dict(raw.state_dict, model.expected_shapes())
            # adapt_state_dict already proved the key sets equal (the kernel buffer aside) and the shapes.
            result = model.load_state_dict(state, strict=False)
            unexpected = list(result.unexpected_keys)
            missing = [k for k in result.missing_keys if not k.endswith("weight_renderer.gaussian_kernel")]
            if missing or unexpected:
                raise CheckpointError(f"{path}: missing keys {missing[:20]}, unexpected keys {unexpected[:20]}")
        return model.to(device).eval()

    def _lidar_features(self, points: Sequence[Tensor], timer: StageTimer | None) -> Tensor:
        """One [N_b, 5] cloud per sample → the SECONDFPN BEV map [B, 512, H, W]."""
        lid = self.config.lidar
        with maybe_stage(timer, "voxelize"):
            features, coords = [], []
            for b, cloud in enumerate(points):
                voxels = drop_outside_sparse_shape(voxelize(cloud, lid), lid.sparse_shape)
                features.append(voxels.features)
                coords.append(torch.nn.functional.pad(voxels.coords.long(), (1, 0), value=b))  # batch index
        with maybe_stage(timer, "sparse_encoder"):
            bev = self.pts_middle_encoder(torch.cat(features), torch.cat(coords), len(points))
        with maybe_stage(timer, "bev_2d"):
            return self.pts_neck(self.pts_backbone(bev))

    def _image_features(self, images: Tensor, timer: StageTimer | None) -> Tensor:
        with maybe_stage(timer, "image_backbone_neck"):
            c4, c5 = self.img_backbone(images)
            return self.img_neck((c4, c5))

    @torch.inference_mode()
    def infer(
        self,
        points: np.ndarray | Tensor,
        images: np.ndarray | Tensor,
        lidar2img: np.ndarray | Tensor,
        camera_valid: np.ndarray | Tensor | Sequence[bool] | None = None,
        *,
        fp16: bool = False,
        timer: StageTimer | None = None,
    ) -> Detections:
        """Detect objects in one frame (docs/design.md §2 shapes; model LiDAR frame, model view order).

        Absent cameras (``camera_valid[v]`` false) may carry any image: their features are zeroed, their
        tokens are excluded from the decoder's cross-attention and AQR treats them as seeing no query. An
        empty ``points`` array runs the LiDAR branch on an empty voxel set (all-zero sparse features).
        """
        cfg = self.config
        dev = self.device
        num_views = cfg.image.num_views
        pts = _as_tensor(points, dev, torch.float32).reshape(-1, cfg.lidar.num_point_features)
        imgs = _as_tensor(images, dev, torch.float32)
        l2i = _as_tensor(lidar2img, dev, torch.float64)  # inverted in float64 by the head, as the original
        expected_img = (num_views, 3, *cfg.image.input_size)
        if tuple(imgs.shape) != expected_img:
            raise ValueError(f"images: expected shape {expected_img}, got {tuple(imgs.shape)}")
        if tuple(l2i.shape) != (num_views, 4, 4):
            raise ValueError(f"lidar2img: expected shape {(num_views, 4, 4)}, got {tuple(l2i.shape)}")
        if camera_valid is None:
            valid = torch.ones(num_views, dtype=torch.bool, device=dev)
        else:
            valid = _as_tensor(np.asarray(camera_valid, dtype=bool) if not isinstance(camera_valid, Tensor)
                               else camera_valid, dev, torch.bool)
            if tuple(valid.shape) != (num_views,):
                raise ValueError(f"camera_valid: expected shape ({num_views},), got {tuple(valid.shape)}")

        use_amp = fp16 and dev.type == "cuda"
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
            x_bev = self._lidar_features([pts], timer)
            x_img = self._image_features(imgs, timer)
            out = self.pts_bbox_head(x_bev, x_img, l2i[None], valid[None], timer=timer)
        with maybe_stage(timer, "decode"):
            decoded = decode_boxes(out.predictions, cfg.head)[0]
        return Detections(
            boxes=decoded.boxes.float(),
            scores=decoded.scores.float(),
            labels=decoded.labels,
            query_index=decoded.query_index,
            lidar_weights=out.lidar_weights[0].float(),
            camera_weights=out.camera_weights[0].float(),
            bev_weight_map=out.bev_weight_map[0].float(),
            camera_weight_map=out.camera_weight_map[0].float(),
            class_names=cfg.head.class_names,
        )


    def forward_train(
        self,
        points: Sequence[Tensor],
        images: Tensor,
        lidar2img: Tensor,
        camera_valid: Tensor,
        dn_reference: Tensor | None = None,
        dn_attn_mask: Tensor | None = None,
    ) -> HeadOutput:
        """Training forward of a batch (with autograd; call ``train()`` first): one [N_b, 5] cloud per sample,
        images [B*V, 3, H, W] (index b*V + v), lidar2img [B, V, 4, 4] float64, camera_valid [B, V] bool and
        optional denoising queries (see :meth:`CmtHead.forward_train`) → every decoder layer's predictions."""
        x_bev = self._lidar_features(points, None)
        x_img = self.img_neck(self.img_backbone(images))
        return self.pts_bbox_head.forward_train(x_bev, x_img, lidar2img, camera_valid, dn_reference, dn_attn_mask)
