"""Evaluate a checkpoint on held-out synthetic-rig scenes: nuScenes-style AP and TP errors, and what AQR learned.

    python -m aqr_ros.tools.evaluate_rig --checkpoint models/weights/aqr_cmt_rig_small.safetensors --seeds 9000-9019

The scenes are rendered through the node's input path (:mod:`aqr_ros.tools.rig_dataset`, cached) and scored by
:mod:`aqr_ros.tools.detection_metrics` (centre-distance matching at 0.5/1/2/4 m, per-class AP, ATE/ASE/AOE/AVE,
nuScenes class ranges, ground truth without LiDAR points ignored). The AQR report looks at the queries that
detected an object (same class, centre within 2 m, greedy by score): their mean LiDAR and camera weights, the
same objects again with the camera that sees them dropped, and the weights against the LiDAR points in the box.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aqr_ros.model import AqrCmt, load_config
from aqr_ros.model.checkpoint import CheckpointError
from aqr_ros.model.config import ConfigError, ModelConfig
from aqr_ros.model.detector import Detections
from aqr_ros.tools.cli import add_device_argument, make_parser, resolve_device
from aqr_ros.tools.detection_metrics import DEFAULT_CLASS_RANGE, DetectionMetrics, FrameEval, evaluate
from aqr_ros.tools.rig_dataset import EVAL_SEEDS, RigSample, SampleCache, default_cache_dir, normalised_images, parse_seeds
from aqr_ros.tools.train_rig import DEFAULT_CONFIG

#: Acceptance figures of the reference model on the held-out seeds (models/README.md).
ACCEPTANCE = {"car AP": ("car", "ap_mean", 0.6, ">="), "pedestrian AP": ("pedestrian", "ap_mean", 0.4, ">="),
              "traffic_cone AP": ("traffic_cone", "ap_mean", 0.4, ">="), "car AOE": ("car", "aoe", 0.3, "<=")}
#: LiDAR points in a box: the bins of the AQR report.
POINT_BINS = ((1, 10), (10, 50), (50, 200), (200, None))
#: Matching distance (m) of the AQR report: nuScenes' TP threshold.
MATCH_DISTANCE = 2.0


def detect(model: AqrCmt, sample: RigSample, camera_valid: np.ndarray | None = None) -> Detections:
    """Run the model on a cached sample (all cameras unless ``camera_valid`` says otherwise); results on the CPU."""
    images = normalised_images(sample.images, model.config)
    return model.infer(sample.points, images, sample.lidar2img, camera_valid).to("cpu")


def frame_eval(sample: RigSample, det: Detections) -> FrameEval:
    """The evaluation record of one frame (model-frame boxes; the origin is the LiDAR)."""
    names = det.class_names
    return FrameEval(gt_boxes=sample.gt_boxes, gt_names=[names[i] for i in sample.gt_labels],
                     gt_num_points=sample.gt_num_points, pred_boxes=det.boxes.numpy().astype(np.float64),
                     pred_names=[names[i] for i in det.labels.tolist()], pred_scores=det.scores.numpy())


def match_objects(sample: RigSample, det: Detections) -> dict[int, int]:
    """Ground-truth index → query index of the detection that found it: same class, centre within 2 m, taken
    greedily by descending score; only objects with LiDAR points inside their class range take part."""
    gt_xy = sample.gt_boxes[:, :2]
    names = det.class_names
    ranges = np.array([DEFAULT_CLASS_RANGE.get(names[i], 50.0) for i in sample.gt_labels])
    eligible = (sample.gt_num_points > 0) & (np.hypot(gt_xy[:, 0], gt_xy[:, 1]) < ranges)
    boxes, labels, queries = det.boxes.numpy(), det.labels.numpy(), det.query_index.numpy()
    found: dict[int, int] = {}
    for k in np.argsort(-det.scores.numpy(), kind="stable"):
        dist = np.hypot(*(gt_xy - boxes[k, :2]).T)
        candidates = eligible & (sample.gt_labels == labels[k]) & (dist < MATCH_DISTANCE)
        candidates[list(found)] = False
        if candidates.any():
            found[int(np.argmin(np.where(candidates, dist, np.inf)))] = int(queries[k])
    return found


def object_camera(sample: RigSample, box: np.ndarray, image_size: tuple[int, int]) -> int | None:
    """The camera whose model-input image shows the box's centre nearest to the image centre (None if none)."""
    centre = np.array([box[0], box[1], box[2] + box[5] / 2, 1.0])
    pix = sample.lidar2img @ centre
    height, width = image_size
    best, best_offset = None, np.inf
    for view, (u, v, depth, _) in enumerate(pix):
        if depth <= 0.1:
            continue
        u, v = u / depth, v / depth
        if 0 <= u < width and 0 <= v < height and abs(u - width / 2) < best_offset:
            best, best_offset = view, abs(u - width / 2)
    return best


@dataclass(frozen=True)
class ObjectWeights:
    """AQR weights of the query that found one object, with all cameras and with the object's camera dropped."""

    class_name: str
    num_points: int
    lidar: float
    camera: float
    camera_dropped_lidar: float | None
    camera_dropped_camera: float | None


def aqr_report(model: AqrCmt, samples: Sequence[RigSample],
               detections: Sequence[Detections]) -> tuple[list[ObjectWeights], dict]:
    """Per detected object the AQR weights (all cameras, then its camera dropped) and the means over all queries."""
    config = model.config
    names = config.head.class_names
    objects: list[ObjectWeights] = []
    all_lidar, all_camera = [], []
    for sample, det in zip(samples, detections):
        all_lidar.append(det.lidar_weights.numpy())
        all_camera.append(det.camera_weights.numpy())
        found = match_objects(sample, det)
        by_camera: dict[int, list[int]] = {}
        for gt in found:
            view = object_camera(sample, sample.gt_boxes[gt], config.image.input_size)
            if view is not None:
                by_camera.setdefault(view, []).append(gt)
        dropped: dict[int, tuple[float, float]] = {}
        for view, gts in by_camera.items():
            valid = np.ones(config.image.num_views, dtype=bool)
            valid[view] = False
            det_drop = detect(model, sample, valid)
            found_drop = match_objects(sample, det_drop)
            for gt in gts:
                if gt in found_drop:
                    q = found_drop[gt]
                    dropped[gt] = (float(det_drop.lidar_weights[q]), float(det_drop.camera_weights[q]))
        for gt, q in found.items():
            drop = dropped.get(gt)
            objects.append(ObjectWeights(
                class_name=names[sample.gt_labels[gt]], num_points=int(sample.gt_num_points[gt]),
                lidar=float(det.lidar_weights[q]), camera=float(det.camera_weights[q]),
                camera_dropped_lidar=None if drop is None else drop[0],
                camera_dropped_camera=None if drop is None else drop[1]))
    lidar, camera = np.concatenate(all_lidar), np.concatenate(all_camera)
    return objects, {"queries": len(lidar), "lidar": float(lidar.mean()), "camera": float(camera.mean())}


def _mean_pair(rows: Sequence[ObjectWeights]) -> str:
    if not rows:
        return "     -      -     0"
    return f"{np.mean([r.lidar for r in rows]):6.3f} {np.mean([r.camera for r in rows]):6.3f} {len(rows):5d}"


def format_aqr_report(objects: Sequence[ObjectWeights], all_queries: dict) -> str:
    """The AQR report as text: weights of detecting queries overall, per class, with the camera dropped, by points."""
    lines = ["What AQR learned (weights of the queries that detected an object, centre within 2 m)",
             f"  {'':28s} {'lidar':>6s} {'camera':>6s} {'count':>5s}",
             f"  {'every query of every frame':28s} {all_queries['lidar']:6.3f} {all_queries['camera']:6.3f} "
             f"{all_queries['queries']:5d}",
             f"  {'detecting queries':28s} {_mean_pair(objects)}"]
    for name in sorted({o.class_name for o in objects}):
        lines.append(f"    {name:26s} {_mean_pair([o for o in objects if o.class_name == name])}")
    paired = [o for o in objects if o.camera_dropped_lidar is not None]
    lines.append("  object's camera dropped (the same objects, found again):")
    if paired:
        lines.append(f"    {'all cameras':26s} {_mean_pair(paired)}")
        lines.append(f"    {'its camera dropped':26s} {np.mean([o.camera_dropped_lidar for o in paired]):6.3f} "
                     f"{np.mean([o.camera_dropped_camera for o in paired]):6.3f} {len(paired):5d}")
    lines.append(f"    found again: {len(paired)} of {len(objects)} detected objects")
    lines.append("  by LiDAR points in the box:")
    for lo, hi in POINT_BINS:
        rows = [o for o in objects if o.num_points >= lo and (hi is None or o.num_points < hi)]
        label = f"{lo}-{hi - 1} points" if hi else f">= {lo} points"
        lines.append(f"    {label:26s} {_mean_pair(rows)}")
    return "\n".join(lines)


def acceptance(metrics: DetectionMetrics) -> dict[str, tuple[float, float, bool]]:
    """Each acceptance figure: (value, target, met)."""
    out = {}
    for label, (name, attr, target, op) in ACCEPTANCE.items():
        cls = metrics.classes.get(name)
        value = float("nan") if cls is None else float(getattr(cls, attr))
        met = value >= target if op == ">=" else value <= target
        out[label] = (value, target, bool(met))
    return out


def run(checkpoint: Path | None, config: ModelConfig, seeds: Sequence[int], device: torch.device,
        cache_root: Path | None, workers: int, with_aqr: bool) -> dict:
    """Evaluate and print; return everything as a JSON-ready dict."""
    cache = SampleCache(config, cache_root)
    cache.ensure(seeds, workers=workers)
    samples = [cache.load(s) for s in seeds]
    model = AqrCmt.from_checkpoint(checkpoint, config=config, device=device)
    start = time.perf_counter()
    detections = [detect(model, s) for s in samples]
    seconds = time.perf_counter() - start
    metrics = evaluate([frame_eval(s, d) for s, d in zip(samples, detections)])
    print(f"evaluate_rig: {checkpoint or 'RANDOM weights'} on {len(samples)} scenes (seeds {seeds[0]}..{seeds[-1]}), "
          f"{1e3 * seconds / len(samples):.0f} ms per frame on {device}")
    print(metrics.table())
    checks = acceptance(metrics)
    print("acceptance: " + ", ".join(f"{k} {v:.3f} {ACCEPTANCE[k][3]} {t}: {'met' if ok else 'NOT met'}"
                                     for k, (v, t, ok) in checks.items()))
    result = {"checkpoint": str(checkpoint), "config": config.name, "seeds": list(seeds),
              "metrics": metrics.to_dict(), "acceptance": {k: {"value": v, "target": t, "met": ok}
                                                           for k, (v, t, ok) in checks.items()}}
    if with_aqr:
        objects, all_queries = aqr_report(model, samples, detections)
        print(format_aqr_report(objects, all_queries))
        result["aqr"] = {"all_queries": all_queries, "objects": [o.__dict__ for o in objects]}
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: evaluate a checkpoint, print the tables, optionally write JSON."""
    parser = make_parser("aqr_evaluate_rig", __doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="the .safetensors/.pth to evaluate (omit: random weights)")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="model config name or YAML path")
    parser.add_argument("--seeds", default=f"{EVAL_SEEDS.start}-{EVAL_SEEDS.stop - 1}", help="held-out scene seeds")
    add_device_argument(parser)
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(), help="rendered-sample cache")
    parser.add_argument("--workers", type=int, default=2, help="processes rendering missing samples")
    parser.add_argument("--no-aqr-report", action="store_true", help="skip the AQR weight report (7x fewer runs)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        seeds = parse_seeds(args.seeds)
        result = run(args.checkpoint, config, seeds, resolve_device(args.device), args.cache_dir, args.workers,
                     not args.no_aqr_report)
    except (ConfigError, CheckpointError, ValueError, OSError) as exc:
        print(f"evaluate_rig: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
