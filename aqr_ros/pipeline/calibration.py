"""Camera and LiDAR calibration maths: the training-time resize/crop, intrinsics, lidar2img, axis conventions.

Conventions: ``T_a_b`` is the 4x4 rigid transform taking points from frame ``b`` into frame ``a``
(``p_a = T_a_b @ p_b``), which is what a tf lookup of target ``a`` / source ``b`` returns. Pixel
coordinates follow the pinhole model of ``K`` (u right, v down, continuous, as the training code
updates K). Everything here is float64 numpy; the model casts to float32 at the very end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aqr_ros.model.config import ImageConfig

#: LiDAR axis conventions accepted by :func:`axes_to_model`, naming the axes of the *input* cloud frame.
LIDAR_CONVENTIONS = ("rep103", "nuscenes_lidar_top")

#: Slack added before truncating resized sizes so that e.g. 1920 * (800 / 1920) never floors to 799.
_SIZE_EPS = 1e-6


@dataclass(frozen=True)
class ImageTransform:
    """Resize-then-crop from one camera's image onto the model input, as the training test pipeline did."""

    #: Source image (h, w) in pixels.
    src_size: tuple[int, int]
    #: Scale factor applied to both axes (and to fx, fy, cx, cy).
    resize: float
    #: Resized image (W, H) in pixels, the cv2/PIL size order.
    resize_dims: tuple[int, int]
    #: Crop box (x0, y0, x1, y1) in the resized image; x1 - x0, y1 - y0 is the model input (W, H).
    crop: tuple[int, int, int, int]

    @classmethod
    def from_image_size(cls, height: int, width: int, cfg: ImageConfig) -> ImageTransform:
        """Test-time ResizeCropFlipImage geometry (docs/model.md §2.1) for a ``height`` x ``width`` camera."""
        if height <= 0 or width <= 0:
            raise ValueError(f"image size must be positive, got {height}x{width}")
        out_h, out_w = cfg.input_size
        resize = max(out_h / height, out_w / width)
        new_w, new_h = int(width * resize + _SIZE_EPS), int(height * resize + _SIZE_EPS)
        crop_h = int((1.0 - float(np.mean(cfg.bot_pct_lim))) * new_h) - out_h
        crop_w = int(max(0, new_w - out_w) / 2)
        return cls((height, width), resize, (new_w, new_h), (crop_w, crop_h, crop_w + out_w, crop_h + out_h))

    @property
    def out_size(self) -> tuple[int, int]:
        """Model input (H, W) this transform produces."""
        x0, y0, x1, y1 = self.crop
        return (y1 - y0, x1 - x0)

    def pixel_matrix(self) -> np.ndarray:
        """3x3 affine taking homogeneous source pixels (u, v, 1) to model-input pixels."""
        return np.array([[self.resize, 0.0, -self.crop[0]],
                         [0.0, self.resize, -self.crop[1]],
                         [0.0, 0.0, 1.0]])


def model_intrinsics(K: np.ndarray, transform: ImageTransform) -> np.ndarray:
    """4x4 ``viewpad`` intrinsics of the model input: fx, fy, cx, cy scaled by the resize, minus the crop."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be 3x3, got shape {K.shape}")
    viewpad = np.eye(4)
    viewpad[:3, :3] = K
    viewpad[:2, :3] *= transform.resize
    viewpad[0, 2] -= transform.crop[0]
    viewpad[1, 2] -= transform.crop[1]
    return viewpad


def axes_to_model(convention: str) -> np.ndarray:
    """4x4 ``T_model_input``: rotates points of a cloud in ``convention`` axes into the model's LIDAR_TOP axes.

    ``"rep103"``: the input frame is x forward, y left, z up; the model (nuScenes LIDAR_TOP) frame is x right,
    y forward, z up, so ``p_model = Rz(+90°) p_input``. ``"nuscenes_lidar_top"``: the input already uses the
    model's axes (identity).
    """
    if convention == "nuscenes_lidar_top":
        return np.eye(4)
    if convention == "rep103":
        T = np.eye(4)
        T[:2, :2] = [[0.0, -1.0], [1.0, 0.0]]
        return T
    raise ValueError(f"unknown LiDAR axis convention {convention!r} (accepted: {', '.join(LIDAR_CONVENTIONS)})")


def lidar2img(K4: np.ndarray, T_cam_lidar: np.ndarray, convention: str = "nuscenes_lidar_top") -> np.ndarray:
    """float64 4x4 projection from model-frame LiDAR points to model-input pixels (homogeneous, depth in row 2).

    ``T_cam_lidar`` is the optical-frame ← input-LiDAR-frame extrinsic (from tf); ``convention`` names the
    input LiDAR frame's axes, so the result is ``K4 @ T_cam_lidar @ inv(axes_to_model(convention))``.
    """
    K4 = np.asarray(K4, dtype=np.float64)
    T = np.asarray(T_cam_lidar, dtype=np.float64)
    if K4.shape != (4, 4) or T.shape != (4, 4):
        raise ValueError(f"K4 and T_cam_lidar must be 4x4, got {K4.shape} and {T.shape}")
    return K4 @ T @ np.linalg.inv(axes_to_model(convention))


def points_from_model(xyz: np.ndarray, convention: str) -> np.ndarray:
    """[N, 3] float64 model-frame points (or vectors) rotated into the ``convention`` input axes."""
    return np.asarray(xyz, dtype=np.float64).reshape(-1, 3) @ axes_to_model(convention)[:3, :3]


def points_to_model(points: np.ndarray, convention: str) -> np.ndarray:
    """Copy of ``points`` [N, C >= 3] with x, y, z rotated from ``convention`` axes into the model frame."""
    out = np.array(points, dtype=np.float32)
    R = axes_to_model(convention)[:3, :3].astype(np.float32)
    out[:, :3] = out[:, :3] @ R.T
    return out


#: Plausible focal lengths as multiples of the image width: from a 180-degree fisheye to a long telephoto.
FOCAL_RANGE_IN_WIDTHS = (0.05, 50.0)


def validate_intrinsics(K: np.ndarray, size: tuple[int, int] | None = None) -> str | None:
    """Why ``K`` (3x3 or 9 values) is unusable as a pinhole matrix for an image of ``size`` (H, W; optional),
    or None when it is fine."""
    K = np.asarray(K, dtype=np.float64)
    if K.size != 9:
        return f"K has {K.size} values, expected 9"
    K = K.reshape(3, 3)
    if not np.all(np.isfinite(K)):
        return "K has non-finite values"
    if not np.any(K):
        return "K is all zeros (camera not calibrated)"
    fx, fy = K[0, 0], K[1, 1]
    if fx <= 0 or fy <= 0:
        return f"focal lengths must be positive, got fx={fx:g}, fy={fy:g}"
    if not math.isclose(K[2, 2], 1.0, abs_tol=1e-6) or K[2, 0] != 0 or K[2, 1] != 0:
        return f"last row of K must be [0, 0, 1], got {K[2].tolist()}"
    if size is not None:
        height, width = size
        lo, hi = (f * width for f in FOCAL_RANGE_IN_WIDTHS)
        if not (lo <= fx <= hi and lo <= fy <= hi):
            return (f"implausible focal lengths fx={fx:g}, fy={fy:g} px for an image {width} px wide "
                    f"(accepted {lo:g}..{hi:g})")
        cx, cy = K[0, 2], K[1, 2]
        if not (-width <= cx <= 2 * width and -height <= cy <= 2 * height):
            return f"implausible principal point ({cx:g}, {cy:g}) for a {width}x{height} image"
    return None
