"""CMT transformer, task head and the whole CmtHead: checkpoint names, attention equivalences, shapes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from aqr_ros.model.config import load_config
from aqr_ros.model.head import CmtHead, HeadOutput
from aqr_ros.model.task_head import SeparateTaskHead
from aqr_ros.model.transformer import CmtTransformer
from conftest import TINY_CONFIG

MANIFEST = Path(__file__).resolve().parent / "data" / "state-dict-manifest.json"
HEAD_PREFIX = "pts_bbox_head."


def _manifest(prefix: str) -> dict[str, list[int]]:
    entries = json.loads(MANIFEST.read_text())
    return {k[len(prefix):]: v for k, v in entries.items() if k.startswith(prefix)}


def _shapes(module: nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def test_transformer_keys_and_shapes_match_manifest() -> None:
    assert _shapes(CmtTransformer(256, 8, 1024, 6)) == _manifest(HEAD_PREFIX + "transformer.")


def test_task_head_keys_and_shapes_match_manifest() -> None:
    head = nn.ModuleList([SeparateTaskHead(256, num_classes=10, groups=6, head_conv=64)])
    assert _shapes(head) == _manifest(HEAD_PREFIX + "task_heads.")


def test_cmt_head_keys_and_shapes_match_manifest() -> None:
    expected = _manifest(HEAD_PREFIX)
    got = _shapes(CmtHead(load_config("cmt_aqr_voxel0100_r50_800x320")))
    assert got == expected


def _reference_decoder(model: CmtTransformer, query_pos: torch.Tensor, memory: torch.Tensor,
                       pos: torch.Tensor) -> torch.Tensor:
    """The mmcv layer sequence written out with torch's own attention modules."""
    query = torch.zeros_like(query_pos)
    outputs = []
    for layer in model.decoder.layers:
        self_attn = layer.attentions[0].attn
        cross_attn = layer.attentions[1].attn
        q = query + query_pos
        query = layer.norms[0](query + self_attn(q, q, query, need_weights=False)[0])
        query = layer.norms[1](query + cross_attn(query + query_pos, memory + pos, memory, need_weights=False)[0])
        ffn = layer.ffns[0].layers
        query = layer.norms[2](query + ffn[1](torch.relu(ffn[0][0](query))))
        outputs.append(model.decoder.post_norm(query))
    return torch.stack(outputs)


def test_transformer_equals_layerwise_reference() -> None:
    torch.manual_seed(1)
    model = CmtTransformer(embed_dims=32, num_heads=4, ffn_dim=64, num_layers=3).eval()
    for name, p in model.named_parameters():
        if name.endswith("bias") or "norms" in name or "post_norm" in name:
            nn.init.normal_(p, std=0.5)
    query_pos, memory, pos = torch.randn(2, 5, 32), torch.randn(2, 40, 32), torch.randn(2, 40, 32)
    with torch.no_grad():
        out = model(query_pos, memory, pos)
        assert out.shape == (3, 2, 5, 32)
        torch.testing.assert_close(out, _reference_decoder(model, query_pos, memory, pos), rtol=1e-5, atol=1e-5)
        # intermediate outputs differ per layer (post_norm on each layer's own output)
        assert not torch.allclose(out[0], out[-1])


def test_transformer_key_mask_excludes_tokens() -> None:
    torch.manual_seed(2)
    model = CmtTransformer(embed_dims=32, num_heads=4, ffn_dim=64, num_layers=2).eval()
    query_pos, memory, pos = torch.randn(1, 5, 32), torch.randn(1, 40, 32), torch.randn(1, 40, 32)
    key_mask = torch.ones(1, 40, dtype=torch.bool)
    key_mask[:, 25:] = False
    with torch.no_grad():
        masked = model(query_pos, memory, pos, key_mask)
        subset = model(query_pos, memory[:, :25], pos[:, :25])
        torch.testing.assert_close(masked, subset, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(model(query_pos, memory, pos), subset, atol=1e-4)


def test_task_head_last_layer_equals_grouped_computation() -> None:
    torch.manual_seed(3)
    head = SeparateTaskHead(256, num_classes=10, groups=6, head_conv=64).eval()
    for name, p in head.named_parameters():
        if ".1." in name:  # GroupLayerNorm affine: make it non-trivial
            nn.init.normal_(p)
    x = torch.randn(6, 2, 11, 256)
    with torch.no_grad():
        full = head(x)
        assert {k: tuple(v.shape) for k, v in full.items()} == {
            "center": (6, 2, 11, 2), "height": (6, 2, 11, 1), "dim": (6, 2, 11, 3), "rot": (6, 2, 11, 2),
            "vel": (6, 2, 11, 2), "cls_logits": (6, 2, 11, 10)}
        for layer in (0, 3, 5):
            single = head.forward_layer(x[layer], layer)
            for name, value in full.items():
                torch.testing.assert_close(single[name], value[layer], rtol=1e-5, atol=1e-5)
        # groups are independent: layer 5's outputs ignore the other layers' inputs
        x2 = x.clone()
        x2[:5] = torch.randn(5, 2, 11, 256)
        torch.testing.assert_close(head(x2)["cls_logits"][5], full["cls_logits"][5])
        torch.testing.assert_close(head.forward_layer(x[5])["dim"], full["dim"][5], rtol=1e-5, atol=1e-5)


def test_group_layer_norm_normalizes_each_group() -> None:
    head = SeparateTaskHead(8, num_classes=2, groups=3, head_conv=4)
    norm = head.get_submodule("center")[1]
    x = torch.randn(2, 12, 5) * 3 + 1
    y = norm(x).view(2, 3, 4, 5)
    torch.testing.assert_close(y.mean(dim=2), torch.zeros(2, 3, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=2, unbiased=False), torch.ones(2, 3, 5), atol=1e-4, rtol=0)


def _rig_lidar2img(batch: int, views: int, input_size: tuple[int, int]) -> torch.Tensor:
    """Pinhole cameras at the origin looking out at yaw 2*pi*v/V (LiDAR x forward, z up)."""
    h, w = input_size
    k = torch.tensor([[w / 2.0, 0, w / 2.0, 0], [0, w / 2.0, h / 2.0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    mats = []
    for v in range(views):
        yaw = torch.tensor(2 * torch.pi * v / views)
        c, s = torch.cos(yaw), torch.sin(yaw)
        # rows: camera x (right), y (down), z (forward) expressed in LiDAR coordinates
        rot = torch.stack([torch.stack([s, -c, torch.tensor(0.0)]), torch.tensor([0.0, 0.0, -1.0]),
                           torch.stack([c, s, torch.tensor(0.0)])])
        l2c = torch.eye(4)
        l2c[:3, :3] = rot
        mats.append(k @ l2c)
    return torch.stack(mats)[None].repeat(batch, 1, 1, 1)


TinyHead = tuple[CmtHead, dict[str, torch.Tensor], HeadOutput]


@pytest.fixture(scope="module")
def tiny_head() -> TinyHead:
    """The tiny-config head, inputs with all cameras present, and its output for them."""
    torch.manual_seed(4)
    tiny = load_config(TINY_CONFIG)
    # 160x320 images give a 10x20 camera feature map, wide enough for the 9x9 AQR camera window
    cfg = dataclasses.replace(tiny, image=dataclasses.replace(tiny.image, input_size=(160, 320)))
    head = CmtHead(cfg).eval()
    batch, views = 2, cfg.image.num_views
    h, w = cfg.image.feature_shape
    inputs = {
        "x_bev": torch.randn(batch, 512, *cfg.lidar.bev_shape),
        "x_img": torch.randn(batch * views, cfg.head.hidden_dim, h, w),
        "lidar2img": _rig_lidar2img(batch, views, cfg.image.input_size),
        "camera_valid": torch.ones(batch, views, dtype=torch.bool),
    }
    with torch.no_grad():
        return head, inputs, head(**inputs)


def test_cmt_head_forward_contract(tiny_head: TinyHead) -> None:
    head, inputs, out = tiny_head
    cfg = head.cfg
    batch, views = inputs["camera_valid"].shape
    q = cfg.head.num_query
    expected = {"center": 2, "height": 1, "dim": 3, "rot": 2, "vel": 2, "cls_logits": len(cfg.head.class_names)}
    assert {k: tuple(v.shape) for k, v in out.predictions.items()} == {k: (batch, q, c) for k, c in expected.items()}
    assert out.lidar_weights.shape == out.camera_weights.shape == (batch, q)
    assert out.bev_weight_map.shape == (batch, *cfg.lidar.bev_shape)
    assert out.camera_weight_map.shape == (batch, views, *cfg.image.feature_shape)
    for value in (*out.predictions.values(), out.lidar_weights, out.camera_weights, out.bev_weight_map,
                  out.camera_weight_map):
        assert torch.isfinite(value).all()
    # centre and height are in metres inside the point-cloud range
    r = cfg.lidar.point_cloud_range
    assert out.predictions["center"][..., 0].min() >= r[0] and out.predictions["center"][..., 0].max() <= r[3]
    assert out.predictions["height"].min() >= r[2] and out.predictions["height"].max() <= r[5]
    assert ((out.lidar_weights > 0) & (out.lidar_weights < 1)).all()


def test_cmt_head_ignores_absent_camera_features(tiny_head: TinyHead) -> None:
    head, inputs, all_valid = tiny_head
    valid = inputs["camera_valid"].clone()
    valid[0, 1] = False
    valid[1, 4] = False
    views = valid.shape[1]
    x_img = inputs["x_img"].clone()
    lidar2img = inputs["lidar2img"].clone()
    with torch.no_grad():
        base = head(inputs["x_bev"], x_img, lidar2img, valid)
        # garbage features and a singular matrix for the absent views change nothing
        x_img[0 * views + 1] = torch.randn_like(x_img[0]) * 1e3
        x_img[1 * views + 4] = float("nan")
        lidar2img[0, 1] = 0.0
        again = head(inputs["x_bev"], x_img, lidar2img, valid)
    for name, value in base.predictions.items():
        torch.testing.assert_close(again.predictions[name], value)
        assert torch.isfinite(value).all()
    torch.testing.assert_close(again.camera_weight_map, base.camera_weight_map)
    assert not torch.allclose(all_valid.predictions["cls_logits"], base.predictions["cls_logits"])
