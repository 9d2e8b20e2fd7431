"""nuScenes-style detection metrics (aqr_ros.tools.detection_metrics): AP, TP errors, filters, points in boxes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from aqr_ros.tools.detection_metrics import (CLASS_NAMES, DEFAULT_CLASS_RANGE, EvalConfig, FrameEval, evaluate,
                                             points_in_boxes)

THS = (0.5, 1.0, 2.0, 4.0)
# AP values follow the devkit's float arithmetic (a perfect AP is mean(0.9) / 0.9 = 1.0000000000000004), so they are
# compared to 1e-12.
DIMS = {"car": (4.5, 1.9, 1.6), "pedestrian": (0.7, 0.7, 1.8), "barrier": (2.0, 0.5, 1.0),
        "traffic_cone": (0.4, 0.4, 0.7), "truck": (7.0, 2.5, 3.0)}


def _box(x: float, y: float, name: str = "car", yaw: float = 0.3, v: tuple[float, float] = (1.0, -0.5),
         dims: tuple[float, float, float] | None = None) -> list[float]:
    return [x, y, -1.7, *(dims or DIMS[name]), yaw, *v]


def _frame(gt: list[list[float]], gt_names: list[str], pred: list[list[float]], pred_names: list[str],
           scores: list[float], points: list[int] | None = None) -> FrameEval:
    return FrameEval(np.array(gt), gt_names, None if points is None else np.array(points), np.array(pred),
                     pred_names, np.array(scores))


def _copy_frame(gt: list[list[float]], names: list[str]) -> FrameEval:
    """Predictions equal to the GT, score 1."""
    return _frame(gt, names, gt, names, [1.0] * len(gt), [50] * len(gt))


GT_SCENE = [
    ([_box(10, 2), _box(-20, 5, yaw=-2.0), _box(3, -8, "pedestrian", v=(0.5, 0.2)), _box(6, 6, "barrier"),
      _box(4, -3, "traffic_cone", v=(0.0, 0.0))], ["car", "car", "pedestrian", "barrier", "traffic_cone"]),
    ([_box(30, -10, yaw=3.0), _box(-5, -5, "pedestrian"), _box(12, 1, "barrier", yaw=1.2)],
     ["car", "pedestrian", "barrier"]),
    ([_box(-40, 20, yaw=-3.1), _box(7, 7, "traffic_cone")], ["car", "traffic_cone"]),
]
SCENE_CLASSES = ("car", "pedestrian", "barrier", "traffic_cone")


def test_perfect_predictions() -> None:
    metrics = evaluate([_copy_frame(gt, names) for gt, names in GT_SCENE])
    assert metrics.present_classes == ("car", "barrier", "pedestrian", "traffic_cone")  # in CLASS_NAMES order
    assert set(metrics.absent_classes) == set(CLASS_NAMES) - set(SCENE_CLASSES)
    for name in SCENE_CLASSES:
        m = metrics.classes[name]
        assert m.ap == pytest.approx({th: 1.0 for th in THS}, abs=1e-12)
        assert m.ap_mean == pytest.approx(1.0, abs=1e-12)
        assert m.ate == 0.0 and m.ase == 0.0
        assert m.aoe == 0.0 or (name == "traffic_cone" and math.isnan(m.aoe))
        assert m.ave == 0.0 or (name in ("traffic_cone", "barrier") and math.isnan(m.ave))
    assert metrics.classes["car"].num_gt == 4 and metrics.classes["car"].num_pred == 4
    assert metrics.mean_ap == pytest.approx(1.0, abs=1e-12)
    assert (metrics.mate, metrics.mase, metrics.maoe, metrics.mave) == (0.0, 0.0, 0.0, 0.0)


def test_shift_by_0_7_m() -> None:
    frames = []
    for k, (gt, names) in enumerate(GT_SCENE):
        pred = np.array(gt)
        angle = 0.9 * k + np.arange(len(gt))  # a different direction for every box
        pred[:, 0] += 0.7 * np.cos(angle)
        pred[:, 1] += 0.7 * np.sin(angle)
        frames.append(_frame(gt, names, pred.tolist(), names, [0.8] * len(gt)))
    metrics = evaluate(frames, SCENE_CLASSES)
    for name in SCENE_CLASSES:
        m = metrics.classes[name]
        assert m.ap == pytest.approx({0.5: 0.0, 1.0: 1.0, 2.0: 1.0, 4.0: 1.0}, abs=1e-12)
        assert m.ate == pytest.approx(0.7, abs=1e-12)
        assert m.ase == pytest.approx(0.0, abs=1e-12)
    assert metrics.mean_ap == pytest.approx(0.75, abs=1e-12)


def test_hand_computed_precision_recall() -> None:
    # 3 GT cars; predictions by score: TP 0.9, FP 0.8, TP 0.7, FP 0.6 (the third GT is missed; FPs far from any GT).
    gt = [_box(10, 0), _box(0, 15), _box(-12, -12)]
    pred = [_box(10.1, 0), _box(-25, 5), _box(0, 15.2), _box(20, -20)]
    metrics = evaluate([_frame(gt, ["car"] * 3, pred, ["car"] * 4, [0.9, 0.8, 0.7, 0.6])], ["car"])
    # recall = 1/3, 1/3, 2/3, 2/3; precision = 1, 1/2, 2/3, 1/2. np.interp onto r = i/100 (as the devkit):
    # r < 1/3: 1 (left value); 1/3 < r < 2/3: linear from (1/3, 1/2) to (2/3, 2/3); r > 2/3: 0 (right=0).
    # AP = mean over i = 11..100 of max(p - 0.1, 0) / 0.9.
    def precision(r: float) -> float:
        if r < 1 / 3:
            return 1.0
        if r < 2 / 3:
            return 0.5 + (r - 1 / 3) * (2 / 3 - 1 / 2) / (1 / 3)
        return 0.0
    expected = sum(max(precision(i / 100) - 0.1, 0.0) / 0.9 for i in range(11, 101)) / 90
    # = (23 bins of 1 + (33 * 0.4 + 2.75) / 0.9) / 90
    assert expected == pytest.approx((23 + (33 * 0.4 + 2.75) / 0.9) / 90, abs=1e-12)
    m = metrics.classes["car"]
    for th in THS:
        assert m.ap[th] == pytest.approx(expected, abs=1e-12)
    assert m.ap[0.5] == pytest.approx(0.4524691358, abs=1e-9)


def test_tp_error_is_cumulative_mean_along_recall() -> None:
    # 2 GT, 2 TPs with centre errors 0.2 (score 0.9) and 0.4 (score 0.8): recall 0.5, 1.0. The running mean of the
    # errors (0.2, 0.3) goes onto the recall points through the confidences (0.9 up to r = 0.5, then linear down to
    # 0.8 at r = 1): error(r) = 0.2 for r <= 0.5, 0.2 + 0.2 (r - 0.5) above; ATE = its mean over r = 0.11..1.
    gt = [_box(10, 0), _box(-10, 0)]
    pred = [_box(10.2, 0), _box(-10, 0.4)]
    m = evaluate([_frame(gt, ["car"] * 2, pred, ["car"] * 2, [0.9, 0.8])], ["car"]).classes["car"]
    expected = (40 * 0.2 + sum(0.2 + 0.2 * (i / 100 - 0.5) for i in range(51, 101))) / 90
    assert expected == pytest.approx(20.55 / 90, abs=1e-12)
    assert m.ate == pytest.approx(expected, abs=1e-12)
    assert m.ap == pytest.approx({th: 1.0 for th in THS}, abs=1e-12)


def test_orientation_error() -> None:
    gt = [_box(10, 0, "car", yaw=0.3), _box(0, 10, "barrier", yaw=0.3), _box(5, 5, "traffic_cone", yaw=0.3)]
    names = ["car", "barrier", "traffic_cone"]
    pred = [list(b) for b in gt]
    for b in pred:
        b[6] += math.pi
    metrics = evaluate([_frame(gt, names, pred, names, [0.5] * 3)], names)
    assert metrics.classes["car"].aoe == pytest.approx(math.pi, abs=1e-12)
    assert metrics.classes["barrier"].aoe == pytest.approx(0.0, abs=1e-12)  # period pi
    assert math.isnan(metrics.classes["traffic_cone"].aoe)
    assert metrics.maoe == pytest.approx(math.pi / 2, abs=1e-12)  # nan-aware: car and barrier only
    # A quarter turn the other way round the circle: -pi/2 + 2 pi is pi/2 away.
    pred = [_box(10, 0, yaw=0.3 - math.pi / 2 + 2 * math.pi)]
    m = evaluate([_frame(gt[:1], names[:1], pred, ["car"], [0.5])], ["car"]).classes["car"]
    assert m.aoe == pytest.approx(math.pi / 2, abs=1e-12)


def test_scale_error() -> None:
    gt = [_box(10, 0), _box(0, -12)]
    pred = [_box(10, 0, dims=tuple(2 * d for d in DIMS["car"])), _box(0, -12, dims=tuple(2 * d for d in DIMS["car"]))]
    m = evaluate([_frame(gt, ["car"] * 2, pred, ["car"] * 2, [0.6, 0.7])], ["car"]).classes["car"]
    assert m.ase == pytest.approx(1.0 - 1.0 / 8.0, abs=1e-12)
    assert m.ap == pytest.approx({th: 1.0 for th in THS}, abs=1e-12)


def test_velocity_error() -> None:
    gt = [_box(10, 0, v=(1.0, 2.0)), _box(-10, 3, v=(0.0, 0.0)), _box(0, 20, "barrier"),
          _box(5, 5, "traffic_cone")]
    names = ["car", "car", "barrier", "traffic_cone"]
    # The second car's predicted velocity is unknown (nan): it is skipped, as in the devkit.
    pred = [_box(10, 0, v=(4.0, 6.0)), _box(-10, 3, v=(math.nan, math.nan)), _box(0, 20, "barrier", v=(9, 9)),
            _box(5, 5, "traffic_cone", v=(9, 9))]
    metrics = evaluate([_frame(gt, names, pred, names, [0.9, 0.8, 0.9, 0.9])], ["car", "barrier", "traffic_cone"])
    assert metrics.classes["car"].ave == pytest.approx(5.0, abs=1e-12)
    assert math.isnan(metrics.classes["barrier"].ave)
    assert math.isnan(metrics.classes["traffic_cone"].ave)
    assert metrics.mave == pytest.approx(5.0, abs=1e-12)


def test_class_range_filter() -> None:
    # Cars: kept at 10 m and 49.9 m; beyond the 50 m range (or exactly at it) neither GT nor predictions count.
    gt = [_box(10, 0), _box(49.9, 0), _box(55, 0), _box(30, 40), _box(0, 45, "pedestrian")]
    names = ["car", "car", "car", "car", "pedestrian"]
    pred = [_box(10, 0), _box(49.9, 0), _box(55.3, 0), _box(30, 40), _box(-52, 3), _box(0, 45, "pedestrian")]
    pred_names = ["car"] * 5 + ["pedestrian"]
    metrics = evaluate([_frame(gt, names, pred, pred_names, [0.9, 0.8, 0.95, 0.99, 0.97, 0.9])], ["car", "pedestrian"])
    car = metrics.classes["car"]
    assert (car.num_gt, car.num_pred) == (2, 2)
    assert car.ap == pytest.approx({th: 1.0 for th in THS}, abs=1e-12)
    # The pedestrian at 45 m is beyond its 40 m range: no GT left, the class is absent.
    assert metrics.absent_classes == ("pedestrian",)
    assert metrics.classes["pedestrian"].num_pred == 0
    # Without the filter (larger ranges) the far car is found and the one at 52 m is a false positive.
    wide = EvalConfig(class_range={"car": 100.0, "pedestrian": 100.0})
    frame = _frame(gt, names, pred, pred_names, [0.9, 0.8, 0.95, 0.99, 0.97, 0.9])
    car = evaluate([frame], ["car"], wide).classes["car"]
    assert (car.num_gt, car.num_pred) == (4, 5)
    assert car.ap[2.0] < 1.0


def test_gt_without_points_is_ignored() -> None:
    gt = [_box(10, 0), _box(-10, 5)]
    # No prediction on the point-less GT: it is not a miss.
    m = evaluate([_frame(gt, ["car"] * 2, gt[:1], ["car"], [0.9], points=[12, 0])], ["car"]).classes["car"]
    assert m.num_gt == 1
    assert m.ap == pytest.approx({th: 1.0 for th in THS}, abs=1e-12)
    # A prediction on it is a false positive (nuScenes drops the GT, not the prediction): after the TP (recall 1,
    # precision 1) comes the FP (recall 1, precision 1/2); np.interp gives 1/2 at r = 1, 1 below.
    m = evaluate([_frame(gt, ["car"] * 2, gt, ["car"] * 2, [0.9, 0.8], points=[12, 0])], ["car"]).classes["car"]
    assert m.num_gt == 1 and m.num_pred == 2
    assert m.ap[0.5] == pytest.approx((89 + 0.4 / 0.9) / 90, abs=1e-12)
    # Unknown point counts (None) keep every GT box.
    m = evaluate([_frame(gt, ["car"] * 2, gt, ["car"] * 2, [0.9, 0.8])], ["car"]).classes["car"]
    assert m.num_gt == 2 and m.ap[0.5] == pytest.approx(1.0, abs=1e-12)


def test_predictions_truncated_to_500_per_frame_by_score() -> None:
    gt = [_box(10, 0)]
    far = [_box(-30 + 0.1 * k, -20, "pedestrian") for k in range(550)]
    # 550 confident pedestrians push the low-scoring car out of the frame's 500 boxes (all classes count).
    frame = _frame(gt, ["car"], far + [_box(10, 0)], ["pedestrian"] * 550 + ["car"], [0.9] * 550 + [0.1])
    metrics = evaluate([frame], ["car", "pedestrian"])
    assert metrics.classes["car"].num_pred == 0
    assert metrics.classes["car"].ap == pytest.approx({th: 0.0 for th in THS}, abs=1e-12)
    assert (metrics.classes["car"].ate, metrics.classes["car"].aoe) == (1.0, 1.0)  # no match: errors 1
    assert metrics.classes["pedestrian"].num_pred == 500
    # With a score above the crowd the car stays; with a larger limit it stays too.
    frame = _frame(gt, ["car"], far + [_box(10, 0)], ["pedestrian"] * 550 + ["car"], [0.9] * 550 + [0.95])
    assert evaluate([frame], ["car"]).classes["car"].ap == pytest.approx({th: 1.0 for th in THS}, abs=1e-12)
    frame = _frame(gt, ["car"], far + [_box(10, 0)], ["pedestrian"] * 550 + ["car"], [0.9] * 550 + [0.1])
    car = evaluate([frame], ["car"], EvalConfig(max_boxes_per_frame=551)).classes["car"]
    assert car.ap[0.5] == pytest.approx(1.0, abs=1e-12)
    # The limit is per frame: the same boxes split over two frames are all kept.
    frames = [_frame(gt, ["car"], far[:300], ["pedestrian"] * 300, [0.9] * 300),
              _frame(gt, ["car"], far[300:] + [_box(10, 0)], ["pedestrian"] * 250 + ["car"], [0.9] * 250 + [0.1])]
    car = evaluate(frames, ["car"]).classes["car"]
    assert car.num_gt == 2 and car.num_pred == 1


def test_points_in_boxes_rotated() -> None:
    yaw = math.pi / 6
    box = np.array([[5.0, 2.0, -1.0, 4.0, 2.0, 1.5, yaw, 0.0, 0.0]])
    # Points in the box frame (along, across, z above the bottom), then rotated and shifted into the sensor frame.
    local = np.array([
        [1.99, 0.99, 0.01],   # inside, near a corner
        [-1.99, -0.99, 1.49],  # inside, the opposite corner
        [0.0, 0.0, 0.75],     # centre
        [2.01, 0.0, 0.75],    # just past the front
        [0.0, -1.01, 0.75],   # just past the side
        [0.0, 0.0, -0.01],    # just below the bottom
        [0.0, 0.0, 1.51],     # just above the top
    ])
    c, s = math.cos(yaw), math.sin(yaw)
    xyz = np.column_stack([5.0 + c * local[:, 0] - s * local[:, 1], 2.0 + s * local[:, 0] + c * local[:, 1],
                           -1.0 + local[:, 2]])
    # Inside the box's axis-aligned footprint (offset 1.9, -0.9 from the centre) but outside the rotated box.
    xyz = np.vstack([xyz, [6.9, 1.1, -0.25]])
    assert points_in_boxes(xyz, box).tolist() == [3]
    for k in range(len(xyz)):
        assert points_in_boxes(xyz[k:k + 1], box).tolist() == [1 if k < 3 else 0]
    # Several boxes, and a point of the first box that the axis-aligned bounds would wrongly count.
    other = np.array([[5.0, 2.0, -1.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0], [50.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0, 0]])
    counts = points_in_boxes(xyz, np.vstack([box, other]))
    axis_aligned = (np.abs(xyz[:, 0] - 5) <= 2) & (np.abs(xyz[:, 1] - 2) <= 1) & (xyz[:, 2] >= -1) & (xyz[:, 2] <= 0.5)
    assert axis_aligned[-1]
    assert counts.dtype == np.int64 and counts[0] == 3 and counts[1] == int(axis_aligned.sum()) and counts[2] == 0
    assert points_in_boxes(np.zeros((0, 3)), box).tolist() == [0]
    assert points_in_boxes(xyz, np.zeros((0, 9))).shape == (0,)


def test_absent_classes_left_out_of_the_means() -> None:
    gt = [_box(10, 0), _box(-10, 5)]
    # Cars perfect; a pedestrian prediction with no pedestrian GT anywhere; truck GT but no truck prediction.
    frame = _frame(gt + [_box(0, 20, "truck")], ["car", "car", "truck"], gt + [_box(0, 5, "pedestrian")],
                   ["car", "car", "pedestrian"], [0.9, 0.8, 0.99])
    metrics = evaluate([frame], ["car", "pedestrian", "truck", "bus"])
    assert metrics.present_classes == ("car", "truck")
    assert metrics.absent_classes == ("pedestrian", "bus")
    ped = metrics.classes["pedestrian"]
    assert not ped.present and ped.num_pred == 1 and math.isnan(ped.ap_mean) and math.isnan(ped.ate)
    # A present class without any match: AP 0 and TP errors 1 (nuScenes); it does count in the means.
    truck = metrics.classes["truck"]
    assert truck.ap_mean == 0.0 and (truck.ate, truck.ase, truck.aoe, truck.ave) == (1.0, 1.0, 1.0, 1.0)
    assert metrics.mean_ap == pytest.approx(0.5, abs=1e-12)
    assert metrics.mate == 0.5
    table = metrics.table()
    assert "absent" in table and "pedestrian" in table and "mean (2 of 4 classes)" in table
    assert "AP 0 and TP errors 1" in table
    data = json.loads(json.dumps(metrics.to_dict(), allow_nan=False))
    assert data["absent_classes"] == ["pedestrian", "bus"]
    assert data["mean"]["map"] == pytest.approx(0.5, abs=1e-12)
    assert data["classes"]["pedestrian"]["ap_mean"] is None
    assert data["classes"]["car"]["ap"] == pytest.approx({"0.5": 1.0, "1": 1.0, "2": 1.0, "4": 1.0}, abs=1e-12)
    # Only absent classes: means are nan.
    assert math.isnan(evaluate([frame], ["bus"]).mean_ap)


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError):
        FrameEval(np.zeros((1, 7)), ["car"], None, np.zeros((0, 9)), [], np.zeros(0))
    with pytest.raises(ValueError):
        FrameEval(np.array([_box(1, 1)]), ["car", "car"], None, np.zeros((0, 9)), [], np.zeros(0))
    with pytest.raises(ValueError):
        FrameEval(np.zeros((0, 9)), [], None, np.array([_box(1, 1)]), ["car"], [math.nan])
    with pytest.raises(ValueError):
        evaluate([], ["not_a_class"])
    with pytest.raises(ValueError):
        EvalConfig(dist_th_tp=3.0)
    assert evaluate([]).absent_classes == CLASS_NAMES


# ---------------------------------------------------------------------------------------------------------------
# Cross-check on random cases against the devkit's algorithm, re-derived here box by box in plain Python
# (nuscenes/eval/detection/algo.py accumulate, calc_ap, calc_tp; common/utils.py; common/loaders.py filters).
# ---------------------------------------------------------------------------------------------------------------

def _ref_class(frames: list[FrameEval], name: str, th: float) -> tuple[float, dict[str, float]]:
    max_dist = DEFAULT_CLASS_RANGE[name]
    gts = {f: [b for b, n, k in zip(fr.gt_boxes, fr.gt_names, fr.gt_num_points)
               if n == name and math.hypot(b[0], b[1]) < max_dist and k != 0] for f, fr in enumerate(frames)}
    preds = [(float(s), f, b) for f, fr in enumerate(frames) for b, n, s in zip(fr.pred_boxes, fr.pred_names,
                                                                                fr.pred_scores)
             if n == name and math.hypot(b[0], b[1]) < max_dist]
    npos = sum(len(g) for g in gts.values())
    no_match = (0.0, {e: 1.0 for e in ("ate", "ase", "aoe", "ave")})
    if npos == 0:
        return no_match
    order = [i for _, i in sorted((p[0], i) for i, p in enumerate(preds))][::-1]
    taken, tp, fp, conf = set(), [], [], []
    errs: dict[str, list[float]] = {"ate": [], "ase": [], "aoe": [], "ave": []}
    match_conf = []
    for i in order:
        score, f, p = preds[i]
        best, best_j = math.inf, None
        for j, g in enumerate(gts[f]):
            if (f, j) not in taken:
                d = math.hypot(p[0] - g[0], p[1] - g[1])
                if d < best:
                    best, best_j = d, j
        conf.append(score)
        if best < th:
            taken.add((f, best_j))
            tp.append(1)
            fp.append(0)
            g = gts[f][best_j]
            errs["ate"].append(best)
            inter = min(g[3], p[3]) * min(g[4], p[4]) * min(g[5], p[5])
            errs["ase"].append(1 - inter / (g[3] * g[4] * g[5] + p[3] * p[4] * p[5] - inter))
            period = math.pi if name == "barrier" else 2 * math.pi
            diff = (g[6] - p[6] + period / 2) % period - period / 2
            errs["aoe"].append(abs(diff - 2 * math.pi if diff > math.pi else diff))
            errs["ave"].append(math.hypot(p[7] - g[7], p[8] - g[8]))
            match_conf.append(score)
        else:
            tp.append(0)
            fp.append(1)
    if not match_conf:
        return no_match
    tp_c, fp_c = np.cumsum(tp).astype(float), np.cumsum(fp).astype(float)
    rec_pts = np.linspace(0, 1, 101)
    prec = np.interp(rec_pts, tp_c / npos, tp_c / (tp_c + fp_c), right=0)
    conf_i = np.interp(rec_pts, tp_c / npos, np.array(conf), right=0)
    ap = float(np.mean(np.clip(prec[11:] - 0.1, 0, None))) / 0.9
    nonzero = np.nonzero(conf_i)[0]
    last = nonzero[-1] if len(nonzero) else 0
    tps = {}
    for key, values in errs.items():
        running, total, count = [], 0.0, 0
        for v in values:
            if not math.isnan(v):
                total, count = total + v, count + 1
            running.append(total / count if count else 0.0)
        if all(math.isnan(v) for v in values):
            running = [1.0] * len(values)
        curve = np.interp(conf_i[::-1], match_conf[::-1], running[::-1])[::-1]
        tps[key] = 1.0 if last < 11 else float(np.mean(curve[11:last + 1]))
    return ap, tps


def _random_frames(rng: np.random.Generator, classes: tuple[str, ...]) -> list[FrameEval]:
    frames = []
    for _ in range(int(rng.integers(1, 7))):
        n = int(rng.integers(0, 14))
        gt = np.column_stack([rng.uniform(-55, 55, (n, 2)), rng.uniform(-2, 0, n), rng.uniform(0.3, 5, (n, 3)),
                              rng.uniform(-4, 4, n), rng.normal(0, 3, (n, 2))])
        names = list(rng.choice(classes, n))
        pred, pred_names, scores = [], [], []
        for k in range(n):
            for _ in range(int(rng.integers(0, 3))):  # 0 to 2 detections per GT box: misses and duplicates
                b = gt[k].copy()
                b[:2] += rng.normal(0, 1.0, 2)
                b[3:6] *= rng.uniform(0.6, 1.6, 3)
                b[6] += rng.normal(0, 1.5)
                b[7:9] = np.nan if rng.random() < 0.1 else b[7:9] + rng.normal(0, 1, 2)
                pred.append(b)
                pred_names.append(names[k] if rng.random() < 0.9 else str(rng.choice(classes)))
        for _ in range(int(rng.integers(0, 6))):  # false positives anywhere
            pred.append(np.r_[rng.uniform(-55, 55, 2), 0.0, rng.uniform(0.3, 5, 3), rng.uniform(-4, 4),
                              rng.normal(0, 3, 2)])
            pred_names.append(str(rng.choice(classes)))
        scores = np.round(rng.random(len(pred)), 2)  # coarse scores: ties happen
        frames.append(FrameEval(gt, names, rng.integers(0, 4, n), np.array(pred).reshape(-1, 9), pred_names, scores))
    return frames


@pytest.mark.parametrize("seed", range(12))
def test_matches_devkit_algorithm_on_random_cases(seed: int) -> None:
    classes = ("car", "pedestrian", "barrier", "traffic_cone")
    frames = _random_frames(np.random.default_rng(seed), classes)
    metrics = evaluate(frames, classes)
    for name in classes:
        m = metrics.classes[name]
        if not m.present:
            assert math.isnan(m.ap_mean)
            continue
        for th in THS:
            ap, tps = _ref_class(frames, name, th)
            assert m.ap[th] == pytest.approx(ap, abs=1e-12)
            if th == 2.0:
                undefined = {"traffic_cone": ("aoe", "ave"), "barrier": ("ave",)}.get(name, ())
                for key, value in tps.items():
                    if key in undefined:
                        assert math.isnan(getattr(m, key))
                    else:
                        assert getattr(m, key) == pytest.approx(value, abs=1e-12)
