"""SECOND / SECONDFPN and ResNet-50 / CPFPN: checkpoint names, shapes, BN handling and hand-computed outputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aqr_ros.model.bev_backbone import Second, SecondFpn
from aqr_ros.model.image_backbone import CpFpn, ResNet, resnet50
from checkpoint_factory import load_manifest


@pytest.fixture(scope="module")
def manifest() -> dict[str, tuple[int, ...]]:
    return load_manifest()


def _randomize_bn(module: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial affine parameters and running statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen))
                m.running_mean.copy_(torch.randn(n, generator=gen))
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)


@pytest.mark.parametrize(
    ("prefix", "build"),
    [("pts_backbone.", Second), ("pts_neck.", SecondFpn), ("img_backbone.", resnet50), ("img_neck.", CpFpn)],
)
def test_state_dict_equals_manifest(manifest, prefix, build) -> None:
    expected = {k[len(prefix):]: shape for k, shape in manifest.items() if k.startswith(prefix)}
    got = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    assert list(got) == list(expected)
    assert got == expected


def test_second_structure_and_bn_settings() -> None:
    second = Second()
    for block in second.blocks:
        assert len(block) == 18
        convs = [i for i, m in enumerate(block) if isinstance(m, nn.Conv2d)]
        bns = [m for m in block if isinstance(m, nn.BatchNorm2d)]
        assert convs == [0, 3, 6, 9, 12, 15]
        assert all(block[i].bias is None and block[i].kernel_size == (3, 3) for i in convs)
        assert all(bn.eps == 1e-3 and bn.momentum == 0.01 for bn in bns)
    assert second.blocks[0][0].stride == (1, 1)
    assert second.blocks[1][0].stride == (2, 2)
    assert all(second.blocks[1][i].stride == (1, 1) for i in (3, 6, 9, 12, 15))


def test_second_and_fpn_shapes() -> None:
    torch.manual_seed(0)
    second, fpn = Second().eval(), SecondFpn().eval()
    with torch.no_grad():
        x0, x1 = second(torch.randn(2, 256, 16, 24))
        out = fpn((x0, x1))
    assert x0.shape == (2, 128, 16, 24)
    assert x1.shape == (2, 256, 8, 12)
    assert out.shape == (2, 512, 16, 24)


def _bn_eval(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return x * scale[:, None, None] + (bn.bias - bn.running_mean * scale)[:, None, None]


def test_fpn_is_concat_of_deblocks_by_hand() -> None:
    torch.manual_seed(1)
    fpn = SecondFpn(in_channels=(3, 4), out_channels=(5, 6), upsample_strides=(1, 2)).eval()
    _randomize_bn(fpn)
    x0, x1 = torch.randn(1, 3, 4, 6), torch.randn(1, 4, 2, 3)
    with torch.no_grad():
        out = fpn((x0, x1))
        conv0 = fpn.deblocks[0][0].weight[:, :, 0, 0]                    # [out, in]
        y0 = torch.einsum("oc,bchw->bohw", conv0, x0)
        deconv = fpn.deblocks[1][0].weight                                # [in, out, 2, 2]
        # Transposed conv k=2, s=2: output pixel (2i + p, 2j + q) = sum_c x[c, i, j] * W[c, o, p, q].
        y1 = torch.einsum("ncij,copq->noipjq", x1, deconv).reshape(1, 6, 4, 6)
        expected = torch.cat([
            torch.relu(_bn_eval(y0, fpn.deblocks[0][1])),
            torch.relu(_bn_eval(y1, fpn.deblocks[1][1])),
        ], dim=1)
    assert out.shape == (1, 11, 4, 6)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_resnet_structure() -> None:
    net = resnet50()
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    first = net.layer2[0]
    assert first.conv1.stride == (1, 1) and first.conv2.stride == (2, 2)   # stride on the 3x3 (pytorch style)
    assert first.downsample[0].stride == (2, 2)
    assert all(m.eps == 1e-5 for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert not any(isinstance(m, nn.Conv2d) and m.bias is not None for m in net.modules())


def test_resnet_bn_stays_eval_after_train() -> None:
    torch.manual_seed(2)
    net = resnet50().train()
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert net.training and len(bns) == 53
    assert not any(bn.training for bn in bns)
    before = net.layer1[0].bn1.running_mean.clone()
    with torch.no_grad():
        net(torch.randn(2, 3, 64, 64))
    assert torch.equal(net.layer1[0].bn1.running_mean, before)
    assert all(bn.training for bn in ResNet(50, norm_eval=False).train().modules() if isinstance(bn, nn.BatchNorm2d))


def test_resnet_and_neck_output_shapes() -> None:
    torch.manual_seed(3)
    net, neck = resnet50().eval(), CpFpn().eval()
    _randomize_bn(net)
    with torch.no_grad():
        c4, c5 = net(torch.randn(2, 3, 64, 160))    # 1/5 of the 320x800 input, per image
        out = neck((c4, c5))
    assert c4.shape == (2, 1024, 4, 10)
    assert c5.shape == (2, 2048, 2, 5)
    assert out.shape == (2, 256, 4, 10)
    assert torch.isfinite(out).all()


def test_cpfpn_top_down_by_hand() -> None:
    torch.manual_seed(4)
    neck = CpFpn(in_channels=(4, 8), out_channels=3).eval()
    c4, c5 = torch.randn(1, 4, 4, 6), torch.randn(1, 8, 2, 3)
    with torch.no_grad():
        out = neck((c4, c5))
        lat = [neck.lateral_convs[i].conv for i in range(2)]
        lat0 = torch.einsum("oc,bchw->bohw", lat[0].weight[:, :, 0, 0], c4) + lat[0].bias[:, None, None]
        lat1 = torch.einsum("oc,bchw->bohw", lat[1].weight[:, :, 0, 0], c5) + lat[1].bias[:, None, None]
        up = lat1.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)     # nearest, factor 2
        fpn = neck.fpn_convs[0].conv
        expected = F.conv2d(lat0 + up, fpn.weight, fpn.bias, padding=1)
    assert out.shape == (1, 3, 4, 6)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
