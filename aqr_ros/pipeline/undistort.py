"""Lens distortion: raw camera images onto the pinhole camera the model projects with, from CameraInfo contents.

A raw image (``image_raw``) whose ``D`` is non-zero is remapped onto the pinhole camera of ``P``'s left 3x3 (``K``
when ``P`` is unset), with OpenCV maps built once per calibration; a rectified image (``image_rect``) already is
that pinhole image and is used as it comes, with ``P``. ``R`` and ``P``'s fourth column (stereo rectification) are
not applied: images stay in the camera's own optical frame, the one whose pose tf gives. No ROS imports.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from aqr_ros.pipeline.calibration import validate_intrinsics

#: Distortion models that can be undistorted, and the coefficient counts each accepts (OpenCV's layouts).
DISTORTION_MODELS: dict[str, tuple[int, ...]] = {
    "plumb_bob": (4, 5),
    "rational_polynomial": (8, 12, 14),
    "equidistant": (4,),
}
#: Calibrations closer than this (K and P in px, D unitless) are the same: drivers republish them with float noise.
K_TOLERANCE_PX = 1e-6
D_TOLERANCE = 1e-9


@dataclass(frozen=True, eq=False)
class LensCalibration:
    """What a CameraInfo says about a camera's lens and images."""

    #: 3x3 intrinsics of the raw (distorted) images.
    K: np.ndarray
    #: Distortion coefficients in the order of ``model``.
    D: np.ndarray
    #: sensor_msgs distortion model name.
    model: str
    #: (height, width) of the images.
    size: tuple[int, int]
    #: 3x4 projection of the rectified images; all zeros when the driver leaves it unset.
    P: np.ndarray

    def same_as(self, other: LensCalibration) -> bool:
        """Whether ``other`` describes the same calibration, up to driver float noise."""
        return (self.model == other.model and self.size == other.size and self.D.shape == other.D.shape
                and np.allclose(self.K, other.K, rtol=0.0, atol=K_TOLERANCE_PX)
                and np.allclose(self.P, other.P, rtol=0.0, atol=K_TOLERANCE_PX)
                and np.allclose(self.D, other.D, rtol=0.0, atol=D_TOLERANCE))


def projection_intrinsics(P: np.ndarray, size: tuple[int, int]) -> Optional[np.ndarray]:
    """``P``'s left 3x3 when it is a usable pinhole matrix for images of ``size`` (H, W); None when P is unset
    (drivers that do not rectify send zeros) or implausible."""
    P = np.asarray(P, dtype=np.float64)
    if P.shape == (3, 4) and validate_intrinsics(P[:, :3], size) is None:
        return P[:, :3].copy()
    return None


def ignored_distortion(D: np.ndarray, model: str) -> Optional[str]:
    """Why a raw image's non-zero ``D`` cannot be undistorted and will be ignored, or None (zero D, or it can be).

    Meant for a warning given once per camera.
    """
    D = np.asarray(D, dtype=np.float64).ravel()
    if not np.any(D):
        return None
    coefficients = f"D = [{', '.join(f'{d:g}' for d in D)}]"
    consequence = "the raw images are used as undistorted pinhole images with K"
    if model not in DISTORTION_MODELS:
        return (f"distortion model {model!r} is not supported ({', '.join(DISTORTION_MODELS)}): {coefficients} is "
                f"ignored and {consequence}")
    if len(D) not in DISTORTION_MODELS[model]:
        counts = " or ".join(str(n) for n in DISTORTION_MODELS[model])
        return f"{model} takes {counts} coefficients, got {len(D)}: {coefficients} is ignored and {consequence}"
    if not np.all(np.isfinite(D)):
        return f"non-finite distortion coefficients: {coefficients} is ignored and {consequence}"
    return None


@dataclass(frozen=True, eq=False)
class Rectification:
    """How one camera's images become the pinhole images the model projects with ``K``."""

    #: 3x3 pinhole matrix of the images :meth:`apply` returns (the one for lidar2img).
    K: np.ndarray
    #: (height, width) of the camera's images.
    size: tuple[int, int]
    #: Fixed-point ``cv2.remap`` maps from the pinhole image onto the raw one; None when images are used as they come.
    maps: Optional[tuple[np.ndarray, np.ndarray]]
    #: What is done, for diagnostics.
    description: str
    #: Why a non-zero D is ignored (see :func:`ignored_distortion`), else None.
    ignored: Optional[str] = None

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``image`` undistorted onto the pinhole camera ``K``; unchanged when there is nothing to undistort or its
        size is not the calibrated one (the frame assembler rejects those, naming both sizes)."""
        if self.maps is None or tuple(image.shape[:2]) != tuple(self.size):
            return image
        return cv2.remap(image, self.maps[0], self.maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def rectification(lens: LensCalibration, rectified: bool) -> Rectification:
    """The :class:`Rectification` of a camera's images: ``rectified`` images (image_rect) are projected with P as
    they are; raw ones are undistorted onto P's pinhole (K's when P is unset) when D is non-zero and supported."""
    K = np.asarray(lens.K, dtype=np.float64)
    P3 = projection_intrinsics(lens.P, lens.size)
    new_K, with_p = (K, "K (P unset)") if P3 is None else (P3, "P")
    if rectified:
        return Rectification(new_K, lens.size, None, f"rectified input, projected with {with_p}")
    D = np.asarray(lens.D, dtype=np.float64).ravel()
    if not np.any(D):
        return Rectification(K, lens.size, None, "raw input without distortion, projected with K")
    ignored = ignored_distortion(D, lens.model)
    if ignored is not None:
        return Rectification(K, lens.size, None, f"distortion ignored: {ignored}", ignored)
    height, width = lens.size
    if lens.model == "equidistant":
        maps = cv2.fisheye.initUndistortRectifyMap(K, D, np.eye(3), new_K, (width, height), cv2.CV_16SC2)
    else:
        maps = cv2.initUndistortRectifyMap(K, D, np.eye(3), new_K, (width, height), cv2.CV_16SC2)
    return Rectification(new_K, lens.size, maps, f"raw input undistorted ({lens.model}) onto {with_p}")


class RectificationCache:
    """Per camera, the :class:`Rectification` of its latest calibration; maps are rebuilt only when it changes."""

    def __init__(self, rectified: bool) -> None:
        """``rectified``: the images are image_rect (see :func:`rectification`)."""
        self.rectified = rectified
        self._lock = threading.Lock()
        self._current: dict[int, tuple[LensCalibration, Rectification]] = {}

    def get(self, camera: int, lens: LensCalibration) -> Rectification:
        """The rectification of ``lens``: the same object as before while the calibration is unchanged."""
        with self._lock:
            current = self._current.get(camera)
        if current is not None and current[0].same_as(lens):
            return current[1]
        result = rectification(lens, self.rectified)  # maps are built outside the lock (4-10 ms at 1600x900)
        with self._lock:
            self._current[camera] = (lens, result)
        return result
