"""The training and evaluation tools of the rig model: samples, augmentation, the training run, metrics glue."""

import json
import math

import numpy as np
import pytest
import torch

from aqr_ros.model import AqrCmt, load_config
from aqr_ros.model.checkpoint import read_checkpoint
from aqr_ros.model.detector import Detections
from aqr_ros.tools.evaluate_rig import match_objects, object_camera
from aqr_ros.tools.rig_dataset import (
    SampleCache,
    augment,
    key_time_of,
    normalised_images,
    parse_seeds,
    render_sample,
    transform_boxes_planar,
)
from aqr_ros.tools.rig_scenes import random_scene
from aqr_ros.tools.synthetic_rig import LIDAR_PERIOD, SyntheticRig
from aqr_ros.tools.train_rig import CyclicLr, TrainOptions, train

CONFIG = load_config("aqr_cmt_rig_small")


@pytest.fixture(scope="module")
def sample():
    return render_sample(5, CONFIG)


def test_parse_seeds():
    assert parse_seeds("0-3,7, 9-9") == [0, 1, 2, 3, 7, 9]
    with pytest.raises(ValueError, match="backwards"):
        parse_seeds("5-2")
    with pytest.raises(ValueError, match="no seeds"):
        parse_seeds(" , ")


def test_sample_is_the_rig_frame_in_the_model_frame(sample):
    t = sample.key_time
    assert t == key_time_of(5, CONFIG) and t >= CONFIG.lidar.num_sweeps * LIDAR_PERIOD
    assert round(t / LIDAR_PERIOD, 6) == round(t / LIDAR_PERIOD)
    rig = SyntheticRig(5, scene=random_scene(5))
    boxes, names = rig.ground_truth_boxes(t)
    # REP-103 lidar_top → nuScenes LIDAR_TOP axes: x_model = -y_rep, y_model = x_rep, yaw + 90°.
    np.testing.assert_allclose(sample.gt_boxes[:, 0], -boxes[:, 1], atol=1e-9)
    np.testing.assert_allclose(sample.gt_boxes[:, 1], boxes[:, 0], atol=1e-9)
    yaw_diff = np.angle(np.exp(1j * (sample.gt_boxes[:, 6] - boxes[:, 6] - math.pi / 2)))
    np.testing.assert_allclose(yaw_diff, 0.0, atol=1e-9)
    np.testing.assert_array_equal(sample.gt_boxes[:, 3:6], boxes[:, 3:6])
    assert [CONFIG.head.class_names[i] for i in sample.gt_labels] == list(names)
    near = np.hypot(boxes[:, 0], boxes[:, 1]) < 20
    assert near.any() and (sample.gt_num_points[near] > 0).mean() > 0.7
    # Points: key frame plus the earlier sweeps with their time lags, inside the point cloud range.
    lags = np.unique(np.round(sample.points[:, 4], 3))
    np.testing.assert_allclose(lags, LIDAR_PERIOD * np.arange(CONFIG.lidar.num_sweeps + 1), atol=1e-3)
    r = np.array(CONFIG.lidar.point_cloud_range)
    assert ((sample.points[:, :3] >= r[:3]) & (sample.points[:, :3] < r[3:])).all()
    assert sample.images.dtype == np.uint8 and sample.images.shape == (6, 3, *CONFIG.image.input_size)
    assert normalised_images(sample.images, CONFIG).abs().max() < 3.0


def test_augmentation_keeps_points_boxes_and_pixels_consistent(sample):
    angle = 0.3
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    A = np.diag([-1.0, 1.0]) @ rot  # a rotation and a mirror
    points, lidar2img, boxes = augment(sample, A)
    np.testing.assert_allclose(points[:, :2], sample.points[:, :2] @ A.T, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(points[:, 2:], sample.points[:, 2:])
    # Every camera still sees every point at the same pixel.
    hom = np.c_[sample.points[:200, :3], np.ones(200)]
    hom_aug = np.c_[points[:200, :3], np.ones(200)]
    for v in range(6):
        np.testing.assert_allclose(hom_aug @ lidar2img[v].T, hom @ sample.lidar2img[v].T, rtol=1e-5, atol=1e-3)
    # Box corners move with the points; the heading follows the mirror.
    np.testing.assert_allclose(boxes[:, :2], sample.gt_boxes[:, :2] @ A.T, atol=1e-9)
    heading = np.c_[np.cos(sample.gt_boxes[:, 6]), np.sin(sample.gt_boxes[:, 6])] @ A.T
    np.testing.assert_allclose(np.c_[np.cos(boxes[:, 6]), np.sin(boxes[:, 6])], heading, atol=1e-9)
    np.testing.assert_allclose(boxes[:, 7:9], sample.gt_boxes[:, 7:9] @ A.T, atol=1e-9)
    np.testing.assert_allclose(transform_boxes_planar(sample.gt_boxes, np.eye(2)), sample.gt_boxes, atol=1e-12)


def test_sample_cache_round_trip(tmp_path, sample):
    cache = SampleCache(CONFIG, tmp_path)
    calls = []
    cache.ensure([5], workers=1, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (1, 1) and cache.path(5).is_file()
    loaded = cache.load(5)
    for name in ("points", "images", "lidar2img", "gt_boxes", "gt_labels", "gt_num_points"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(sample, name))
    assert loaded.key_time == sample.key_time and loaded.seed == 5


def test_cyclic_lr_follows_cmt():
    lr = CyclicLr(1e-4, 1000)
    assert lr(0) == pytest.approx(1e-4)
    assert lr(400) == pytest.approx(6e-4)
    assert lr(1000) == pytest.approx(1e-8) and lr(999) < 2e-8
    assert max(lr(s) for s in range(1000)) == pytest.approx(6e-4)


def test_training_refuses_the_evaluation_seeds(tmp_path):
    with pytest.raises(ValueError, match="held-out"):
        train(TrainOptions(seeds="8990-9000", iterations=1), tmp_path / "m.safetensors", tmp_path / "work",
              tmp_path / "cache")


def test_training_run_exports_a_loadable_self_describing_file_and_resumes(tmp_path):
    options = TrainOptions(seeds="5-6", iterations=2, batch_size=2, device="cpu")
    out = tmp_path / "m.safetensors"
    summary = train(options, out, tmp_path / "work", tmp_path / "cache", workers=1, log_every=1, checkpoint_every=1)
    model = AqrCmt.from_checkpoint(out)  # the file carries its config
    assert not model.training and model.config == load_config("aqr_cmt_rig_small")
    meta = read_checkpoint(out).meta
    assert meta["training"]["options"]["iterations"] == 2
    assert "--iterations 2 --batch-size 2" in summary["command"]
    log = [json.loads(line) for line in (tmp_path / "work" / "train_log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [1, 2] and all(math.isfinite(r["loss"]) for r in log)
    first = {k: v.clone() for k, v in model.state_dict().items()}
    # Resuming a finished run changes nothing; other options are refused.
    train(options, out, tmp_path / "work", tmp_path / "cache", resume=True)
    again = AqrCmt.from_checkpoint(out, config="aqr_cmt_rig_small").state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    with pytest.raises(ValueError, match="other options"):
        train(TrainOptions(seeds="5-6", iterations=2, batch_size=1), out, tmp_path / "work", tmp_path / "cache",
              resume=True)


def _detections(boxes, labels, scores, queries):
    q = 4
    return Detections(boxes=torch.tensor(np.array(boxes), dtype=torch.float32), scores=torch.tensor(scores),
                      labels=torch.tensor(labels), query_index=torch.tensor(queries),
                      lidar_weights=torch.full((q,), 0.5), camera_weights=torch.full((q,), 0.5),
                      bev_weight_map=torch.zeros(2, 2), camera_weight_map=torch.zeros(6, 2, 2),
                      class_names=CONFIG.head.class_names)


def test_match_objects_takes_same_class_within_2_m_by_score(sample):
    gt = sample.gt_boxes
    eligible = np.flatnonzero((sample.gt_num_points > 0) & (np.hypot(gt[:, 0], gt[:, 1]) < 25))
    a, b = eligible[:2]
    boxes = [gt[a] + [1.5, 0, 0, 0, 0, 0, 0, 0, 0], gt[a] + [0.5, 0, 0, 0, 0, 0, 0, 0, 0], gt[b] + [2.5, 0, 0, 0, 0, 0, 0, 0, 0]]
    labels = [sample.gt_labels[a], sample.gt_labels[a], sample.gt_labels[b]]
    found = match_objects(sample, _detections(boxes, labels, [0.9, 0.5, 0.8], [3, 1, 2]))
    assert found == {int(a): 3}  # the higher score wins; b's detection is 2.5 m off
    assert object_camera(sample, gt[a], CONFIG.image.input_size) in range(6)
