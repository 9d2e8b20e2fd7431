"""CMT's denoising (DN) queries for training: noisy copies of the ground-truth centres as extra queries.

Each of ``groups`` copies of every ground-truth box puts a query at the box centre moved by up to half the
box size per axis (uniform noise); copies moved further than ``split`` (in units of the half size, L2 over
the three axes) must predict "no object". The DN queries come before the learned ones and are kept apart
in the decoder's self-attention: the learned queries cannot see any DN query and DN groups cannot see each
other (``CmtHead.prepare_for_dn`` of the original, written anew). Only the learned queries exist at test time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class DenoisingQueries:
    """The DN queries of a batch and their targets.

    ``reference`` [B, P, 3] holds the normalised (0..1 in the point cloud range) noisy centres, zero in padded
    slots; ``attn_mask`` [P + Q, P + Q] is the self-attention mask (True = blocked). The K real DN queries
    are listed by ``batch_index`` / ``query_index`` (slot in P) with their ``labels`` (``num_classes`` =
    no object) and gravity-centre ``boxes`` [K, 9] (x, y, z_centre, dx, dy, dz, yaw, vx, vy).
    """

    reference: Tensor
    attn_mask: Tensor
    batch_index: Tensor
    query_index: Tensor
    labels: Tensor
    boxes: Tensor
    groups: int

    @property
    def num_queries(self) -> int:
        """P, the DN slots per sample (padded)."""
        return self.reference.shape[1]


def make_denoising_queries(
    gt_boxes: Sequence[Tensor],
    gt_labels: Sequence[Tensor],
    num_query: int,
    num_classes: int,
    point_cloud_range: Sequence[float],
    max_groups: int = 10,
    noise_scale: float = 1.0,
    split: float = 0.75,
    generator: torch.Generator | None = None,
) -> DenoisingQueries | None:
    """DN queries for per-sample gravity-centre boxes [M_b, 9] and labels [M_b]; None when no sample has a box.

    ``min(max_groups, num_query // max_b M_b)`` groups are made, as in the original.
    """
    counts = [len(b) for b in gt_boxes]
    most = max(counts, default=0)
    if most == 0:
        return None
    device = gt_boxes[0].device
    groups = max(1, min(max_groups, num_query // most))
    batch = len(gt_boxes)
    boxes = torch.cat(list(gt_boxes)).float()
    labels = torch.cat(list(gt_labels)).long()
    batch_of = torch.cat([torch.full((n,), b, dtype=torch.long) for b, n in enumerate(counts)]).to(device)
    index_in_sample = torch.cat([torch.arange(n) for n in counts]).to(device)

    boxes = boxes.repeat(groups, 1)
    labels = labels.repeat(groups)
    batch_of = batch_of.repeat(groups)
    group_of = torch.arange(groups, device=device).repeat_interleave(len(index_in_sample))
    query_index = group_of * most + index_in_sample.repeat(groups)

    rand = torch.rand(boxes[:, :3].shape, generator=generator, device=device) * 2.0 - 1.0
    centre = boxes[:, :3] + rand * boxes[:, 3:6] / 2.0 * noise_scale
    lo = centre.new_tensor(point_cloud_range[:3])
    hi = centre.new_tensor(point_cloud_range[3:])
    centre = ((centre - lo) / (hi - lo)).clamp(0.0, 1.0)
    labels = torch.where(rand.norm(dim=1) > split, num_classes, labels)

    pad = most * groups
    reference = centre.new_zeros(batch, pad, 3)
    reference[batch_of, query_index] = centre
    return DenoisingQueries(reference=reference, attn_mask=denoising_attention_mask(groups, most, num_query, device),
                            batch_index=batch_of, query_index=query_index, labels=labels, boxes=boxes, groups=groups)


def denoising_attention_mask(groups: int, group_size: int, num_query: int, device: torch.device | str = "cpu") -> Tensor:
    """[P + Q, P + Q] bool self-attention mask (True = blocked) for ``groups`` DN groups of ``group_size`` slots
    followed by ``num_query`` learned queries: learned queries see no DN slot, a DN group sees only itself and
    the learned queries."""
    pad = groups * group_size
    total = pad + num_query
    group = torch.arange(total, device=device) // group_size
    is_dn = torch.arange(total, device=device) < pad
    other_dn_group = is_dn[:, None] & is_dn[None, :] & (group[:, None] != group[None, :])
    learned_sees_dn = ~is_dn[:, None] & is_dn[None, :]
    return other_dn_group | learned_sees_dn


def dn_class_normaliser(num_targets: int, split: float) -> float:
    """The original's DN classification average factor ``K · π/6 · split³`` (at least 1)."""
    return max(num_targets * math.pi / 6.0 * split ** 3, 1.0)
