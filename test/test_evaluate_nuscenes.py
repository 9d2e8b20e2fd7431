"""nuScenes results documents and their evaluation by the real devkit (in its own environment) on the rig export."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from aqr_ros.pipeline.boxes import RosBoxes
from aqr_ros.pipeline.rotations import matrix_from_quaternion, quaternion_from_yaw
from aqr_ros.tools.evaluate_nuscenes import EvaluationError, evaluate, main
from aqr_ros.tools.nuscenes_export import KEYFRAME_EVERY
from aqr_ros.tools.nuscenes_results import (attribute_name, detection_results, ground_truth_results,
                                           results_document)
from aqr_ros.tools.synthetic_rig import LIDAR_PERIOD

#: Classes the synthetic rig has (the devkit scores ten; the other three have no ground truth here).
RIG_CLASSES = {"car", "truck", "bus", "bicycle", "barrier", "traffic_cone", "pedestrian"}


def _boxes(center, yaw, size, velocity) -> RosBoxes:
    yaw = np.asarray(yaw, dtype=np.float64)
    velocity = np.column_stack([np.asarray(velocity, dtype=np.float64), np.zeros(len(yaw))])
    return RosBoxes(np.asarray(center, dtype=np.float64), quaternion_from_yaw(yaw), yaw,
                    np.asarray(size, dtype=np.float64), velocity)


def _write(tmp_path, name: str, per_sample: dict) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(results_document(per_sample)))
    return path


def test_detection_results_are_global_boxes_in_nuscenes_layout():
    yaw_lidar, turn = 0.3, math.pi / 2
    boxes = _boxes([[10.0, 2.0, 1.0]], [yaw_lidar], [[4.5, 1.9, 1.6]], [[3.0, 0.0]])
    T = np.eye(4)
    T[:3, :3] = matrix_from_quaternion((0.0, 0.0, math.sin(turn / 2), math.cos(turn / 2)))
    T[:3, 3] = [100.0, 200.0, 0.5]
    (entry,) = detection_results(boxes, ["car"], [0.8], T, sample_token="s0")
    np.testing.assert_allclose(entry["translation"], [100.0 - 2.0, 200.0 + 10.0, 1.5])
    assert entry["size"] == [1.9, 4.5, 1.6]  # w, l, h
    w, x, y, z = entry["rotation"]
    np.testing.assert_allclose([w, x, y, z], [math.cos((yaw_lidar + turn) / 2), 0, 0, math.sin((yaw_lidar + turn) / 2)],
                               atol=1e-12)
    np.testing.assert_allclose(entry["velocity"], [0.0, 3.0], atol=1e-12)
    assert entry["detection_name"] == "car" and entry["detection_score"] == 0.8
    assert entry["attribute_name"] == "vehicle.moving" and entry["sample_token"] == "s0"
    with pytest.raises(ValueError, match="no nuScenes detection classes"):
        detection_results(boxes, ["ambulance"], [0.5], T)
    with pytest.raises(ValueError, match="one each per box"):
        detection_results(boxes, ["car", "car"], [0.5], T)


@pytest.mark.parametrize("name, speed, expected", [
    ("car", 1.0, "vehicle.moving"), ("car", 0.1, "vehicle.parked"), ("truck", 0.0, "vehicle.parked"),
    ("bus", 0.1, "vehicle.stopped"), ("bus", 5.0, "vehicle.moving"), ("bicycle", 2.0, "cycle.with_rider"),
    ("motorcycle", 0.0, "cycle.without_rider"), ("pedestrian", 0.1, "pedestrian.standing"),
    ("pedestrian", 1.2, "pedestrian.moving"), ("traffic_cone", 0.0, ""), ("barrier", 3.0, ""),
])
def test_attribute_follows_mmdet3d(name, speed, expected):
    assert attribute_name(name, (speed * 0.6, speed * 0.8)) == expected


def test_results_document_meta_and_sample_tokens():
    document = results_document({"a": [{"detection_name": "car", "sample_token": ""}], "b": []},
                                {"use_camera": False})
    assert document["meta"] == {"use_camera": False, "use_lidar": True, "use_radar": False, "use_map": False,
                                "use_external": False}
    assert document["results"]["a"][0]["sample_token"] == "a" and document["results"]["b"] == []
    with pytest.raises(ValueError, match="unknown meta"):
        results_document({}, {"use_sonar": True})


def _rig_predictions(export) -> dict[str, list[dict]]:
    """The rig's own boxes in the LiDAR frame at every key frame, through detection_results into the global frame
    (what the node's perfect output would give); boxes without LiDAR points, which the devkit drops from the
    ground truth, are left out."""
    tables = {name: json.loads((export.dataroot / export.version / f"{name}.json").read_text())
              for name in ("sample_annotation", "sample", "scene")}
    points = {(a["sample_token"], a["instance_token"]): a["num_lidar_pts"] for a in tables["sample_annotation"]}
    instance = {(scene, m): token for token, (scene, m) in export.instances.items()}
    per_sample = {}
    for scene in export.scenes:
        rig = export.synthetic_rig(scene)
        for key, token in enumerate(export.sample_tokens[scene]):
            t = key * KEYFRAME_EVERY * LIDAR_PERIOD
            gt, names = rig.ground_truth_boxes(t)
            keep = [m for m in range(len(names)) if points[token, instance[scene, m]] > 0]
            gt = gt[keep]
            centre = gt[:, :3] + np.column_stack([np.zeros((len(gt), 2)), gt[:, 5] / 2])
            boxes = _boxes(centre, gt[:, 6], gt[:, 3:6], gt[:, 7:9])
            T_global_lidar = rig.ego_pose(t) @ rig.rig.T_base_lidar
            per_sample[token] = detection_results(boxes, [names[m] for m in keep], np.linspace(0.9, 0.5, len(keep)),
                                                  T_global_lidar)
    return per_sample


def test_rig_boxes_through_detection_results_score_perfectly(rig_nuscenes, devkit_python, tmp_path, capsys):
    results = _write(tmp_path, "rig.json", _rig_predictions(rig_nuscenes))
    assert main(["--dataroot", str(rig_nuscenes.dataroot), "--version", "v1.0-mini", "--eval-set", "mini_val",
                 "--results", str(results), "--out", str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "eval" / "metrics_summary.json").read_text())
    present = {name for name, n in json.loads((tmp_path / "eval" / "gt_boxes_per_class.json").read_text()).items()
               if n > 0}
    assert {"car", "pedestrian"} <= present <= RIG_CLASSES
    for name in present:
        assert summary["mean_dist_aps"][name] == pytest.approx(1.0)
        errors = summary["label_tp_errors"][name]
        for key in ("trans_err", "scale_err", "orient_err", "vel_err"):
            assert math.isnan(errors[key]) or errors[key] < 1e-3, (name, key, errors[key])
    # The devkit's mAP averages its ten classes; the rig's absent classes score 0 there.
    assert summary["mean_ap"] == pytest.approx(len(present) / 10)
    assert summary["nd_score"] > 0.6
    assert f"mAP: {summary['mean_ap']:.4f}" in printed and f"NDS: {summary['nd_score']:.4f}" in printed
    assert f"mAP over the {len(present)} classes with ground truth: 1.0000" in printed
    assert "mATE" in printed and "traffic_cone" in printed


def test_ground_truth_as_predictions_and_shifted_by_5m(rig_nuscenes, devkit_python, tmp_path):
    truth = ground_truth_results(rig_nuscenes.dataroot, rig_nuscenes.version)
    perfect = evaluate(rig_nuscenes.dataroot, "v1.0-mini", "mini_val", _write(tmp_path, "gt.json", truth),
                       tmp_path / "gt")
    present = [name for name, n in perfect["gt_boxes_per_class"].items() if n > 0]
    assert len(present) >= 4
    assert all(perfect["mean_dist_aps"][name] == pytest.approx(1.0) for name in present)
    assert perfect["mean_ap"] == pytest.approx(len(present) / 10)
    for name in present:
        errors = [e for e in perfect["label_tp_errors"][name].values() if not math.isnan(e)]
        assert max(errors) < 1e-6, (name, perfect["label_tp_errors"][name])
    # NDS is capped by the three devkit classes the rig lacks (AP 0, TP errors 1).
    assert perfect["nd_score"] > 0.6
    shifted = {token: [{**box, "translation": [box["translation"][0] + 5.0, *box["translation"][1:]]}
                       for box in boxes] for token, boxes in truth.items()}
    far = evaluate(rig_nuscenes.dataroot, "v1.0-mini", "mini_val", _write(tmp_path, "shifted.json", shifted),
                   tmp_path / "shifted")
    assert far["mean_ap"] < 0.05


def test_missing_samples_and_unknown_classes_are_named(rig_nuscenes, devkit_python, tmp_path):
    truth = ground_truth_results(rig_nuscenes.dataroot, rig_nuscenes.version)
    dropped = sorted(truth)[0]
    partial = {token: boxes for token, boxes in truth.items() if token != dropped}
    with pytest.raises(EvaluationError, match=f"misses 1 of the 6 samples of split mini_val .*{dropped}"):
        evaluate(rig_nuscenes.dataroot, "v1.0-mini", "mini_val", _write(tmp_path, "partial.json", partial),
                 tmp_path / "partial")
    token = next(t for t, boxes in truth.items() if boxes)
    renamed = {**truth, token: [{**truth[token][0], "detection_name": "ambulance"}, *truth[token][1:]]}
    with pytest.raises(EvaluationError, match=f"box 0 of sample {token} names an unknown class 'ambulance'"):
        evaluate(rig_nuscenes.dataroot, "v1.0-mini", "mini_val", _write(tmp_path, "renamed.json", renamed),
                 tmp_path / "renamed")


def test_missing_devkit_environment_names_the_setup_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AQR_EVAL_VENV", str(tmp_path / "nowhere"))
    results = _write(tmp_path, "r.json", {})
    assert main(["--dataroot", str(tmp_path), "--results", str(results), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "no nuScenes devkit environment" in err and "scripts/setup.sh" in err and "nowhere" in err
    # This project's own environment has no devkit: named as a broken devkit environment.
    monkeypatch.setenv("AQR_EVAL_VENV", sys.prefix)
    with pytest.raises(EvaluationError, match="cannot import nuscenes.eval.detection .*No module named 'nuscenes'"
                                              ".*scripts/setup.sh"):
        evaluate(tmp_path, "v1.0-mini", "mini_val", results, tmp_path / "o")


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: v1.0-mini)" in text and "(default: mini_val)" in text
