"""CMT's training losses, denoising queries and the training forward of AqrCmt (aqr_ros.model.losses/denoising)."""

import math

import numpy as np
import pytest
import torch

from aqr_ros.model import AqrCmt, load_config
from aqr_ros.model.denoising import denoising_attention_mask, dn_class_normaliser, make_denoising_queries
from aqr_ros.model.losses import (
    CmtLoss,
    LossConfig,
    encode_boxes,
    focal_cost,
    gravity_centre_boxes,
    hungarian_match,
    prediction_code,
    sigmoid_focal_loss,
)
from aqr_ros.pipeline.calibration import axes_to_model
from aqr_ros.tools.rig_inputs import RIG_LIDAR_AXES, rig_model_input
from aqr_ros.tools.synthetic_rig import LIDAR_PERIOD, SyntheticRig
from aqr_ros.tools.train_rig import prepare_for_training

PC_RANGE = (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)


def test_denoising_mask_separates_groups_and_hides_them_from_the_learned_queries():
    mask = denoising_attention_mask(groups=3, group_size=2, num_query=4)
    assert mask.shape == (10, 10)
    dn, learned = slice(0, 6), slice(6, 10)
    assert mask[learned, dn].all() and not mask[learned, learned].any()
    assert not mask[dn, learned].any()  # DN queries may look at the learned ones
    for g in range(3):
        own = slice(2 * g, 2 * g + 2)
        assert not mask[own, own].any()
        others = [i for i in range(6) if not 2 * g <= i < 2 * g + 2]
        assert mask[own][:, others].all()


def test_denoising_queries_sit_near_their_boxes_and_pad_short_samples():
    boxes = [torch.tensor([[10.0, -4.0, -1.0, 4.0, 2.0, 1.6, 0.3, 1.0, 0.0],
                           [-20.0, 5.0, -1.0, 0.8, 0.6, 1.8, 0.0, 0.0, 0.0]]),
             torch.tensor([[0.0, 30.0, -1.2, 0.4, 0.4, 0.7, 0.0, 0.0, 0.0]])]
    labels = [torch.tensor([0, 8]), torch.tensor([9])]
    dn = make_denoising_queries(boxes, labels, num_query=10, num_classes=10, point_cloud_range=PC_RANGE,
                                generator=torch.Generator().manual_seed(0))
    assert dn.groups == 5  # min(10, 10 // 2)
    assert dn.reference.shape == (2, 10, 3) and dn.attn_mask.shape == (20, 20)
    assert len(dn.labels) == 3 * 5
    lo, hi = torch.tensor(PC_RANGE[:3]), torch.tensor(PC_RANGE[3:])
    centres = dn.reference[dn.batch_index, dn.query_index] * (hi - lo) + lo
    # Within half the box size of the true centre on every axis.
    assert ((centres - dn.boxes[:, :3]).abs() <= dn.boxes[:, 3:6] / 2 + 1e-4).all()
    # Sample 1 has one box: its second slot of every group stays empty.
    assert (dn.reference[1, 1::2] == 0).all()
    noisy = dn.labels == 10
    assert ((dn.labels == torch.tensor([0, 8, 9]).repeat(5)) | noisy).all()
    assert make_denoising_queries([torch.zeros(0, 9)], [torch.zeros(0, dtype=torch.long)], 10, 10, PC_RANGE) is None
    assert dn_class_normaliser(100, 0.75) == pytest.approx(100 * math.pi / 6 * 0.75 ** 3)


def test_box_code_is_what_the_head_branches_predict():
    box = torch.tensor([[1.0, 2.0, -1.0, 4.0, 2.0, 1.5, 0.5, 3.0, -1.0]])
    gc = gravity_centre_boxes(box)
    assert gc[0, 2] == pytest.approx(-0.25)
    code = encode_boxes(gc)[0]
    expected = [1.0, 2.0, math.log(4.0), math.log(2.0), -0.25, math.log(1.5), math.sin(0.5), math.cos(0.5), 3.0, -1.0]
    np.testing.assert_allclose(code.numpy(), expected, rtol=1e-6)
    # The decoder reads the same slots back: x, y, dx = e^s2, dy = e^s3, z = s4, dz = e^s5, yaw = atan2(s6, s7).
    from aqr_ros.model.decode import slots_to_boxes
    np.testing.assert_allclose(slots_to_boxes(code[None])[0].numpy(), gc[0].numpy(), rtol=1e-6, atol=1e-6)
    preds = {"center": code[None, :2], "height": code[None, 2:3], "dim": code[None, 3:6], "rot": code[None, 6:8],
             "vel": code[None, 8:10]}
    torch.testing.assert_close(prediction_code(preds)[0], code)


def test_focal_loss_and_cost_follow_the_formula():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 1.0]])
    labels = torch.tensor([1, 3])  # the second is "no object"
    p = logits.sigmoid()
    target = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    alpha, gamma = 0.25, 2.0
    pos = -alpha * (1 - p) ** gamma * torch.log(p)
    neg = -(1 - alpha) * p ** gamma * torch.log(1 - p)
    expected = (target * pos + (1 - target) * neg).sum()
    assert sigmoid_focal_loss(logits, labels, alpha, gamma).item() == pytest.approx(expected.item(), rel=1e-5)
    cost = focal_cost(logits, torch.tensor([0, 2]), alpha, gamma)
    torch.testing.assert_close(cost, (pos - neg)[:, [0, 2]], rtol=1e-5, atol=1e-6)


def test_hungarian_match_recovers_the_true_assignment():
    gt = encode_boxes(torch.tensor([[5.0, 5.0, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0],
                                    [-10.0, 3.0, 0.0, 0.7, 0.7, 1.8, 1.0, 0.0, 0.0]]))
    code = torch.zeros(5, 10)
    code[3], code[1] = gt[0] + 0.05, gt[1] - 0.05
    code[0, :2] = torch.tensor([30.0, 30.0])
    logits = torch.full((5, 10), -4.0)
    logits[3, 0], logits[1, 8] = 3.0, 3.0
    rows, cols = hungarian_match(code, logits, gt, torch.tensor([0, 8]), LossConfig())
    assert dict(zip(rows.tolist(), cols.tolist())) == {3: 0, 1: 1}


@pytest.fixture(scope="module")
def rig_batch():
    """One template-rig frame through the node's input path, with its ground truth in the model frame."""
    cfg = load_config("aqr_cmt_rig_small")
    rig = SyntheticRig(seed=1)
    frame = cfg.lidar.num_sweeps + 2
    model_input = rig_model_input(rig, cfg, frame)
    boxes, names = rig.ground_truth_boxes(frame * LIDAR_PERIOD)
    R = axes_to_model(RIG_LIDAR_AXES)[:2, :2]
    boxes[:, :2] = boxes[:, :2] @ R.T
    boxes[:, 7:9] = boxes[:, 7:9] @ R.T
    boxes[:, 6] += math.pi / 2
    labels = torch.tensor([cfg.head.class_names.index(n) for n in names])
    gt = gravity_centre_boxes(torch.from_numpy(boxes).float())
    return cfg, model_input, gt, labels


def _losses(model, model_input, gt, labels, generator):
    cfg = model.config
    dn = make_denoising_queries([gt], [labels], cfg.head.num_query, 10, cfg.lidar.point_cloud_range,
                                generator=generator)
    out = model.forward_train([model_input.points], model_input.images, model_input.lidar2img[None],
                              torch.ones(1, 6, dtype=torch.bool, device=model_input.images.device), dn.reference,
                              dn.attn_mask)
    layers = cfg.head.num_decoder_layers
    assert out.predictions["cls_logits"].shape == (layers, 1, dn.num_queries + cfg.head.num_query, 10)
    return CmtLoss(10)(out.predictions, [gt], [labels], dn)


def test_backward_reaches_the_aqr_weight_generator(rig_batch):
    cfg, model_input, gt, labels = rig_batch
    torch.manual_seed(0)
    model = prepare_for_training(AqrCmt(cfg))
    losses = _losses(model, model_input, gt, labels, torch.Generator().manual_seed(0))
    assert set(losses) >= {"loss", "loss_cls", "loss_bbox", "dn_loss_cls", "dn_loss_bbox", "d0.loss_cls"}
    losses["loss"].backward()
    generator = model.pts_bbox_head.aqr_weight_generator
    trained = {name: p.grad for name, p in generator.named_parameters() if "type_embed" not in name}
    assert trained and all(g is not None and g.abs().sum() > 0 for g in trained.values()), (
        [n for n, g in trained.items() if g is None or g.abs().sum() == 0])

    # The research code's renderer read each weight with .item(): with detached weights nothing reaches AQR.
    model.zero_grad(set_to_none=True)
    renderer = model.pts_bbox_head.weight_renderer
    original = renderer.forward
    renderer.forward = lambda lidar_w, camera_w, proj: original(lidar_w.detach(), camera_w.detach(), proj)
    _losses(model, model_input, gt, labels, torch.Generator().manual_seed(0))["loss"].backward()
    assert all(p.grad is None for name, p in generator.named_parameters())


def test_loss_falls_on_a_fixed_batch(rig_batch):
    cfg, model_input, gt, labels = rig_batch
    torch.manual_seed(0)
    model = prepare_for_training(AqrCmt(cfg))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    history = []
    for _ in range(16):
        losses = _losses(model, model_input, gt, labels, torch.Generator().manual_seed(0))  # same DN noise
        optimizer.zero_grad()
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 35.0)
        optimizer.step()
        history.append(losses["loss"].item())
    assert np.isfinite(history).all()
    assert np.mean(history[-3:]) < 0.75 * np.mean(history[:3]), history


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_step_and_node_input_path_on_cuda(rig_batch):
    cfg, _, gt, labels = rig_batch
    # The node's input path on the GPU (pinned uploads of images and the float64 lidar2img).
    model_input = rig_model_input(SyntheticRig(seed=1), cfg, cfg.lidar.num_sweeps + 2, device="cuda")
    torch.manual_seed(0)
    model = prepare_for_training(AqrCmt(cfg)).to("cuda")
    losses = _losses(model, model_input, gt.cuda(), labels.cuda(), torch.Generator(device="cuda").manual_seed(0))
    losses["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.pts_bbox_head.aqr_weight_generator.weight_predictor.weight.grad.abs().sum() > 0
