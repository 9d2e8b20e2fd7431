"""nuScenes-style 3-D detection metrics (mAP and TP errors) in pure numpy: no torch, no ROS, no nuscenes-devkit.

The semantics follow the nuScenes detection benchmark (devkit ``nuscenes/eval/detection``: ``algo.py``
``accumulate``/``calc_ap``/``calc_tp``, ``common/utils.py``, ``common/loaders.py`` ``filter_eval_boxes`` and the
``detection_cvpr_2019`` configuration), re-implemented here for boxes in a sensor frame.

Boxes are float arrays ``[M, 9]``: ``x, y, z_bottom, dx, dy, dz, yaw, vx, vy``: the bottom-centre in metres,
``dx`` the length along the heading, ``dy`` the width, ``dz`` the height, ``yaw`` in radians counter-clockwise from
+x, and the BEV velocity in m/s. The frame's origin is the ego sensor: a box's distance to the ego is
``hypot(x, y)``. Class names are nuScenes detection names (:data:`CLASS_NAMES`).

API
---
* :func:`points_in_boxes` ``(xyz [N, 3], boxes [M, 9]) -> [M] int64``: points inside each rotated box
  (bounds inclusive, z from ``z_bottom`` to ``z_bottom + dz``), e.g. to fill :attr:`FrameEval.gt_num_points`.
* :class:`FrameEval` one frame (nuScenes "sample"): GT boxes/names/point counts, predicted boxes/names/scores.
* :class:`EvalConfig` the evaluation settings; the defaults are nuScenes' ``detection_cvpr_2019``.
* :func:`evaluate` ``(frames, classes=None, config=EvalConfig()) -> DetectionMetrics``.
* :class:`DetectionMetrics` per-class :class:`ClassMetrics` and the means; ``table()`` for a readable table,
  ``to_dict()`` for JSON (nan becomes ``None``).

Semantics (as in nuScenes unless said otherwise)
-------------------------------------------------
* Predictions: at most ``max_boxes_per_frame`` (500) per frame over all classes, the highest scores kept (ties:
  the earlier box). nuScenes rejects a submission with more; here the extra boxes are dropped.
* Filters, per class: GT boxes and predictions with a BEV distance to the ego ``>= class_range[class]`` (50 m
  for vehicles, 40 m for pedestrian/motorcycle/bicycle, 30 m for traffic_cone/barrier) are removed, and GT boxes
  whose ``gt_num_points`` is 0 (nuScenes: no LiDAR or radar point; ``None`` means unknown and keeps all). A
  removed GT box is not a miss; a prediction on it is a false positive. There is no bike-rack filter.
* Matching, per class and distance threshold (0.5, 1, 2, 4 m): predictions of all frames in one list, in
  descending score order (equal scores: the later box in frame order first, as the devkit's sort); each takes the
  nearest (BEV centre distance) not yet matched GT box of its frame, a match if the distance is ``< threshold``.
* AP: precision on 101 recall points ``0, 0.01, ..., 1`` (``np.interp`` of precision over recall, 0 beyond the
  highest recall reached); AP = mean over the recall points above ``min_recall`` of
  ``max(precision - min_precision, 0) / (1 - min_precision)``. AP is 0 without any match.
* TP errors, from the matches at ``dist_th_tp`` (2 m): ATE BEV centre distance; ASE ``1 - IoU`` of the two boxes
  aligned in centre and yaw (sizes only); AOE smallest yaw difference, period 2 pi (pi for barrier), nan for
  traffic_cone; AVE BEV velocity L2 (a nan velocity is skipped), nan for traffic_cone and barrier. Each error is a
  nan-aware cumulative mean over the matches in score order, interpolated onto the recall points through the
  confidences, and averaged from the recall point after ``min_recall`` to the highest recall reached; 1.0 when
  that range is empty (no recall above ``min_recall``). No attribute error (AAE) and hence no NDS.
* **Absent classes (differs from nuScenes)**: a class with no GT box left after the filters in all the frames is
  reported as absent (AP and errors nan, its prediction count still shown) and left out of every mean. nuScenes
  scores all ten classes, an absent one as AP 0 and TP errors 1, which would only measure the rig's class mix.
  Predictions of an absent class are thus never penalised.
* Means over the present classes: mAP is the mean of the per-class AP (itself the mean over the thresholds);
  mATE/mASE/mAOE/mAVE are nan-aware means (nan only if no present class defines the error).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: nuScenes detection class names, in the detector's label order (the devkit's set, in another order).
CLASS_NAMES: tuple[str, ...] = ("car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle",
                                "bicycle", "pedestrian", "traffic_cone")
#: Evaluation range per class (BEV distance to the ego, metres), nuScenes ``detection_cvpr_2019``.
DEFAULT_CLASS_RANGE: Mapping[str, float] = {
    "car": 50.0, "truck": 50.0, "bus": 50.0, "trailer": 50.0, "construction_vehicle": 50.0,
    "pedestrian": 40.0, "motorcycle": 40.0, "bicycle": 40.0, "traffic_cone": 30.0, "barrier": 30.0}
#: True-positive error names, in table order.
TP_ERRORS: tuple[str, ...] = ("ate", "ase", "aoe", "ave")
#: Number of recall points of the interpolated precision/recall curve (nuScenes ``DetectionMetricData.nelem``).
N_RECALL_POINTS = 101
# Errors that are undefined for a class (the devkit sets them to nan whatever the matches).
_UNDEFINED_ERRORS: Mapping[str, frozenset[str]] = {"traffic_cone": frozenset({"aoe", "ave"}),
                                                     "barrier": frozenset({"ave"})}
# Yaw period per class for AOE (a barrier's heading is only known up to 180 degrees).
_YAW_PERIOD: Mapping[str, float] = {"barrier": math.pi}
# Points x boxes evaluated at once by points_in_boxes (bounds the temporary arrays to a few tens of MB).
_POINTS_IN_BOXES_BLOCK = 1 << 21


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation settings; the defaults are nuScenes' ``detection_cvpr_2019`` (centre-distance matching)."""

    #: Evaluation range per class (BEV distance to the ego, metres; a box is kept if its distance is below).
    class_range: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_CLASS_RANGE))
    #: Matching thresholds on the BEV centre distance (metres); AP is computed at each.
    dist_ths: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    #: The threshold whose matches give the TP errors; one of ``dist_ths``.
    dist_th_tp: float = 2.0
    min_recall: float = 0.1
    min_precision: float = 0.1
    #: Predictions kept per frame (all classes together), by descending score.
    max_boxes_per_frame: int = 500

    def __post_init__(self) -> None:
        object.__setattr__(self, "dist_ths", tuple(float(t) for t in self.dist_ths))
        if not self.dist_ths or any(not t > 0 for t in self.dist_ths):
            raise ValueError(f"dist_ths must be positive and not empty, got {self.dist_ths}")
        if self.dist_th_tp not in self.dist_ths:
            raise ValueError(f"dist_th_tp {self.dist_th_tp} is not one of dist_ths {self.dist_ths}")
        if not 0.0 <= self.min_recall <= 1.0:
            raise ValueError(f"min_recall must be in [0, 1], got {self.min_recall}")
        if not 0.0 <= self.min_precision < 1.0:
            raise ValueError(f"min_precision must be in [0, 1), got {self.min_precision}")
        if self.max_boxes_per_frame < 1:
            raise ValueError(f"max_boxes_per_frame must be >= 1, got {self.max_boxes_per_frame}")

    def to_dict(self) -> dict[str, Any]:
        return {"class_range": {k: float(v) for k, v in self.class_range.items()}, "dist_ths": list(self.dist_ths),
                "dist_th_tp": self.dist_th_tp, "min_recall": self.min_recall, "min_precision": self.min_precision,
                "max_boxes_per_frame": self.max_boxes_per_frame}


def _as_boxes(boxes: Any, what: str) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 9))
    if arr.ndim != 2 or arr.shape[1] != 9:
        raise ValueError(f"{what} must be [M, 9] (x, y, z_bottom, dx, dy, dz, yaw, vx, vy), got {arr.shape}")
    if not np.isfinite(arr[:, :7]).all():
        raise ValueError(f"{what}: position, size and yaw must be finite (only the velocity may be nan)")
    if (arr[:, 3:6] <= 0).any():
        raise ValueError(f"{what}: sizes dx, dy, dz must be > 0")
    return arr


def _as_names(names: Sequence[str], count: int, what: str) -> np.ndarray:
    arr = np.asarray(list(names), dtype=str) if len(names) else np.zeros(0, dtype=str)
    if arr.shape != (count,):
        raise ValueError(f"{what}: expected {count} names, got {arr.shape}")
    return arr


@dataclass
class FrameEval:
    """One evaluated frame (a nuScenes sample): ground truth and predictions in the same sensor frame.

    Arrays are converted on construction: boxes to float64 ``[M, 9]`` (an empty input gives ``[0, 9]``), names to
    numpy string arrays. ``gt_num_points`` (e.g. from :func:`points_in_boxes`) is ``[G]`` or ``None`` (unknown:
    no GT box is dropped for lack of points).
    """

    gt_boxes: np.ndarray
    gt_names: Sequence[str]
    gt_num_points: np.ndarray | None
    pred_boxes: np.ndarray
    pred_names: Sequence[str]
    pred_scores: np.ndarray

    def __post_init__(self) -> None:
        self.gt_boxes = _as_boxes(self.gt_boxes, "gt_boxes")
        self.gt_names = _as_names(self.gt_names, len(self.gt_boxes), "gt_names")
        if self.gt_num_points is not None:
            self.gt_num_points = np.asarray(self.gt_num_points).reshape(-1)
            if self.gt_num_points.shape != (len(self.gt_boxes),):
                raise ValueError(f"gt_num_points: expected {len(self.gt_boxes)} values, "
                                 f"got {self.gt_num_points.shape}")
        self.pred_boxes = _as_boxes(self.pred_boxes, "pred_boxes")
        self.pred_names = _as_names(self.pred_names, len(self.pred_boxes), "pred_names")
        self.pred_scores = np.asarray(self.pred_scores, dtype=np.float64).reshape(-1)
        if self.pred_scores.shape != (len(self.pred_boxes),):
            raise ValueError(f"pred_scores: expected {len(self.pred_boxes)} values, got {self.pred_scores.shape}")
        if not np.isfinite(self.pred_scores).all():
            raise ValueError("pred_scores must be finite")


@dataclass(frozen=True)
class ClassMetrics:
    """Results of one class. For an absent class (``num_gt == 0``) AP and the errors are nan."""

    name: str
    #: GT boxes evaluated (after the range and point filters), over all frames.
    num_gt: int
    #: Predictions evaluated (after truncation and the range filter), over all frames.
    num_pred: int
    #: AP per matching threshold (metres).
    ap: Mapping[float, float]
    #: Mean of ``ap`` over the thresholds.
    ap_mean: float
    ate: float
    ase: float
    aoe: float
    ave: float

    @property
    def present(self) -> bool:
        return self.num_gt > 0

    def to_dict(self) -> dict[str, Any]:
        return {"num_gt": self.num_gt, "num_pred": self.num_pred, "present": self.present,
                "ap": {f"{th:g}": _json_float(v) for th, v in self.ap.items()}, "ap_mean": _json_float(self.ap_mean),
                **{name: _json_float(getattr(self, name)) for name in TP_ERRORS}}


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


@dataclass(frozen=True)
class DetectionMetrics:
    """Per-class results (in the evaluated class order) and their means over the present classes."""

    classes: Mapping[str, ClassMetrics]
    config: EvalConfig

    @property
    def present_classes(self) -> tuple[str, ...]:
        return tuple(name for name, m in self.classes.items() if m.present)

    @property
    def absent_classes(self) -> tuple[str, ...]:
        return tuple(name for name, m in self.classes.items() if not m.present)

    def _mean(self, attr: str) -> float:
        return _nanmean([getattr(self.classes[name], attr) for name in self.present_classes])

    @property
    def mean_ap(self) -> float:
        """mAP: mean over the present classes of the AP averaged over the thresholds (nan without any)."""
        return self._mean("ap_mean")

    @property
    def mean_ap_per_threshold(self) -> dict[float, float]:
        return {th: _nanmean([self.classes[n].ap[th] for n in self.present_classes]) for th in self.config.dist_ths}

    @property
    def mate(self) -> float:
        return self._mean("ate")

    @property
    def mase(self) -> float:
        return self._mean("ase")

    @property
    def maoe(self) -> float:
        return self._mean("aoe")

    @property
    def mave(self) -> float:
        return self._mean("ave")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; nan values become ``None``."""
        return {"config": self.config.to_dict(),
                "classes": {name: m.to_dict() for name, m in self.classes.items()},
                "present_classes": list(self.present_classes), "absent_classes": list(self.absent_classes),
                "mean": {"map": _json_float(self.mean_ap),
                         "map_per_threshold": {f"{th:g}": _json_float(v)
                                               for th, v in self.mean_ap_per_threshold.items()},
                         "mate": _json_float(self.mate), "mase": _json_float(self.mase),
                         "maoe": _json_float(self.maoe), "mave": _json_float(self.mave)}}

    def table(self) -> str:
        """A per-class table (AP per threshold, mean AP, ATE/ASE/AOE/AVE, GT and prediction counts) and the means."""
        ths = self.config.dist_ths
        name_w = max([len("class"), len("mean (99 of 99 classes)")] + [len(n) for n in self.classes])
        cols = [f"AP@{th:g}" for th in ths] + ["AP mean", "ATE", "ASE", "AOE", "AVE"]
        header = f"{'class':<{name_w}}" + "".join(f"{c:>8}" for c in cols) + f"{'#GT':>7}{'#pred':>7}"

        def num(value: float) -> str:
            return f"{'n/a':>8}" if math.isnan(value) else f"{value:8.3f}"

        lines = [header, "-" * len(header)]
        for name, m in self.classes.items():
            if m.present:
                values = [m.ap[th] for th in ths] + [m.ap_mean, m.ate, m.ase, m.aoe, m.ave]
                body = "".join(num(v) for v in values)
            else:
                body = f"{'  absent: no GT, left out of the means':<{8 * len(cols)}}"
            lines.append(f"{name:<{name_w}}{body}{m.num_gt:>7}{m.num_pred:>7}")
        lines.append("-" * len(header))
        present = self.present_classes
        label = f"mean ({len(present)} of {len(self.classes)} classes)"
        means = [self.mean_ap_per_threshold[th] for th in ths] + [self.mean_ap, self.mate, self.mase, self.maoe,
                                                                  self.mave]
        lines.append(f"{label:<{name_w}}" + "".join(num(v) for v in means)
                     + f"{sum(self.classes[n].num_gt for n in present):>7}"
                     + f"{sum(self.classes[n].num_pred for n in present):>7}")
        if self.absent_classes:
            lines.append(f"absent (no GT in range), left out of the means: {', '.join(self.absent_classes)}")
            lines.append("  (the nuScenes benchmark would count each absent class as AP 0 and TP errors 1)")
        if {"traffic_cone", "barrier"} & set(present):
            lines.append("n/a: undefined (AOE of traffic_cone, AVE of traffic_cone and barrier)")
        return "\n".join(lines)


def points_in_boxes(xyz: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Number of points inside each box: ``xyz`` ``[N, 3]``, ``boxes`` ``[M, >=7]`` -> ``[M]`` int64.

    A point is inside if, in the box frame (rotated by the yaw about z), ``|along| <= dx / 2``,
    ``|across| <= dy / 2`` and ``z_bottom <= z <= z_bottom + dz`` (bounds inclusive, as nuScenes ``points_in_box``).
    """
    pts = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    box = np.asarray(boxes, dtype=np.float64)
    if box.size == 0:
        return np.zeros(0, dtype=np.int64)
    if box.ndim != 2 or box.shape[1] < 7:
        raise ValueError(f"boxes must be [M, >=7] (x, y, z_bottom, dx, dy, dz, yaw, ...), got {box.shape}")
    counts = np.zeros(len(box), dtype=np.int64)
    if len(pts) == 0:
        return counts
    cx, cy, z0, half_x, half_y, dz = (box[:, k, None] for k in range(6))
    half_x, half_y = half_x / 2.0, half_y / 2.0
    cos, sin = np.cos(box[:, 6, None]), np.sin(box[:, 6, None])
    step = max(1, _POINTS_IN_BOXES_BLOCK // len(box))
    for start in range(0, len(pts), step):
        block = pts[start:start + step]
        rx, ry, z = block[None, :, 0] - cx, block[None, :, 1] - cy, block[None, :, 2]
        inside = (np.abs(rx * cos + ry * sin) <= half_x) & (np.abs(ry * cos - rx * sin) <= half_y)
        inside &= (z >= z0) & (z <= z0 + dz)
        counts += inside.sum(axis=1)
    return counts


def _truncate(frame: FrameEval, max_boxes: int) -> np.ndarray:
    """Indices of the predictions kept in ``frame``: the ``max_boxes`` highest scores, in their original order."""
    n = len(frame.pred_scores)
    if n <= max_boxes:
        return np.arange(n)
    return np.sort(np.argsort(-frame.pred_scores, kind="stable")[:max_boxes])


def _cummean(x: np.ndarray) -> np.ndarray:
    """nan-aware running mean; all ones if every value is nan (devkit ``cummean``)."""
    valid = ~np.isnan(x)
    if not valid.any():
        return np.ones(len(x))
    counts = np.cumsum(valid)
    sums = np.cumsum(np.where(valid, x, 0.0))
    return np.divide(sums, counts, out=np.zeros(len(x)), where=counts > 0)


def _yaw_error(gt_yaw: np.ndarray, pred_yaw: np.ndarray, period: float) -> np.ndarray:
    """Smallest absolute yaw difference for the given period, in [0, pi] (devkit ``yaw_diff``)."""
    diff = np.mod(gt_yaw - pred_yaw + period / 2.0, period) - period / 2.0
    diff = np.where(diff > math.pi, diff - 2.0 * math.pi, diff)
    return np.abs(diff)


def _scale_error(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """1 - IoU of boxes with the same centre and yaw, i.e. from the sizes (devkit ``1 - scale_iou``)."""
    inter = np.prod(np.minimum(gt[:, 3:6], pred[:, 3:6]), axis=1)
    union = np.prod(gt[:, 3:6], axis=1) + np.prod(pred[:, 3:6], axis=1) - inter
    return 1.0 - inter / union


@dataclass
class _ClassData:
    """A class's filtered boxes: GT per frame, predictions of all frames concatenated in frame order."""

    gt: list[np.ndarray]
    pred_boxes: np.ndarray
    pred_scores: np.ndarray
    pred_frame: np.ndarray
    pred_index: np.ndarray  # index among the class's predictions of its frame
    dist: list[np.ndarray]  # per frame, [P_f, G_f] BEV centre distances

    @property
    def num_gt(self) -> int:
        return sum(len(g) for g in self.gt)


def _gather(frames: Sequence[FrameEval], kept: Sequence[np.ndarray], name: str, max_range: float) -> _ClassData:
    gt, dist, boxes, scores, frame_ids, index = [], [], [], [], [], []
    for f, (frame, keep) in enumerate(zip(frames, kept)):
        g = frame.gt_boxes
        g_mask = (frame.gt_names == name) & (np.hypot(g[:, 0], g[:, 1]) < max_range)
        if frame.gt_num_points is not None:
            g_mask &= frame.gt_num_points != 0
        g = g[g_mask]
        p = frame.pred_boxes[keep]
        p_mask = (frame.pred_names[keep] == name) & (np.hypot(p[:, 0], p[:, 1]) < max_range)
        p = p[p_mask]
        gt.append(g)
        dist.append(np.hypot(p[:, None, 0] - g[None, :, 0], p[:, None, 1] - g[None, :, 1]))
        boxes.append(p)
        scores.append(frame.pred_scores[keep][p_mask])
        frame_ids.append(np.full(len(p), f, dtype=np.int64))
        index.append(np.arange(len(p)))
    return _ClassData(gt=gt, pred_boxes=np.concatenate(boxes) if boxes else np.zeros((0, 9)),
                      pred_scores=np.concatenate(scores) if scores else np.zeros(0),
                      pred_frame=np.concatenate(frame_ids) if frame_ids else np.zeros(0, np.int64),
                      pred_index=np.concatenate(index) if index else np.zeros(0, np.int64), dist=dist)


def _match(data: _ClassData, order: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy matching in ``order``: for each prediction, the index of its GT box in its frame, or -1."""
    taken = [np.zeros(len(g), dtype=bool) for g in data.gt]
    matched = np.full(len(order), -1, dtype=np.int64)
    for k, p in enumerate(order):
        f = data.pred_frame[p]
        if not len(data.gt[f]):
            continue
        row = np.where(taken[f], np.inf, data.dist[f][data.pred_index[p]])
        j = int(np.argmin(row))  # the first of equal minima, as the devkit's strict "<" scan
        if row[j] < threshold:
            taken[f][j] = True
            matched[k] = j
    return matched


def _curves(matched: np.ndarray, scores: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Precision and confidence on the recall points, from matches in score order; None without any match."""
    is_tp = matched >= 0
    if not is_tp.any():
        return None
    tp, fp = np.cumsum(is_tp).astype(np.float64), np.cumsum(~is_tp).astype(np.float64)
    recall = tp / float(num_gt)
    points = np.linspace(0.0, 1.0, N_RECALL_POINTS)
    precision = np.interp(points, recall, tp / (tp + fp), right=0.0)
    confidence = np.interp(points, recall, scores, right=0.0)
    return precision, confidence


def _average_precision(precision: np.ndarray | None, cfg: EvalConfig) -> float:
    if precision is None:
        return 0.0
    clipped = np.clip(precision[round(100 * cfg.min_recall) + 1:] - cfg.min_precision, 0.0, None)
    return float(np.mean(clipped)) / (1.0 - cfg.min_precision)


def _tp_errors(data: _ClassData, name: str, order: np.ndarray, matched: np.ndarray,
               confidence: np.ndarray | None, cfg: EvalConfig) -> dict[str, float]:
    undefined = _UNDEFINED_ERRORS.get(name, frozenset())
    first = round(100 * cfg.min_recall) + 1
    nonzero = np.flatnonzero(confidence) if confidence is not None else np.zeros(0, np.int64)
    last = int(nonzero[-1]) if len(nonzero) else 0
    if confidence is None or last < first:
        return {e: (math.nan if e in undefined else 1.0) for e in TP_ERRORS}
    hits = matched >= 0
    preds = order[hits]
    pred = data.pred_boxes[preds]
    gt = np.stack([data.gt[data.pred_frame[p]][j] for p, j in zip(preds, matched[hits])])
    period = _YAW_PERIOD.get(name, 2.0 * math.pi)
    raw = {"ate": np.hypot(pred[:, 0] - gt[:, 0], pred[:, 1] - gt[:, 1]),
           "ase": _scale_error(gt, pred),
           "aoe": _yaw_error(gt[:, 6], pred[:, 6], period),
           "ave": np.hypot(pred[:, 7] - gt[:, 7], pred[:, 8] - gt[:, 8])}
    match_conf = data.pred_scores[preds]
    errors = {}
    for e in TP_ERRORS:
        if e in undefined:
            errors[e] = math.nan
            continue
        # Running mean in score order, resampled onto the recall points through the confidences.
        curve = np.interp(confidence[::-1], match_conf[::-1], _cummean(raw[e])[::-1])[::-1]
        errors[e] = float(np.mean(curve[first:last + 1]))
    return errors


def evaluate(frames: Sequence[FrameEval], classes: Sequence[str] | None = None,
             config: EvalConfig | None = None) -> DetectionMetrics:
    """Score ``frames`` per class with nuScenes semantics (see the module docstring).

    ``classes`` defaults to all of :data:`CLASS_NAMES`; each needs a range in ``config.class_range``. Boxes of
    other classes are ignored (but count towards the per-frame prediction limit).
    """
    cfg = config if config is not None else EvalConfig()
    names = tuple(CLASS_NAMES if classes is None else classes)
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate class names in {names}")
    missing = [n for n in names if n not in cfg.class_range]
    if missing:
        raise ValueError(f"no evaluation range for classes {missing}")
    kept = [_truncate(frame, cfg.max_boxes_per_frame) for frame in frames]
    results = {}
    for name in names:
        data = _gather(frames, kept, name, float(cfg.class_range[name]))
        num_gt, num_pred = data.num_gt, len(data.pred_scores)
        if num_gt == 0:
            results[name] = ClassMetrics(name, 0, num_pred, {th: math.nan for th in cfg.dist_ths}, math.nan,
                                         math.nan, math.nan, math.nan, math.nan)
            continue
        # Descending score; equal scores: the later prediction first (the devkit reverses an ascending sort).
        order = np.lexsort((np.arange(num_pred), data.pred_scores))[::-1]
        scores = data.pred_scores[order]
        ap, errors = {}, {}
        for th in cfg.dist_ths:
            matched = _match(data, order, th)
            curves = _curves(matched, scores, num_gt)
            ap[th] = _average_precision(None if curves is None else curves[0], cfg)
            if th == cfg.dist_th_tp:
                errors = _tp_errors(data, name, order, matched, None if curves is None else curves[1], cfg)
        results[name] = ClassMetrics(name, num_gt, num_pred, ap, float(np.mean(list(ap.values()))), **errors)
    return DetectionMetrics(classes=results, config=cfg)
