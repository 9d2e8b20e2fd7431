"""Gather–GEMM–scatter sparse convolutions and the SparseEncoder against dense ``conv3d`` (docs/model.md §3.2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from aqr_ros.model.sparse_encoder import (
    SparseBasicBlock,
    SparseConv3d,
    SparseEncoder,
    SparseSequential,
    SparseTensor,
    SubMConv3d,
)

_MANIFESTS = (Path(__file__).parent / "data" / "state-dict-manifest.json",)


def random_sparse(
    shape: tuple[int, int, int], channels: int, density: float, batch: int = 2, seed: int = 0
) -> SparseTensor:
    """Random active set (Bernoulli per site) with N(0, 1) features."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, *shape, generator=gen) < density
    coords = mask.nonzero()
    coords = coords[torch.randperm(coords.shape[0], generator=gen)]  # arbitrary input order
    return SparseTensor(torch.randn(coords.shape[0], channels, generator=gen), coords, shape, batch)


def site_mask(x: SparseTensor) -> Tensor:
    """[B, 1, D, H, W] float mask of the active sites."""
    return x.with_features(torch.ones(x.coords.shape[0], 1)).dense()


def dense_weight(conv: SubMConv3d | SparseConv3d) -> Tensor:
    """KRSC [out, kz, ky, kx, in] → conv3d [out, in, kz, ky, kx]."""
    return conv.weight.permute(0, 4, 1, 2, 3)


def dense_active(mask: Tensor, conv: SparseConv3d) -> Tensor:
    """Dilation rule: output o is active iff some active input i = o*s - p + k."""
    ones = torch.ones(1, 1, *conv.kernel_size)
    return F.conv3d(mask, ones, stride=conv.stride, padding=conv.padding) > 0


@pytest.mark.parametrize("kernel", [3, (1, 3, 3), (3, 1, 1), 1, 5])
def test_subm_equals_masked_dense_conv(kernel: int | tuple[int, int, int]) -> None:
    x = random_sparse((6, 9, 11), 4, density=0.3)
    conv = SubMConv3d(4, 7, kernel)
    with torch.no_grad():
        y = conv(x)
        pad = tuple(k // 2 for k in conv.kernel_size)
        ref = F.conv3d(x.dense(), dense_weight(conv), padding=pad) * site_mask(x)
    assert torch.equal(y.coords, x.coords)
    torch.testing.assert_close(y.dense(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"),
    [
        (3, 2, 1),
        (3, 2, (0, 1, 1)),
        ((3, 1, 1), (2, 1, 1), 0),
        (2, 2, 0),
        (3, 1, 0),
        (3, (1, 2, 2), (1, 0, 2)),
        ((1, 3, 2), 3, (0, 2, 1)),
    ],
)
def test_strided_conv_equals_dense_at_the_dilated_active_set(kernel, stride, padding) -> None:
    x = random_sparse((7, 10, 9), 3, density=0.08, seed=1)
    conv = SparseConv3d(3, 5, kernel, stride, padding)
    with torch.no_grad():
        y = conv(x)
        ref = F.conv3d(x.dense(), dense_weight(conv), stride=conv.stride, padding=conv.padding)
    active = dense_active(site_mask(x), conv)
    assert y.spatial_shape == tuple(ref.shape[2:])
    geometry = zip((7, 10, 9), conv.kernel_size, conv.stride, conv.padding)
    assert y.spatial_shape == tuple((n + 2 * p - k) // s + 1 for n, k, s, p in geometry)
    assert sorted(map(tuple, y.coords.tolist())) == sorted(map(tuple, active[:, 0].nonzero().tolist()))
    torch.testing.assert_close(y.dense(), ref * active, atol=1e-5, rtol=1e-5)


def test_encoder_downsample_shapes_follow_the_golden_table() -> None:
    shape = (41, 1024, 1024)
    for kernel, stride, padding, expected in [
        (3, 2, 1, (21, 512, 512)),
        (3, 2, 1, (11, 256, 256)),
        (3, 2, (0, 1, 1), (5, 128, 128)),
        ((3, 1, 1), (2, 1, 1), 0, (2, 128, 128)),
    ]:
        x = SparseTensor(torch.zeros(1, 1), torch.tensor([[0, shape[0] // 2, 0, 0]]), shape, 1)
        shape = SparseConv3d(1, 1, kernel, stride, padding)(x).spatial_shape
        assert shape == expected


def test_subm_rulebook_is_built_once_per_active_set() -> None:
    x = random_sparse((5, 6, 7), 4, density=0.4)
    block = SparseSequential(SubMConv3d(4, 4), SparseBasicBlock(4))
    y = block.eval()(x)
    assert list(x.rules) == [(3, 3, 3)] and y.rules is x.rules
    down = SparseConv3d(4, 4, 3, 2, 1)(y)
    assert down.rules == {}  # a new active set starts with an empty cache
    # Pair count for each offset equals the number of (active, active) site pairs at that displacement.
    rules = x.rules[(3, 3, 3)]
    mask = site_mask(x)
    for k, rows_in, rows_out in zip(rules.offsets, rules.in_rows, rules.out_rows):
        dz, dy, dx = (k // 9) - 1, (k // 3) % 3 - 1, k % 3 - 1
        displacement = torch.tensor([0, dz, dy, dx]).expand(rows_in.shape[0], 4)
        assert torch.equal(x.coords[rows_in] - x.coords[rows_out], displacement)
        shifted = F.pad(mask, (1, 1, 1, 1, 1, 1))[:, :, 1 + dz:1 + dz + 5, 1 + dy:1 + dy + 6, 1 + dx:1 + dx + 7]
        assert rows_in.shape[0] == int((mask * shifted).sum())


def test_gradients_reach_weights_and_features() -> None:
    x = random_sparse((5, 6, 7), 3, density=0.3)
    features = x.features.clone().requires_grad_(True)
    net = SparseSequential(SubMConv3d(3, 4), SparseConv3d(4, 2, 3, 2, 1))
    net(x.with_features(features)).features.square().sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def load_manifest() -> dict[str, list[int]]:
    path = next((p for p in _MANIFESTS if p.is_file()), None)
    if path is None:
        pytest.skip("state-dict-manifest.json not found in test/data")
    return json.loads(path.read_text())


def test_state_dict_matches_the_checkpoint_manifest() -> None:
    prefix = "pts_middle_encoder."
    manifest = {k[len(prefix):]: v for k, v in load_manifest().items() if k.startswith(prefix)}
    state = SparseEncoder().state_dict()
    assert len(manifest) == 126
    assert set(state) == set(manifest)
    assert {k: list(v.shape) for k, v in state.items()} == manifest
    params = sum(p.numel() for p in SparseEncoder().parameters())
    assert params == pytest.approx(2.69e6, rel=0.005)


def randomize_norms(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial BN statistics and affine parameters, so a missing mask or a wrong order would show."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.2)


def dense_encoder(enc: SparseEncoder, x: Tensor, mask: Tensor) -> Tensor:
    """Dense reference of SparseEncoder: conv3d + BN + ReLU with the SubM / dilation masking rules."""

    def bn(m: torch.nn.BatchNorm1d, v: Tensor, msk: Tensor) -> Tensor:
        shape = (1, -1, 1, 1, 1)
        out = (v - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps)
        return (out * m.weight.view(shape) + m.bias.view(shape)) * msk

    def subm(conv: SubMConv3d, v: Tensor, msk: Tensor) -> Tensor:
        return F.conv3d(v, dense_weight(conv), padding=1) * msk

    def down(seq: SparseSequential, v: Tensor, msk: Tensor) -> tuple[Tensor, Tensor]:
        conv, norm = seq[0], seq[1]
        new_mask = dense_active(msk, conv).float()
        v = F.conv3d(v, dense_weight(conv), stride=conv.stride, padding=conv.padding) * new_mask
        return torch.relu(bn(norm, v, new_mask)), new_mask

    v = torch.relu(bn(enc.conv_input[1], subm(enc.conv_input[0], x, mask), mask))
    for layer in enc.encoder_layers:
        for module in layer:
            if isinstance(module, SparseBasicBlock):
                out = torch.relu(bn(module.bn1, subm(module.conv1, v, mask), mask))
                v = torch.relu(bn(module.bn2, subm(module.conv2, out, mask), mask) + v)
            else:
                v, mask = down(module, v, mask)
    v, _ = down(enc.conv_out, v, mask)
    b, c, d, h, w = v.shape
    return v.reshape(b, c * d, h, w)


def test_encoder_equals_dense_reference_on_a_small_grid() -> None:
    shape = (41, 48, 40)
    x = random_sparse(shape, 5, density=0.01, seed=3)
    enc = SparseEncoder(sparse_shape=shape).eval()
    randomize_norms(enc, seed=4)
    with torch.no_grad():
        out = enc(x.features, x.coords.int(), batch_size=2)
        ref = dense_encoder(enc, x.dense(), site_mask(x))
    assert out.shape == (2, 256, 6, 5)
    assert (out != 0).float().mean() > 0.2  # the comparison is not vacuous
    scale = ref.abs().max()
    torch.testing.assert_close(out / scale, ref / scale, atol=1e-5, rtol=0)


def test_encoder_channel_folding_is_c_times_depth_plus_d() -> None:
    shape = (41, 16, 16)
    x = random_sparse(shape, 5, density=0.05, batch=1, seed=5)
    enc = SparseEncoder(sparse_shape=shape).eval()
    with torch.no_grad():
        inner = enc.conv_out(enc.encoder_layers(enc.conv_input(SparseTensor(x.features, x.coords, shape, 1))))
        out = enc(x.features, x.coords, 1)
    dense = inner.dense()  # [1, 128, 2, 2, 2]
    assert dense.shape == (1, 128, 2, 2, 2)
    torch.testing.assert_close(out[0, 2 * 7 + 1], dense[0, 7, 1])
    torch.testing.assert_close(out[0, 2 * 7], dense[0, 7, 0])


def patch_voxels(corners: list[tuple[int, int]], side: int, shape: tuple[int, int, int]) -> Tensor:
    """(b=0, z, y, x) coords of square ground patches (two z layers) at the given (y, x) corners."""
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    cells = []
    for y0, x0 in corners:
        z = (yy + xx) % 2 + shape[0] // 2  # a slightly bumpy surface
        cells.append(torch.stack((torch.zeros_like(z), z, yy + y0, xx + x0), -1).reshape(-1, 4))
    return torch.cat(cells)


def test_full_size_encoder_runs_on_20k_voxels() -> None:
    shape = (41, 1024, 1024)
    # Five patches of 64 x 64 voxels: the four grid corners (up to index 1023) and the centre.
    corners = [(0, 0), (0, 960), (960, 0), (960, 960), (480, 480)]
    coords = patch_voxels(corners, 64, shape)
    assert coords.shape[0] == 20480 and coords[:, 2:].max() == 1023
    features = torch.randn(coords.shape[0], 5, generator=torch.Generator().manual_seed(7))
    enc = SparseEncoder().eval()
    with torch.no_grad():
        out = enc(features, coords.int(), 1)
    assert out.shape == (1, 256, 128, 128)
    assert torch.isfinite(out).all()
    # Output cells are non-zero only where patches lie (x, y / 8, widened by the stride-2 kernels).
    touched = out.abs().sum((0, 1)) > 0
    assert touched[0, 0] and touched[127, 127] and touched[64, 64] and not touched[30, 30]


def test_empty_voxel_set_gives_finite_zeros() -> None:
    enc = SparseEncoder().eval()
    with torch.no_grad():
        out = enc(torch.zeros(0, 5), torch.zeros(0, 4, dtype=torch.int32), 2)
    assert out.shape == (2, 256, 128, 128)
    assert torch.isfinite(out).all() and not out.any()


def test_coords_outside_the_sparse_shape_are_rejected() -> None:
    enc = SparseEncoder(sparse_shape=(41, 16, 16))
    with pytest.raises(ValueError, match="drop_outside_sparse_shape"):
        enc(torch.zeros(1, 5), torch.tensor([[0, 0, 0, 16]]), 1)
    with pytest.raises(ValueError, match="batch_size"):
        enc(torch.zeros(1, 5), torch.tensor([[1, 0, 0, 0]]), 1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    shape = (41, 48, 40)
    x = random_sparse(shape, 5, density=0.01, seed=8)
    enc = SparseEncoder(sparse_shape=shape).eval()
    randomize_norms(enc, seed=9)
    with torch.no_grad():
        cpu = enc(x.features, x.coords, 2)
        gpu = enc.cuda()(x.features.cuda(), x.coords.cuda(), 2)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
