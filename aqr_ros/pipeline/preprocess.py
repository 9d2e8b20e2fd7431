"""Model input assembly on the inference device: image resize/crop/normalisation, points and lidar2img tensors.

Two resize back-ends produce the same model input. ``"cv2"`` runs ``cv2.resize`` (INTER_LINEAR) on the
host, exactly the training pipeline's operation, and uploads the small resized image; it is the default on
CPU. ``"torch"`` uploads the camera image once and resizes on the device with
``F.interpolate(mode="bilinear", align_corners=False, antialias=False)``, rounded to whole grey levels; it
is the default on CUDA. For the nuScenes 1600x900 → 800x450 case (an exact factor 2, where OpenCV averages
2x2 blocks and rounds half up) both give identical values; for other factors OpenCV's 11-bit fixed-point
interpolation weights make about one pixel in eight differ by one grey level.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from aqr_ros.model.config import ImageConfig
from aqr_ros.pipeline.calibration import ImageTransform

_TORCH_DTYPES = {np.uint8: torch.uint8, np.float32: torch.float32, np.float64: torch.float64}
RESIZE_BACKENDS = ("auto", "cv2", "torch")


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """One host→device copy of ``array`` (any strides), staged through pinned memory on CUDA."""
    if device.type == "cuda":
        staging = torch.empty(array.shape, dtype=_TORCH_DTYPES[array.dtype.type], pin_memory=True)
        staging.numpy()[...] = array
        return staging.to(device, non_blocking=True)
    if not (array.flags.c_contiguous and array.flags.writeable):
        array = np.array(array, order="C")
    return torch.from_numpy(array).to(device)


def _positive_strides(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """An equivalent view without negative or zero channel strides: (HxW grey or HxWx3, channels reversed).

    Undoes the zero-copy views of :func:`aqr_ros.ros.from_msg.image_to_bgr` (rgb8 reversed channels, mono8
    broadcast) so that neither back-end pays for a strided copy.
    """
    if image.strides[2] == 0:
        return image[:, :, 0], False
    if image.strides[2] < 0:
        return image[:, :, ::-1], True
    return image, False


def _crop_into(dst: torch.Tensor, chw: torch.Tensor, crop: tuple[int, int, int, int], reverse: bool) -> None:
    """Write ``chw[:, y0:y1, x0:x1]`` (1 channel broadcast to 3, or channels reversed) into ``dst`` [3, H, W].

    Where the box leaves the image ``dst`` gets zeros, as the training pipeline's zero canvas did.
    """
    _, height, width = chw.shape
    x0, y0, x1, y1 = crop
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if (sx0, sy0, sx1, sy1) != (x0, y0, x1, y1):
        dst.zero_()
    if sx0 >= sx1 or sy0 >= sy1:
        return
    src = chw[:, sy0:sy1, sx0:sx1]
    if reverse:
        src = src.flip(0)
    dst[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = src.expand(3, -1, -1)


def _hwc_to_chw(pixels: torch.Tensor) -> torch.Tensor:
    """HxW or HxWxC tensor as CxHxW (a view)."""
    return (pixels.unsqueeze(-1) if pixels.ndim == 2 else pixels).permute(2, 0, 1)


class ImagePreprocessor:
    """Turns up to ``cfg.num_views`` uint8 BGR camera images of any sizes into the normalised model input."""

    def __init__(self, cfg: ImageConfig, device: torch.device | str = "cpu", resize_backend: str = "auto") -> None:
        """``resize_backend``: "cv2" (host), "torch" (device) or "auto" (cv2 on CPU, torch elsewhere)."""
        if resize_backend not in RESIZE_BACKENDS:
            raise ValueError(f"resize_backend must be one of {', '.join(RESIZE_BACKENDS)}, got {resize_backend!r}")
        self.cfg = cfg
        self.device = torch.device(device)
        if resize_backend == "auto":
            resize_backend = "cv2" if self.device.type == "cpu" else "torch"
        self.resize_backend = resize_backend
        self._mean = torch.tensor(cfg.mean, dtype=torch.float32, device=self.device).view(3, 1, 1)
        self._std = torch.tensor(cfg.std, dtype=torch.float32, device=self.device).view(3, 1, 1)
        self._transforms: dict[tuple[int, int], ImageTransform] = {}

    def transform_for(self, height: int, width: int) -> ImageTransform:
        """The (cached) resize/crop for a ``height`` x ``width`` camera."""
        key = (height, width)
        if key not in self._transforms:
            self._transforms[key] = ImageTransform.from_image_size(height, width, self.cfg)
        return self._transforms[key]

    def __call__(self, images: Sequence[np.ndarray | None], out: torch.Tensor | None = None) -> torch.Tensor:
        """[V, 3, H, W] float32 on the device (BGR, (x - mean) / std); absent cameras (None or missing) are zeros.

        ``out``, a [V, 3, H, W] float32 tensor on the device, is filled and returned instead of a new tensor
        (saves a large allocation per frame).
        """
        views = self.cfg.num_views
        if len(images) > views:
            raise ValueError(f"got {len(images)} images for {views} views")
        shape = (views, 3, *self.cfg.input_size)
        if out is None:
            out = torch.empty(shape, dtype=torch.float32, device=self.device)
        elif tuple(out.shape) != shape or out.dtype != torch.float32 or out.device.type != self.device.type:
            raise ValueError(f"out must be a float32 {list(shape)} tensor on {self.device}, got "
                             f"{out.dtype} {list(out.shape)} on {out.device}")
        for view in range(views):
            image = images[view] if view < len(images) else None
            if image is None:
                out[view].zero_()
                continue
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"view {view}: expected an HxWx3 uint8 image, got {image.dtype} {image.shape}")
            self._one(image, self.transform_for(*image.shape[:2]), out[view])
        return out

    def _one(self, image: np.ndarray, tf: ImageTransform, dst: torch.Tensor) -> None:
        """Resize, crop and normalise one image into ``dst`` [3, H, W]."""
        pixels, reversed_channels = _positive_strides(image)
        new_w, new_h = tf.resize_dims
        if self.resize_backend == "cv2":
            resized = cv2.resize(pixels, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
            chw = _hwc_to_chw(_to_device(resized, self.device))
        else:
            chw = _hwc_to_chw(_to_device(pixels, self.device)).unsqueeze(0).float()
            chw = F.interpolate(chw, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=False)
            chw = chw[0].add_(0.5).floor_()
        _crop_into(dst, chw, tf.crop, reversed_channels)
        dst.sub_(self._mean).div_(self._std)


def points_to_tensor(points: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """[M, 5] float32 points as a tensor on ``device`` (one pinned host→device copy on CUDA)."""
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 5:
        raise ValueError(f"points must be [M, 5], got shape {points.shape}")
    return _to_device(points, torch.device(device))


def lidar2img_tensor(matrices: Sequence[np.ndarray | None], device: torch.device | str) -> torch.Tensor:
    """[V, 4, 4] float64 on ``device`` from per-camera 4x4 matrices; None gives the identity.

    Kept in float64 so the model inverts the exact matrices, as the original did before casting to float32."""
    stacked = np.tile(np.eye(4, dtype=np.float64), (len(matrices), 1, 1))
    for view, matrix in enumerate(matrices):
        if matrix is not None:
            stacked[view] = np.asarray(matrix, dtype=np.float64).reshape(4, 4)
    return _to_device(stacked, torch.device(device))
