"""Colour images of the AQR modality weight maps: a BEV picture with the detections and per-camera overlays.

Colours use a fixed scale (``vmax``) so that frames can be compared with each other. The BEV picture is
oriented for a REP-103 viewer looking down on the vehicle: forward is up and left is left (so the image's
right is the vehicle's right). The model's LIDAR_TOP frame has x right and y forward whichever input
convention the node uses, so the picture is the model map with its y axis pointing up. Cells no query
reaches (weight exactly 0) are greyed and hatched rather than given the colour of a small weight; the
legend, title and colour bar around these panels are added by :mod:`aqr_ros.pipeline.pictures`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

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
#: Fill of map cells no query reaches (weight 0) and of the hatch lines drawn over them.
UNREACHED_RGB = (150, 150, 150)
HATCH_RGB = (60, 60, 60)
#: Colours of the LiDAR input frame's x and y axis arrows on the BEV picture (rviz's axis colours).
AXIS_RGB = ((255, 40, 40), (40, 230, 40))
#: Ego vehicle footprint drawn at the LiDAR origin, (length, width) in metres.
EGO_SIZE_M = (4.6, 1.9)
#: Box edges as corner index pairs (corners of :func:`box_corners`), then the front face's two diagonals.
_BOX_EDGES = np.array([(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
                       (0, 4), (1, 5), (2, 6), (3, 7), (0, 5), (1, 4)])
#: Sub-pixel precision bits of the cv2 drawing calls.
_SHIFT = 2
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_rgb(name: str, label: int) -> tuple[int, int, int]:
    """Fixed RGB (0..255) colour of a class: by name, else by label index from the fallback colours."""
    return CLASS_RGB.get(name, FALLBACK_RGB[label % len(FALLBACK_RGB)])


def class_name(label: int, class_names: Sequence[str]) -> str:
    """Name of a label: ``class_names[label]``, else "class <label>"."""
    return class_names[label] if 0 <= label < len(class_names) else f"class {label}"


def ui_scale(height: int, width: int) -> float:
    """Size factor of text, lines and hatching: 1 for a 512 px picture, larger for camera-sized ones."""
    return max(1.0, min(height, width) / 512)


def contrast_rgb(rgb: Sequence[int]) -> tuple[int, int, int]:
    """Black for a light colour, white for a dark one: the outline and text colour that stands out against it."""
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luma >= 110 else (255, 255, 255)


def colorize(map2d: np.ndarray, vmax: float, colormap: int = cv2.COLORMAP_TURBO) -> np.ndarray:
    """HxWx3 uint8 RGB heat map of ``map2d`` on the fixed scale [0, vmax] (NaN shows as 0)."""
    if not vmax > 0:
        raise ValueError(f"vmax must be positive, got {vmax}")
    values = np.nan_to_num(np.asarray(map2d, dtype=np.float32), nan=0.0)
    grey = np.clip(values * np.float32(255.0 / vmax) + 0.5, 0.0, 255.0).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(grey, colormap), cv2.COLOR_BGR2RGB)


@lru_cache(maxsize=8)
def _stripes(height: int, width: int, period: int) -> np.ndarray:
    """Read-only [H, W] bool mask of diagonal hatch lines, one ``period`` // 4 px wide line every ``period`` px."""
    rows, cols = np.ogrid[:height, :width]
    stripes = (rows + cols) % period < max(1, period // 4)
    stripes.flags.writeable = False
    return stripes


def hatch(image: np.ndarray, mask: np.ndarray, period: int = 8) -> None:
    """Draw diagonal hatch lines in ``HATCH_RGB`` over the pixels of ``image`` where ``mask`` [H, W] is true."""
    image[mask & _stripes(*mask.shape, period)] = HATCH_RGB


def put_text(image: np.ndarray, text: str, org: tuple[int, int], scale: float,
             rgb: Sequence[int] = (255, 255, 255), outline: bool = True) -> None:
    """Text with its baseline-left at ``org`` in ``rgb``; ``outline`` first draws it shifted by 1 px in the four
    diagonal directions in a contrasting colour, so that it reads on any background."""
    thickness = max(1, round(scale * 1.5))
    if outline:
        for dx, dy in ((-1, -1), (1, -1), (-1, 1), (1, 1)):
            cv2.putText(image, text, (org[0] + dx, org[1] + dy), _FONT, scale, contrast_rgb(rgb), thickness,
                        cv2.LINE_AA)
    cv2.putText(image, text, org, _FONT, scale, tuple(int(c) for c in rgb), thickness, cv2.LINE_AA)


def draw_outlined(image: np.ndarray, lines: Sequence[np.ndarray], labels: np.ndarray, class_names: Sequence[str],
                  thickness: int) -> None:
    """Open poly-lines (fixed-point pixel arrays, ``_SHIFT`` fraction bits), one per label, in their class colour
    over a 1 px wider outline contrasting with it (:func:`contrast_rgb`), so that they show on a white, a black or
    a same-coloured background. All outlines go first, then the colours: one cv2 call per colour."""
    groups = [([lines[i] for i in np.flatnonzero(mask)], colour)
              for mask, colour in _class_groups(np.asarray(labels, dtype=np.int64), class_names)]
    for outline in ((0, 0, 0), (255, 255, 255)):
        chosen = [line for group, colour in groups if contrast_rgb(colour) == outline for line in group]
        if chosen:
            cv2.polylines(image, chosen, False, outline, thickness + 2, cv2.LINE_AA, _SHIFT)
    for group, colour in groups:
        cv2.polylines(image, group, False, colour, thickness, cv2.LINE_AA, _SHIFT)


def _fixed(xy: np.ndarray) -> np.ndarray:
    """Fixed-point int32 copy of float pixel coordinates (pixel centres at integers) for the cv2 calls."""
    return np.round(xy * (1 << _SHIFT)).astype(np.int32)


def _footprints(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model-frame xy of each box's 4 footprint corners [K, 4, 2] and heading tick end points [K, 2, 2].

    Corners run front-left, front-right, rear-right, rear-left (seen along the heading)."""
    centre, length, width, yaw = boxes[:, 0:2], boxes[:, 3], boxes[:, 4], boxes[:, 6]
    heading = np.stack([np.cos(yaw), np.sin(yaw)], axis=1)
    side = np.stack([-heading[:, 1], heading[:, 0]], axis=1)
    signs = np.array([(1, 1), (1, -1), (-1, -1), (-1, 1)], dtype=np.float64)
    corners = (centre[:, None, :]
               + signs[None, :, 0:1] * (length / 2)[:, None, None] * heading[:, None, :]
               + signs[None, :, 1:2] * (width / 2)[:, None, None] * side[:, None, :])
    tick = np.stack([centre, centre + (length / 2)[:, None] * heading], axis=1)
    return corners, tick


def box_corners(boxes_model: np.ndarray) -> np.ndarray:
    """[K, 8, 3] model-frame corners of [K, 9] boxes (z is the bottom): the footprint at the bottom, then on top."""
    boxes = np.asarray(boxes_model, dtype=np.float64).reshape(-1, 9)
    footprint, _ = _footprints(boxes)
    bottom = np.concatenate([footprint, np.broadcast_to(boxes[:, None, 2:3], (len(boxes), 4, 1))], axis=2)
    top = bottom + np.stack([np.zeros(len(boxes)), np.zeros(len(boxes)), boxes[:, 5]], axis=1)[:, None, :]
    return np.concatenate([bottom, top], axis=1)


def _class_groups(labels: np.ndarray, class_names: Sequence[str]) -> list[tuple[np.ndarray, tuple[int, int, int]]]:
    """(mask, RGB) per distinct label, so each class is drawn with one cv2 call."""
    return [(labels == label, class_rgb(class_name(label, class_names), int(label))) for label in np.unique(labels)]


def _checked_labels(boxes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[K, 9] float64 boxes and [K] int64 labels, or a ValueError when their counts differ."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 9)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) != len(boxes):
        raise ValueError(f"got {len(boxes)} boxes but {len(labels)} labels")
    return boxes, labels


def bev_image(
    bev_map: np.ndarray,
    boxes_model: np.ndarray,
    labels: np.ndarray,
    pc_range: Sequence[float],
    convention: str,
    scale: int = 4,
    vmax: float = 1.5,
    class_names: Sequence[str] = (),
    ring_step_m: float = 10.0,
) -> np.ndarray:
    """RGB picture of the [H, W] BEV weight map (row = model y, column = model x over ``pc_range``), forward up.

    Drawn on it: cells of weight 0 greyed and hatched; range rings every ``ring_step_m`` metres (0: none)
    labelled in metres; the ego footprint at the LiDAR origin with the ``convention`` input frame's x (red) and
    y (green) axes; the [K, 9] model-frame boxes as outlined footprints with a heading tick in the colour of
    their class (``class_names[label]``).
    """
    T_model_input = axes_to_model(convention)
    boxes, labels = _checked_labels(boxes_model, labels)
    bev_map = np.asarray(bev_map)
    rows, cols = bev_map.shape
    flipped = bev_map[::-1]
    cells = colorize(flipped, vmax)
    unreached = np.nan_to_num(flipped) == 0
    cells[unreached] = UNREACHED_RGB
    size = (cols * scale, rows * scale)
    image = np.ascontiguousarray(cv2.resize(cells, size, interpolation=cv2.INTER_NEAREST))
    ui = ui_scale(*size)
    hatch(image, cv2.resize(unreached.view(np.uint8), size, interpolation=cv2.INTER_NEAREST).view(bool),
          period=round(8 * ui))

    x_min, y_min, _, x_max, y_max, _ = (float(v) for v in pc_range)
    px_per_m = np.array([cols * scale / (x_max - x_min), rows * scale / (y_max - y_min)])
    origin = np.array([x_min, y_max])

    def pixels(xy: np.ndarray) -> np.ndarray:
        """Float image coordinates (pixel centres at integers) of model-frame xy."""
        return (xy - origin) * np.array([1.0, -1.0]) * px_per_m - 0.5

    thin = max(1, round(ui))
    ego = pixels(np.zeros(2))
    if ring_step_m > 0:
        corner_m = float(np.max(np.hypot([x_min, x_max, x_min, x_max], [y_min, y_min, y_max, y_max])))
        for k in range(1, int(corner_m // ring_step_m) + 1):
            radius = k * ring_step_m
            axes_px = np.round(radius * px_per_m * (1 << _SHIFT)).astype(int)
            cv2.ellipse(image, tuple(int(v) for v in _fixed(ego)), tuple(int(v) for v in axes_px), 0, 0, 360,
                        (235, 235, 235), 1, cv2.LINE_AA, _SHIFT)
            label_at = pixels(np.array([radius, -radius]) / np.sqrt(2))
            put_text(image, f"{radius:g} m", (int(label_at[0]) + 2, int(label_at[1]) - 2), 0.4 * ui)
    length, width = EGO_SIZE_M  # model +y is forward for every input convention
    hull = np.array([(-width / 2, -length / 2), (width / 2, -length / 2), (width / 2, length * 0.3),
                     (0.0, length / 2), (-width / 2, length * 0.3)])
    hull_px = _fixed(pixels(hull))
    cv2.fillPoly(image, [hull_px], (255, 255, 255), cv2.LINE_AA, _SHIFT)
    cv2.polylines(image, [hull_px], True, (0, 0, 0), thin, cv2.LINE_AA, _SHIFT)
    arrow_m = 2.5 * length
    for axis in np.argsort(T_model_input[1, :2]):  # the forward (longer) arrow last, on top
        direction = T_model_input[:2, axis]
        forward = direction[1] > 0.5
        tip = pixels(direction * (arrow_m if forward else 0.6 * arrow_m))
        start, end = tuple(int(v) for v in _fixed(ego)), tuple(int(v) for v in _fixed(tip))
        cv2.arrowedLine(image, start, end, (0, 0, 0), 2 * thin + 2, cv2.LINE_AA, _SHIFT, 0.25)
        cv2.arrowedLine(image, start, end, AXIS_RGB[axis], 2 * thin, cv2.LINE_AA, _SHIFT, 0.25)
        text = "xy"[axis] + (" fwd" if forward else "")
        text_w = cv2.getTextSize(text, _FONT, 0.4 * ui, 1)[0][0] if direction[0] < -0.5 else 0
        put_text(image, text, (int(tip[0] + 4 * direction[0] * ui) - text_w, int(tip[1] - 4 * direction[1] * ui)),
                 0.4 * ui, AXIS_RGB[axis])

    if len(boxes):
        corners, tick = _footprints(boxes)
        # One open path per box: centre, front middle (the heading tick), then around the footprint back to it.
        path = np.concatenate([tick, corners[:, [0, 3, 2, 1]], tick[:, 1:]], axis=1)
        draw_outlined(image, list(_fixed(pixels(path))), labels, class_names, max(1, scale // 2))
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
    takes the colour of the feature cell it falls in; cells of weight 0 (no query reaches them) are blended
    grey and hatched; pixels cropped away by the model keep their colour.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    height, width = image_bgr.shape[:2]
    if (height, width) != transform.src_size:
        raise ValueError(f"image is {height}x{width} but the transform is for {transform.src_size}")
    cam_map = np.nan_to_num(np.asarray(cam_map))
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
    unreached = cam_map == 0
    colours[unreached] = UNREACHED_RGB
    rgb = cv2.cvtColor(np.ascontiguousarray(image_bgr), cv2.COLOR_BGR2RGB)
    layer = np.take(np.take(colours, cell_rows, axis=0), cell_cols, axis=1)  # two 1-D gathers: ~3x faster
    blended = cv2.addWeighted(rgb, 1.0 - alpha, layer, alpha, 0.0)
    unreached_px = np.take(np.take(unreached, cell_rows, axis=0), cell_cols, axis=1)
    unreached_px[~rows_ok] = False
    unreached_px[:, ~cols_ok] = False
    hatch(blended, unreached_px, period=round(8 * ui_scale(height, width)))
    blended[~rows_ok] = rgb[~rows_ok]
    blended[:, ~cols_ok] = rgb[:, ~cols_ok]
    return blended


def draw_projected_boxes(
    image: np.ndarray,
    boxes_model: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str],
    lidar2img: np.ndarray,
    transform: ImageTransform,
    near_m: float = 0.5,
) -> np.ndarray:
    """Draw [K, 9] model-frame boxes in place on the RGB camera ``image`` as outlined 3D wire frames in their
    class colour, the front face crossed (the heading), labelled "class score" at each box's top-left.

    ``lidar2img`` is the camera's 4x4 model-frame → model-input pixel projection (depth in row 2); the inverse
    of ``transform``'s resize and crop takes it to this image's pixels. Edges are cut ``near_m`` metres in front
    of the camera. Returns the [K] mask of the boxes drawn (some part in front of the camera and in the image).
    """
    boxes, labels = _checked_labels(boxes_model, labels)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(boxes):
        raise ValueError(f"got {len(boxes)} boxes but {len(scores)} scores")
    if len(boxes) == 0:
        return np.zeros(0, dtype=bool)
    height, width = image.shape[:2]
    if (height, width) != transform.src_size:
        raise ValueError(f"image is {height}x{width} but the transform is for {transform.src_size}")
    model_from_src = np.eye(4)
    model_from_src[:3, :3] = transform.pixel_matrix()
    src_from_model = np.linalg.solve(model_from_src, np.asarray(lidar2img, dtype=np.float64).reshape(4, 4))
    corners = box_corners(boxes)
    projected = np.concatenate([corners, np.ones((*corners.shape[:2], 1))], axis=2) @ src_from_model.T
    a, b = projected[:, _BOX_EDGES[:, 0], :3], projected[:, _BOX_EDGES[:, 1], :3]  # [K, E, 3] (u z, v z, z)
    za, zb = a[..., 2:3], b[..., 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        cut = a + (near_m - za) / (zb - za) * (b - a)  # where the edge crosses the near plane
    a = np.where(za < near_m, cut, a)
    b = np.where(zb < near_m, cut, b)
    seen = (za[..., 0] >= near_m) | (zb[..., 0] >= near_m)  # [K, E]
    ends = np.stack([a[..., :2] / a[..., 2:3], b[..., :2] / b[..., 2:3]], axis=2)  # [K, E, 2, 2]
    lo = np.where(seen[..., None, None], ends, np.inf).min(axis=(1, 2))  # [K, 2] extent of the seen edges
    hi = np.where(seen[..., None, None], ends, -np.inf).max(axis=(1, 2))
    visible = (hi[:, 0] >= 0) & (lo[:, 0] < width) & (hi[:, 1] >= 0) & (lo[:, 1] < height)
    ui = ui_scale(height, width)
    thickness = max(1, round(ui))
    drawn = seen & visible[:, None]  # [K, E]
    segments = _fixed(np.clip(ends[drawn], -8 * width, 8 * width))
    draw_outlined(image, list(segments), np.broadcast_to(labels[:, None], drawn.shape)[drawn], class_names, thickness)
    scale = 0.45 * ui
    for k in np.flatnonzero(visible):
        name = class_name(int(labels[k]), class_names)
        colour = class_rgb(name, int(labels[k]))
        text = f"{name} {scores[k]:.2f}"
        (text_w, text_h), base = cv2.getTextSize(text, _FONT, scale, thickness)
        x = int(np.clip(lo[k, 0], 0, max(0, width - text_w - 4)))
        y = int(np.clip(lo[k, 1], text_h + base + 4, height - 1))
        cv2.rectangle(image, (x, y - text_h - base - 4), (x + text_w + 4, y), colour, cv2.FILLED)
        cv2.putText(image, text, (x + 2, y - base - 2), _FONT, scale, contrast_rgb(colour), thickness, cv2.LINE_AA)
    return visible
