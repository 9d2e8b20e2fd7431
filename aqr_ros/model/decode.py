"""NMS-free box decoding of the last decoder layer (docs/model.md §5.9): top-k over queries × classes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor

from .config import HeadConfig
from .task_head import REGRESSION_BRANCHES


@dataclass
class DecodedBoxes:
    """Detections of one sample: boxes [K, 9] (x, y, z_bottom, dx, dy, dz, yaw, vx, vy), scores [K],
    labels [K] (class index), query_index [K] (decoder query that produced the box)."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    query_index: Tensor


def slots_to_boxes(slots: Tensor) -> Tensor:
    """``cat(center, height, dim, rot, vel)`` slots ``[..., 10]`` → boxes ``[..., 9]`` with a z *centre*.

    x = s0, y = s1, dx = e^s2, dy = e^s3, z = s4, dz = e^s5, yaw = atan2(s6, s7), vx = s8, vy = s9.
    """
    yaw = torch.atan2(slots[..., 6:7], slots[..., 7:8])
    return torch.cat((slots[..., 0:2], slots[..., 4:5], slots[..., 2:4].exp(), slots[..., 5:6].exp(), yaw,
                      slots[..., 8:10]), dim=-1)


def decode_boxes(predictions: Mapping[str, Tensor], cfg: HeadConfig) -> list[DecodedBoxes]:
    """Decode head predictions (dict of [B, Q, c], centre/height already in metres) per sample.

    Top ``cfg.max_num`` sigmoid scores over Q × classes (label = idx % C, query = idx // C), no NMS, no
    threshold; boxes whose (x, y, z_centre) lie outside ``post_center_range`` (ends inclusive) are dropped.
    """
    slots = torch.cat([predictions[name] for name, _ in REGRESSION_BRANCHES], dim=-1).float()
    logits = predictions["cls_logits"].float()
    num_classes = logits.shape[-1]
    scores, index = logits.sigmoid().flatten(1).topk(cfg.max_num, dim=1)
    labels = index % num_classes
    query = torch.div(index, num_classes, rounding_mode="floor")
    boxes = slots_to_boxes(torch.gather(slots, 1, query[..., None].expand(-1, -1, slots.shape[-1])))
    keep = _inside(boxes[..., :3], cfg.post_center_range)
    boxes = torch.cat((boxes[..., :2], boxes[..., 2:3] - boxes[..., 5:6] * 0.5, boxes[..., 3:]), dim=-1)
    return [DecodedBoxes(boxes=boxes[i][keep[i]], scores=scores[i][keep[i]], labels=labels[i][keep[i]],
                         query_index=query[i][keep[i]]) for i in range(boxes.shape[0])]


def _inside(centres: Tensor, limits: Sequence[float]) -> Tensor:
    """[..., 3] points within [min, max] per axis, both ends inclusive → [...] bool."""
    lo = centres.new_tensor(limits[:3])
    hi = centres.new_tensor(limits[3:])
    return ((centres >= lo) & (centres <= hi)).all(dim=-1)
