"""CMT's training losses, written anew from the original's semantics (``cmt_head.py``, ``HungarianAssigner3D``).

For every decoder layer and sample the learned queries are matched one-to-one to the ground truth by the
Hungarian algorithm on ``cost = 2·FocalCost(class) + 0.25·L1(box code[:8] · code weights)``; matched
queries learn their box and class, the others "no object". The class loss is the sigmoid focal loss
(α 0.25, γ 2, weight 2) normalised by ``positives + 0.1·negatives``; the box loss is the L1 between the
predicted and the encoded target box code weighted by the code weights (weight 0.25, normalised by the
positives). Denoising queries (:mod:`.denoising`) add the same two losses against their own boxes. Every
layer's losses are summed (CMT's auxiliary losses).

The box code of 10 values is ``(x, y, log dx, log dy, z_centre, log dz, sin yaw, cos yaw, vx, vy)``, which is
exactly what the head's branches predict (``center, height, dim, rot, vel`` concatenated).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .denoising import DenoisingQueries, dn_class_normaliser
from .task_head import REGRESSION_BRANCHES

#: Per-slot weights of the box code (the nuScenes configs': velocity counts 0.2).
CODE_WEIGHTS = (2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2)


@dataclass(frozen=True)
class LossConfig:
    """Weights of CMT's losses and matching costs (the r50 nuScenes config's values by default)."""

    cls_weight: float = 2.0
    bbox_weight: float = 0.25
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    match_cls_weight: float = 2.0
    match_bbox_weight: float = 0.25
    #: Weight of a negative query in the class-loss normaliser.
    negative_weight: float = 0.1
    dn_weight: float = 1.0
    #: Noise beyond which a DN query must predict "no object" (see :mod:`.denoising`).
    dn_split: float = 0.75
    code_weights: tuple[float, ...] = CODE_WEIGHTS


def gravity_centre_boxes(boxes: Tensor) -> Tensor:
    """[M, 9] boxes with the z of the bottom centre (the model's output) → with the z of the geometric centre."""
    return torch.cat((boxes[:, :2], boxes[:, 2:3] + boxes[:, 5:6] / 2.0, boxes[:, 3:]), dim=1)


def encode_boxes(boxes: Tensor) -> Tensor:
    """Gravity-centre boxes [M, 9] → box code [M, 10] (``normalize_bbox`` of the original)."""
    x, y, z, dx, dy, dz, yaw, vx, vy = boxes.unbind(-1)
    return torch.stack((x, y, dx.log(), dy.log(), z, dz.log(), yaw.sin(), yaw.cos(), vx, vy), dim=-1)


def prediction_code(predictions: dict[str, Tensor]) -> Tensor:
    """Head predictions {branch: [..., c]} → predicted box code [..., 10] in the slot order of :func:`encode_boxes`."""
    return torch.cat([predictions[name] for name, _ in REGRESSION_BRANCHES], dim=-1)


def sigmoid_focal_loss(logits: Tensor, labels: Tensor, alpha: float, gamma: float) -> Tensor:
    """Summed sigmoid focal loss of logits [N, C] against labels [N] (``C`` = no object, an all-zero target)."""
    num_classes = logits.shape[-1]
    target = F.one_hot(labels, num_classes + 1)[:, :num_classes].to(logits.dtype)
    prob = logits.sigmoid()
    p_t = prob * target + (1 - prob) * (1 - target)
    weight = (alpha * target + (1 - alpha) * (1 - target)) * (1 - p_t).pow(gamma)
    return (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight).sum()


def focal_cost(logits: Tensor, labels: Tensor, alpha: float, gamma: float, eps: float = 1e-12) -> Tensor:
    """Focal classification cost [Q, M] of assigning each query (logits [Q, C]) to each ground truth (labels [M])."""
    prob = logits.sigmoid()
    neg = -(1 - prob + eps).log() * (1 - alpha) * prob.pow(gamma)
    pos = -(prob + eps).log() * alpha * (1 - prob).pow(gamma)
    return pos[:, labels] - neg[:, labels]


def hungarian_match(code: Tensor, logits: Tensor, gt_code: Tensor, gt_labels: Tensor,
                    cfg: LossConfig) -> tuple[Tensor, Tensor]:
    """One-to-one assignment (query indices, ground-truth indices) minimising CMT's matching cost.

    ``code`` [Q, 10] and ``logits`` [Q, C] are one sample's predictions, ``gt_code`` [M, 10] its encoded targets.
    The L1 cost uses the first 8 code slots (no velocity), scaled by the code weights.
    """
    with torch.no_grad():
        weights = code.new_tensor(cfg.code_weights[:8])
        reg = torch.cdist(code[:, :8].float() * weights, gt_code[:, :8].float() * weights, p=1)
        cls = focal_cost(logits.float(), gt_labels, cfg.focal_alpha, cfg.focal_gamma)
        cost = (cfg.match_cls_weight * cls + cfg.match_bbox_weight * reg).cpu().numpy()
    rows, cols = linear_sum_assignment(np.nan_to_num(cost, nan=1e6, posinf=1e6, neginf=-1e6))
    return torch.as_tensor(rows, device=code.device), torch.as_tensor(cols, device=code.device)


class CmtLoss:
    """All of CMT's training losses for one batch: matching, class and box losses per layer, DN losses."""

    def __init__(self, num_classes: int, cfg: LossConfig | None = None) -> None:
        self.num_classes = num_classes
        self.cfg = cfg or LossConfig()

    def __call__(self, predictions: dict[str, Tensor], gt_boxes: Sequence[Tensor], gt_labels: Sequence[Tensor],
                 denoising: DenoisingQueries | None = None) -> dict[str, Tensor]:
        """Losses of ``predictions`` {branch: [L, B, P + Q, c]} (from ``forward_train``, centre/height in metres)
        against per-sample gravity-centre boxes [M_b, 9] and labels [M_b].

        Returns ``{"loss_cls", "loss_bbox", "dn_loss_cls", "dn_loss_bbox"}`` of the last layer, ``"d{i}.*"`` of
        the earlier layers, and ``"loss"``, their sum (what is minimised).
        """
        code = prediction_code(predictions).float()
        logits = predictions["cls_logits"].float()
        num_dn = 0 if denoising is None else denoising.num_queries
        targets = [encode_boxes(b.float()) for b in gt_boxes]
        layers = code.shape[0]
        losses: dict[str, Tensor] = {}
        for layer in range(layers):
            prefix = "" if layer == layers - 1 else f"d{layer}."
            cls, box = self._matched_losses(code[layer, :, num_dn:], logits[layer, :, num_dn:], targets, gt_labels)
            losses[prefix + "loss_cls"], losses[prefix + "loss_bbox"] = cls, box
            if denoising is not None:
                dn_cls, dn_box = self._denoising_losses(code[layer], logits[layer], denoising)
                losses[prefix + "dn_loss_cls"], losses[prefix + "dn_loss_bbox"] = dn_cls, dn_box
        losses["loss"] = torch.stack(list(losses.values())).sum()
        return losses

    def _matched_losses(self, code: Tensor, logits: Tensor, targets: Sequence[Tensor],
                        gt_labels: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Class and box loss of the learned queries code [B, Q, 10] / logits [B, Q, C] after Hungarian matching."""
        cfg = self.cfg
        batch, queries = logits.shape[:2]
        labels = torch.full((batch, queries), self.num_classes, dtype=torch.long, device=logits.device)
        matched_code, matched_target = [], []
        for b in range(batch):
            if len(targets[b]) == 0:
                continue
            rows, cols = hungarian_match(code[b], logits[b], targets[b], gt_labels[b], cfg)
            labels[b, rows] = gt_labels[b][cols].long()
            matched_code.append(code[b, rows])
            matched_target.append(targets[b][cols])
        positives = sum(len(c) for c in matched_code)
        normaliser = max(positives + cfg.negative_weight * (batch * queries - positives), 1.0)
        loss_cls = sigmoid_focal_loss(logits.flatten(0, 1), labels.flatten(), cfg.focal_alpha, cfg.focal_gamma)
        loss_cls = cfg.cls_weight * loss_cls / normaliser
        if positives == 0:
            return loss_cls, code.sum() * 0.0
        return loss_cls, self._box_loss(torch.cat(matched_code), torch.cat(matched_target), positives)

    def _denoising_losses(self, code: Tensor, logits: Tensor, dn: DenoisingQueries) -> tuple[Tensor, Tensor]:
        """Class and box loss of the DN queries (slots ``dn.query_index`` of code [B, P + Q, 10])."""
        cfg = self.cfg
        pred_code = code[dn.batch_index, dn.query_index]
        pred_logits = logits[dn.batch_index, dn.query_index]
        count = len(dn.labels)
        loss_cls = sigmoid_focal_loss(pred_logits, dn.labels, cfg.focal_alpha, cfg.focal_gamma)
        loss_cls = cfg.cls_weight * loss_cls / dn_class_normaliser(count, cfg.dn_split)
        loss_box = self._box_loss(pred_code, encode_boxes(dn.boxes), max(count, 1))
        return cfg.dn_weight * loss_cls, cfg.dn_weight * loss_box

    def _box_loss(self, pred_code: Tensor, target_code: Tensor, normaliser: float) -> Tensor:
        """Code-weighted L1 between predicted and target codes [K, 10], summed and divided by ``normaliser``."""
        weights = pred_code.new_tensor(self.cfg.code_weights)
        finite = torch.isfinite(target_code).all(dim=-1)
        l1 = ((pred_code[finite] - target_code[finite]).abs() * weights).sum()
        return self.cfg.bbox_weight * l1 / normaliser
