"""Box decoding: slot semantics (docs/golden.md §D), top-k, label/query split, post_center_range."""

from __future__ import annotations

import dataclasses

import torch

from aqr_ros.model.config import HeadConfig
from aqr_ros.model.decode import decode_boxes, slots_to_boxes

GOLDEN_SLOTS = [10.0, -5.0, 0.5, 1.2, -0.8, 0.4, 0.6, 0.8, 1.0, -0.5]
GOLDEN_BOX = [10.0, -5.0, -1.5459123, 1.6487213, 3.3201169, 1.4918247, 0.6435011, 1.0, -0.5]


def _predictions(slots: torch.Tensor, logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Head prediction dict from slots [B, Q, 10] and class logits [B, Q, C]."""
    return {"center": slots[..., 0:2], "height": slots[..., 2:3], "dim": slots[..., 3:6], "rot": slots[..., 6:8],
            "vel": slots[..., 8:10], "cls_logits": logits}


def _cfg(max_num: int) -> HeadConfig:
    return dataclasses.replace(HeadConfig(), max_num=max_num)


def test_slots_to_boxes_semantics() -> None:
    box = slots_to_boxes(torch.tensor(GOLDEN_SLOTS))
    # z is still the centre here: -0.8; dx comes from the "height" slot s2, z from dim[1] = s4
    expected_centre = list(GOLDEN_BOX)
    expected_centre[2] = -0.8
    torch.testing.assert_close(box, torch.tensor(expected_centre), rtol=0, atol=1e-6)


def test_golden_worked_example() -> None:
    slots = torch.tensor(GOLDEN_SLOTS)[None, None]
    logits = torch.full((1, 1, 10), -3.0)
    logits[0, 0, 4] = 2.0
    decoded = decode_boxes(_predictions(slots, logits), _cfg(1))
    assert len(decoded) == 1
    det = decoded[0]
    torch.testing.assert_close(det.boxes, torch.tensor([GOLDEN_BOX]), rtol=0, atol=1e-6)
    torch.testing.assert_close(det.scores, torch.sigmoid(torch.tensor([2.0])))
    assert det.labels.tolist() == [4]
    assert det.query_index.tolist() == [0]


def test_topk_order_and_label_query_split() -> None:
    num_query, num_classes = 5, 3
    slots = torch.randn(2, num_query, 10)
    logits = torch.full((2, num_query, num_classes), -8.0)
    # sample 0: best (query 3, class 1), then (query 0, class 2), then (query 3, class 0)
    logits[0, 3, 1], logits[0, 0, 2], logits[0, 3, 0] = 4.0, 3.0, 2.0
    # sample 1: best (query 4, class 0), then (query 1, class 1)
    logits[1, 4, 0], logits[1, 1, 1], logits[1, 2, 2] = 5.0, 1.0, 0.5
    slots[..., :2] = slots[..., :2].clamp(-50, 50)
    slots[..., 4] = slots[..., 4].clamp(-5, 5)
    decoded = decode_boxes(_predictions(slots, logits), _cfg(3))
    first, second = decoded
    assert first.query_index.tolist() == [3, 0, 3]
    assert first.labels.tolist() == [1, 2, 0]
    assert second.query_index.tolist() == [4, 1, 2]
    assert second.labels.tolist() == [0, 1, 2]
    assert torch.all(first.scores[:-1] >= first.scores[1:])
    torch.testing.assert_close(first.scores, torch.sigmoid(torch.tensor([4.0, 3.0, 2.0])))
    expected = slots_to_boxes(slots[0, [3, 0, 3]])
    expected[:, 2] -= expected[:, 5] / 2
    torch.testing.assert_close(first.boxes, expected)


def test_post_center_range_is_inclusive_and_uses_the_centre_z() -> None:
    r = HeadConfig().post_center_range
    centres = [
        (r[3], 0.0, 0.0, True),        # x exactly at the max: kept
        (r[0], r[1], r[2], True),      # every axis exactly at the min: kept
        (0.0, r[4], r[5], True),       # y and z exactly at the max: kept
        (61.25, 0.0, 0.0, False),      # x just outside
        (0.0, -61.25, 0.0, False),     # y just outside
        (0.0, 0.0, 10.5, False),       # z centre outside although z_bottom (10.5 - 20/2) is inside
        (0.0, 0.0, -10.01, False),     # z centre just below
    ]
    num_query = len(centres)
    slots = torch.zeros(1, num_query, 10)
    slots[0, :, 0] = torch.tensor([c[0] for c in centres])
    slots[0, :, 1] = torch.tensor([c[1] for c in centres])
    slots[0, :, 4] = torch.tensor([c[2] for c in centres])
    slots[0, :, 5] = torch.log(torch.tensor(20.0))  # dz = 20
    logits = torch.full((1, num_query, 10), -9.0)
    logits[0, :, 0] = torch.linspace(5.0, 1.0, num_query)  # query q ranks q-th
    det = decode_boxes(_predictions(slots, logits), _cfg(num_query))[0]
    kept = [q for q, c in enumerate(centres) if c[3]]
    assert det.query_index.tolist() == kept
    torch.testing.assert_close(det.boxes[:, 2], slots[0, kept, 4] - 10.0)
