"""Self-explaining weight-map pictures: a map panel of :mod:`aqr_ros.pipeline.weight_maps` framed by a title,
a colour bar with its scale (0 to the AQR clamp) and a legend of what is drawn.

The node's ``~/debug/weight_map/*`` images are these pictures, so a user sees which map, which frame,
what a colour means and what the grey hatching, the ego marker and the boxes are without reading the code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from aqr_ros.pipeline.calibration import ImageTransform, axes_to_model
from aqr_ros.pipeline.weight_maps import (AXIS_RGB, UNREACHED_RGB, bev_image, camera_overlay, class_name, class_rgb,
                                          colorize, draw_projected_boxes, hatch, put_text, ui_scale)

#: Legend text of the greyed, hatched cells.
UNREACHED_TEXT = "no query reaches here (weight 0)"
#: Background of the title bar, colour-bar panel and legend strip.
PANEL_RGB = (30, 30, 30)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class LegendEntry:
    """One legend item: a colour swatch (grey and hatched for unreached cells) and its text."""

    text: str
    rgb: tuple[int, int, int]
    hatched: bool = False


def picture_title(what: str, stamp_s: float | None = None) -> str:
    """Title naming the map and, when given, the frame stamp in seconds."""
    return what if stamp_s is None else f"{what}   t = {stamp_s:.3f} s"


def class_legend(labels: np.ndarray, class_names: Sequence[str]) -> list[LegendEntry]:
    """One entry per class present in ``labels``, in label order, in the class colour."""
    return [LegendEntry(class_name(label, class_names), class_rgb(class_name(label, class_names), int(label)))
            for label in np.unique(np.asarray(labels, dtype=np.int64))]


def bar_ticks(vmax: float) -> np.ndarray:
    """Tick values of a colour bar over [0, vmax]: 0, multiples of a round step (1, 2, 2.5 or 5 x 10^k), vmax."""
    if not vmax > 0:
        raise ValueError(f"vmax must be positive, got {vmax}")
    magnitude = 10.0 ** math.floor(math.log10(vmax / 5))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if vmax / (m * magnitude) <= 5)
    inner = np.arange(0.0, vmax - 0.4 * step, step)
    return np.append(inner, vmax)


@lru_cache(maxsize=16)
def _gradient(rows: int, vmax: float) -> np.ndarray:
    """Read-only [rows, 1, 3] colours of ``vmax`` (first row) down to 0 (last row), the same every frame."""
    colours = colorize(np.linspace(vmax, 0.0, rows)[:, None], vmax)
    colours.flags.writeable = False
    return colours


def draw_colour_bar(region: np.ndarray, vmax: float, ui: float = 1.0, saturates: bool = False) -> None:
    """Draw into ``region`` (a view, at least 76 * ``ui`` px wide) a vertical colour bar from ``vmax`` (top) to 0
    (bottom) with labelled ticks. ``saturates``: the map is not clamped, so the top label reads ">=vmax"."""
    height = region.shape[0]
    margin = round(12 * ui)
    top, bottom = margin, height - margin - 1
    if bottom - top < 2:
        raise ValueError(f"a colour bar needs a panel taller than {2 * margin + 2} px, got {height}")
    left, right = round(6 * ui), round(22 * ui)
    region[top:bottom + 1, left:right] = _gradient(bottom - top + 1, vmax)
    scale = 0.4 * ui
    for value in bar_ticks(vmax):
        row = round(bottom - value / vmax * (bottom - top))
        cv2.line(region, (right, row), (right + round(4 * ui), row), (255, 255, 255), max(1, round(ui)))
        text = f">={value:.3g}" if saturates and value == vmax else f"{value:.3g}"
        text_h = cv2.getTextSize(text, _FONT, scale, 1)[0][1]
        put_text(region, text, (right + round(7 * ui), int(np.clip(row + text_h // 2, text_h, height - 2))), scale,
                 outline=False)


def _shade(region: np.ndarray) -> None:
    """Darken ``region`` in place towards the panel colour, so text drawn over an image stays readable."""
    region[:] = cv2.convertScaleAbs(region, alpha=0.3, beta=0.7 * PANEL_RGB[0])


def framed(panel: np.ndarray, title: str, vmax: float, legend: Sequence[LegendEntry], saturates: bool = False,
           inset: bool = False, square: bool = False) -> np.ndarray:
    """``panel`` with a title bar above, its colour bar (0..``vmax``, see :func:`draw_colour_bar`) on the right
    and ``legend`` below. ``inset`` draws them on shaded bands inside ``panel`` (changed in place) instead of
    around it, so a camera picture keeps the camera's size and pixel grid; ``square`` pads the framed picture
    with the panel colour to a square (the BEV picture stays square, as its consumers expect)."""
    rows, cols = panel.shape[:2]
    ui = ui_scale(rows, cols)
    bar_w = round(76 * ui)
    width = cols if inset else cols + bar_w
    title_h, line_h, swatch, gap = round(26 * ui), round(20 * ui), round(12 * ui), round(6 * ui)
    scale = 0.42 * ui
    placed: list[tuple[int, int, LegendEntry]] = []  # (line, x) of each entry, wrapped to the picture width
    line, x = 0, gap
    for entry in legend:
        entry_w = swatch + gap + cv2.getTextSize(entry.text, _FONT, scale, 1)[0][0] + 3 * gap
        if x > gap and x + entry_w > width:
            line, x = line + 1, gap
        placed.append((line, x, entry))
        x += entry_w
    legend_h = (line + 1) * line_h + gap if legend else 0
    if inset:
        out, legend_y = panel, rows - legend_h
        if legend_y - title_h < 4 * line_h or cols < 2 * bar_w:
            raise ValueError(f"a {cols}x{rows} picture is too small for its title, legend and colour bar")
        for band in (out[:title_h], out[legend_y:], out[title_h:legend_y, cols - bar_w:]):
            _shade(band)
        bar = out[title_h:legend_y, cols - bar_w:]
    else:
        height = title_h + rows + legend_h
        if square:
            height = width = max(height, width)
        out = np.empty((height, width, 3), dtype=np.uint8)  # filled part by part
        out[:title_h] = PANEL_RGB
        out[title_h + rows:] = PANEL_RGB
        out[title_h:title_h + rows, :cols] = panel
        bar, legend_y = out[title_h:title_h + rows, cols:], title_h + rows
        bar[:] = PANEL_RGB
    draw_colour_bar(bar, vmax, ui, saturates)
    title_scale = 0.55 * ui
    title_w = cv2.getTextSize(title, _FONT, title_scale, 1)[0][0]
    title_scale *= min(1.0, (out.shape[1] - 2 * gap) / max(title_w, 1))  # shrunk to fit a narrow picture
    put_text(out, title, (gap, title_h - round(8 * ui)), title_scale, outline=False)
    for line, x, entry in placed:
        y = legend_y + gap // 2 + line * line_h
        box = out[y + (line_h - swatch) // 2:y + (line_h + swatch) // 2, x:x + swatch]
        box[:] = UNREACHED_RGB if entry.hatched else entry.rgb
        if entry.hatched:
            hatch(box, np.ones(box.shape[:2], dtype=bool), period=max(4, swatch // 2))
        put_text(out, entry.text, (x + swatch + gap, y + line_h // 2 + round(5 * ui)), scale, outline=False)
    return out


def bev_weight_picture(
    bev_map: np.ndarray,
    boxes_model: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    pc_range: Sequence[float],
    convention: str,
    clamp: float,
    stamp_s: float | None = None,
    scale: int = 4,
    ring_step_m: float = 10.0,
) -> np.ndarray:
    """Framed BEV picture: :func:`bev_image` (colours 0..``clamp``) titled "BEV LiDAR weight" with the stamp,
    its colour bar and a legend of unreached cells, the ego vehicle and its LiDAR axes, rings and classes.

    ``scale`` pixels per cell, more for small maps so that the map spans at least 512 pixels."""
    scale = max(scale, math.ceil(512 / max(np.shape(bev_map))))
    panel = bev_image(bev_map, boxes_model, labels, pc_range, convention, scale, clamp, class_names, ring_step_m)
    forward = "xy"[int(np.argmax(axes_to_model(convention)[1, :2]))]
    legend = [LegendEntry(UNREACHED_TEXT, UNREACHED_RGB, hatched=True),
              LegendEntry(f"ego, forward up = LiDAR +{forward} ({convention})", (255, 255, 255)),
              LegendEntry("LiDAR x", AXIS_RGB[0]), LegendEntry("LiDAR y", AXIS_RGB[1])]
    if ring_step_m > 0:
        legend.append(LegendEntry(f"rings every {ring_step_m:g} m", (235, 235, 235)))
    return framed(panel, picture_title("BEV LiDAR weight", stamp_s), clamp,
                  legend + class_legend(labels, class_names), square=True)


def camera_weight_picture(
    image_bgr: np.ndarray,
    cam_map: np.ndarray,
    transform: ImageTransform,
    clamp: float,
    alpha: float,
    title: str,
    stamp_s: float | None = None,
    saturates: bool = False,
    boxes_model: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    scores: np.ndarray | None = None,
    class_names: Sequence[str] = (),
    lidar2img: np.ndarray | None = None,
) -> np.ndarray:
    """Camera picture, the camera's size: :func:`camera_overlay` (colours 0..``clamp``), the boxes projected with
    the camera's ``lidar2img`` when given (labels and scores required then), and inset the title with the stamp,
    the colour bar (">=clamp" on top when ``saturates``) and a legend of unreached cells and the classes in view."""
    picture = camera_overlay(image_bgr, cam_map, transform, clamp, alpha)
    legend = [LegendEntry(UNREACHED_TEXT, UNREACHED_RGB, hatched=True)]
    if boxes_model is not None and lidar2img is not None:
        if labels is None or scores is None:
            raise ValueError("projecting boxes onto a camera picture needs their labels and scores")
        shown = draw_projected_boxes(picture, boxes_model, labels, scores, class_names, lidar2img, transform)
        legend += class_legend(np.asarray(labels)[shown], class_names)
    elif boxes_model is not None or lidar2img is not None:
        raise ValueError("boxes_model and lidar2img go together: both are needed to project boxes")
    return framed(picture, picture_title(title, stamp_s), clamp, legend, saturates, inset=True)
