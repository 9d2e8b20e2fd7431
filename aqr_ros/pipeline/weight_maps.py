"""Colour images of the AQR modality weight maps: a BEV picture with the detections and per-camera overlays.

Colours use a fixed scale (``vmax``) so that frames can be compared with each other. The BEV picture is
oriented for a REP-103 viewer looking down on the vehicle: forward is up and left is left (so the image's
right is the vehicle's right). The model's LIDAR_TOP frame has x right and y forward whichever input
convention the node uses, so the picture is the model map with its y axis pointing up.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from aqr_ros.pipeline.calibration import ImageTransform, axes_to_model

#: RGB (0..255) per nuScenes class, the one colour table of every picture and marker.
CLASS_RGB: dict[str, tuple[int, int, int]] = {
    "car": (255, 158, 0), "truck": (255, 99, 71), "construction_vehicle": (233, 150, 70), "bus": (255, 69, 0),
    "trailer": (255, 140, 0), "barrier": (112, 128, 144), "motorcycle": (255, 61, 99), "bicycle": (220, 20, 60),
    "pedestrian": (0, 0, 230), "traffic_cone": (47, 79, 79),
}
#: Colours of other class names, by label index.
FALLBACK_RGB = ((128, 128, 128), (0, 179, 179), (179, 0, 179), (179, 179, 0))


def class_rgb(name: str, label: int) -> tuple[int, int, int]:
    """Fixed RGB (0..255) colour of a class: by name, else by label index from the fallback colours."""
    return CLASS_RGB.get(name, FALLBACK_RGB[label % len(FALLBACK_RGB)])


def colorize(map2d: np.ndarray, vmax: float, colormap: int = cv2.COLORMAP_TURBO) -> np.ndarray:
    """HxWx3 uint8 RGB heat map of ``map2d`` on the fixed scale [0, vmax] (NaN shows as 0)."""
    if not vmax > 0:
        raise ValueError(f"vmax must be positive, got {vmax}")
    values = np.nan_to_num(np.asarray(map2d, dtype=np.float32), nan=0.0)
    grey = np.clip(values * np.float32(255.0 / vmax) + 0.5, 0.0, 255.0).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(grey, colormap), cv2.COLOR_BGR2RGB)


def _footprints(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model-frame xy of each box's 4 footprint corners [K, 4, 2] and heading tick end points [K, 2, 2]."""
    centre, length, width, yaw = boxes[:, 0:2], boxes[:, 3], boxes[:, 4], boxes[:, 6]
    heading = np.stack([np.cos(yaw), np.sin(yaw)], axis=1)
    side = np.stack([-heading[:, 1], heading[:, 0]], axis=1)
    signs = np.array([(1, 1), (1, -1), (-1, -1), (-1, 1)], dtype=np.float64)
    corners = (centre[:, None, :]
               + signs[None, :, 0:1] * (length / 2)[:, None, None] * heading[:, None, :]
               + signs[None, :, 1:2] * (width / 2)[:, None, None] * side[:, None, :])
    tick = np.stack([centre, centre + (length / 2)[:, None] * heading], axis=1)
    return corners, tick


def bev_image(
    bev_map: np.ndarray,
    boxes_model: np.ndarray,
    labels: np.ndarray,
    pc_range: Sequence[float],
    convention: str,
    scale: int = 4,
    vmax: float = 1.5,
    class_names: Sequence[str] = (),
) -> np.ndarray:
    """RGB picture of the [H, W] BEV weight map (row = model y, column = model x over ``pc_range``) with
    the [K, 9] model-frame boxes drawn as rotated footprints plus a heading tick, forward up, in the colour
    of their class (``class_names[label]``).

    ``convention`` (the node's input axis convention) is only validated: forward is the model's +y for both.
    """
    axes_to_model(convention)
    bev_map = np.asarray(bev_map)
    rows, cols = bev_map.shape
    image = np.ascontiguousarray(cv2.resize(colorize(bev_map[::-1], vmax), (cols * scale, rows * scale),
                                            interpolation=cv2.INTER_NEAREST))
    boxes = np.asarray(boxes_model, dtype=np.float64).reshape(-1, 9)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) != len(boxes):
        raise ValueError(f"got {len(boxes)} boxes but {len(labels)} labels")
    if len(boxes) == 0:
        return image
    x_min, y_min, _, x_max, y_max, _ = (float(v) for v in pc_range)
    px_per_m = np.array([cols * scale / (x_max - x_min), rows * scale / (y_max - y_min)])
    origin = np.array([x_min, y_max])
    corners, tick = _footprints(boxes)
    shift = 2  # sub-pixel precision bits for cv2 drawing

    def pixels(xy: np.ndarray) -> np.ndarray:
        """Fixed-point image coordinates (pixel centres at integers) of model-frame xy."""
        image_xy = (xy - origin) * np.array([1.0, -1.0]) * px_per_m - 0.5
        return np.round(image_xy * (1 << shift)).astype(np.int32)

    corner_px, tick_px = pixels(corners), pixels(tick)
    thickness = max(1, scale // 2)
    cv2.polylines(image, list(corner_px), True, (0, 0, 0), thickness + 2, cv2.LINE_AA, shift)  # contrast halo
    cv2.polylines(image, list(tick_px), False, (0, 0, 0), thickness + 2, cv2.LINE_AA, shift)
    for label in np.unique(labels):
        colour = class_rgb(class_names[label] if label < len(class_names) else "", int(label))
        chosen = labels == label
        cv2.polylines(image, list(corner_px[chosen]), True, colour, thickness, cv2.LINE_AA, shift)
        cv2.polylines(image, list(tick_px[chosen]), False, colour, thickness, cv2.LINE_AA, shift)
    return image


def camera_overlay(
    image_bgr: np.ndarray,
    cam_map: np.ndarray,
    transform: ImageTransform,
    vmax: float,
    alpha: float = 0.5,
) -> np.ndarray:
    """RGB camera image with the [h, w] feature-grid weight map blended over the pixels each cell came from.

    Every source pixel centre is mapped through the resize and crop of ``transform`` into the model input and
    takes the colour of the feature cell it falls in; pixels cropped away by the model keep their colour.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    height, width = image_bgr.shape[:2]
    if (height, width) != transform.src_size:
        raise ValueError(f"image is {height}x{width} but the transform is for {transform.src_size}")
    cam_map = np.asarray(cam_map)
    cells_h, cells_w = cam_map.shape
    out_h, out_w = transform.out_size
    x0, y0 = transform.crop[:2]
    v_model = (np.arange(height) + 0.5) * transform.resize - y0
    u_model = (np.arange(width) + 0.5) * transform.resize - x0
    rows_ok = (v_model >= 0) & (v_model < out_h)
    cols_ok = (u_model >= 0) & (u_model < out_w)
    cell_rows = np.clip((v_model * cells_h / out_h).astype(np.int64), 0, cells_h - 1)
    cell_cols = np.clip((u_model * cells_w / out_w).astype(np.int64), 0, cells_w - 1)
    colours = colorize(cam_map, vmax)
    rgb = cv2.cvtColor(np.ascontiguousarray(image_bgr), cv2.COLOR_BGR2RGB)
    blended = cv2.addWeighted(rgb, 1.0 - alpha, colours[cell_rows[:, None], cell_cols[None, :]], alpha, 0.0)
    blended[~rows_ok] = rgb[~rows_ok]
    blended[:, ~cols_ok] = rgb[:, ~cols_ok]
    return blended
