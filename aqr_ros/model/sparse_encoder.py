"""Sparse 3-D convolutions as gather–GEMM–scatter in plain PyTorch, and mmdet3d's ``SparseEncoder``.

docs/model.md §3.2 is the specification.

A convolution is described by a rulebook: for every kernel offset, the pairs (input row, output row)
it connects. Neighbours are found through a coordinate hash (linear keys of (b, z, y, x), sorted once,
queried with ``searchsorted``); the convolution is then one ``index_select`` + ``mm`` + ``index_add_``
per kernel offset. Semantics follow spconv 2.x: cross-correlation without kernel flip, submanifold
convolutions output at the input sites only, strided convolutions output at every site some active
input reaches (``o * stride - pad + k = i``), weights in spconv's KRSC layout ``[out, kz, ky, kx, in]``.

Cost: building a rulebook needs a few host syncs (``nonzero``/``unique`` and the per-offset pair counts);
a SubM rulebook is built once per active set and shared by every SubM layer on it (5 rulebooks for the
whole encoder), and it uses the kernel's point symmetry to query only half the offsets.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

Triple = tuple[int, int, int]


def _triple(value: int | tuple[int, ...]) -> Triple:
    """An int or a 3-sequence as a (z, y, x) triple of ints."""
    if isinstance(value, int):
        return (value, value, value)
    if len(value) != 3:
        raise ValueError(f"expected an int or 3 values, got {value!r}")
    return (int(value[0]), int(value[1]), int(value[2]))


@dataclass(frozen=True)
class Rulebook:
    """Input/output row pairs of one sparse convolution, one pair set per used kernel offset.

    ``offsets[j]`` is the flat (kz, ky, kx) kernel index of the pairs ``in_rows[j]`` → ``out_rows[j]``;
    within one offset every input and every output row occurs at most once.
    """

    offsets: tuple[int, ...]
    in_rows: tuple[Tensor, ...]
    out_rows: tuple[Tensor, ...]


@dataclass
class SparseTensor:
    """Active sites of a batched 3-D grid: ``features`` [M, C], ``coords`` [M, 4] int64 (b, z, y, x).

    ``rules`` caches the SubM rulebooks of this active set; tensors derived with :meth:`with_features`
    share it, so every SubM layer at one resolution reuses the same neighbour pairs.
    """

    features: Tensor
    coords: Tensor
    spatial_shape: Triple
    batch_size: int
    rules: dict[Triple, Rulebook] = field(default_factory=dict)

    def with_features(self, features: Tensor) -> SparseTensor:
        """The same active set (and rulebook cache) carrying new ``features`` [M, C']."""
        return SparseTensor(features, self.coords, self.spatial_shape, self.batch_size, self.rules)

    def dense(self) -> Tensor:
        """Dense [B, C, D, H, W] tensor, zero at inactive sites (spconv's ``.dense()``)."""
        depth, height, width = self.spatial_shape
        out = self.features.new_zeros(self.batch_size, depth, height, width, self.features.shape[1])
        b, z, y, x = self.coords.unbind(1)
        out[b, z, y, x] = self.features
        return out.permute(0, 4, 1, 2, 3)


def _linear_keys(batch: Tensor, z: Tensor, y: Tensor, x: Tensor, shape: Triple) -> Tensor:
    """Row-major linear index of (b, z, y, x) in a [B, *shape] grid (broadcasting)."""
    return ((batch * shape[0] + z) * shape[1] + y) * shape[2] + x


def _split_pairs(
    offset_of_pair: Tensor, num_offsets: int, *rows: Tensor
) -> tuple[list[int], list[tuple[Tensor, ...]]]:
    """Split pair arrays sorted by kernel offset into per-offset chunks; returns used offsets and chunks."""
    counts = torch.bincount(offset_of_pair, minlength=num_offsets).tolist()  # one host sync
    chunks = list(zip(*(r.split(counts) for r in rows)))
    used = [k for k, n in enumerate(counts) if n > 0]
    return used, [chunks[k] for k in used]


def subm_rulebook(coords: Tensor, spatial_shape: Triple, kernel_size: Triple) -> Rulebook:
    """Neighbour pairs of a submanifold convolution (odd kernel, centred) on the active set ``coords`` [M, 4].

    The centre offset (identity) is left out; the caller applies it directly. Offsets k and K-1-k are
    point reflections, so only the first half is looked up and the second half is its transpose.
    """
    num_sites = coords.shape[0]
    num_offsets = math.prod(kernel_size)
    half = num_offsets // 2
    if num_sites == 0 or half == 0:
        return Rulebook((), (), ())
    device = coords.device
    batch, z, y, x = coords.unbind(1)
    sorted_keys, perm = torch.sort(_linear_keys(batch, z, y, x, spatial_shape))

    def shifted(c: Tensor, k: int, size: int) -> tuple[Tensor, Tensor]:
        n = c.unsqueeze(0) + (torch.arange(k, device=device) - k // 2).unsqueeze(1)
        return n, (n >= 0) & (n < size)

    (nz, vz), (ny, vy), (nx, vx) = (shifted(c, k, s) for c, k, s in zip((z, y, x), kernel_size, spatial_shape))
    query = _linear_keys(batch, nz[:, None, None], ny[None, :, None], nx[None, None, :], spatial_shape)
    valid = vz[:, None, None] & vy[None, :, None] & vx[None, None, :]
    query = query.reshape(num_offsets, num_sites)[:half]
    valid = valid.reshape(num_offsets, num_sites)[:half]
    pos = torch.searchsorted(sorted_keys, query).clamp_(max=num_sites - 1)
    found = valid & (sorted_keys[pos] == query)
    offset_of_pair, out_rows = found.nonzero(as_tuple=True)
    in_rows = perm[pos[offset_of_pair, out_rows]]
    used, chunks = _split_pairs(offset_of_pair, half, in_rows, out_rows)
    mirrored = [num_offsets - 1 - k for k in used]
    return Rulebook(
        offsets=tuple(used + mirrored),
        in_rows=tuple(c[0] for c in chunks) + tuple(c[1] for c in chunks),
        out_rows=tuple(c[1] for c in chunks) + tuple(c[0] for c in chunks),
    )


def strided_rulebook(
    coords: Tensor, spatial_shape: Triple, kernel_size: Triple, stride: Triple, padding: Triple
) -> tuple[Tensor, Triple, Rulebook]:
    """Active output set and pairs of a regular (strided) sparse convolution.

    An output ``o`` (``0 <= o < (in + 2p - k) // s + 1`` per axis) is active when an active input
    ``i = o * s - p + k`` exists for some kernel offset k. Returns the output coords [M', 4] (sorted by
    linear key), the output spatial shape and the rulebook.
    """
    out_shape: Triple = _triple(
        tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(spatial_shape, kernel_size, stride, padding))
    )
    num_offsets = math.prod(kernel_size)
    device = coords.device
    batch, z, y, x = coords.unbind(1)

    def reached(c: Tensor, k: int, s: int, p: int, size: int) -> tuple[Tensor, Tensor]:
        num = c.unsqueeze(0) + p - torch.arange(k, device=device).unsqueeze(1)
        return num.div(s, rounding_mode="floor"), (num >= 0) & (num % s == 0) & (num < size * s)

    (oz, vz), (oy, vy), (ox, vx) = (
        reached(c, k, s, p, n) for c, k, s, p, n in zip((z, y, x), kernel_size, stride, padding, out_shape)
    )
    keys = _linear_keys(batch, oz[:, None, None], oy[None, :, None], ox[None, None, :], out_shape)
    valid = (vz[:, None, None] & vy[None, :, None] & vx[None, None, :]).reshape(num_offsets, -1)
    offset_of_pair, in_rows = valid.nonzero(as_tuple=True)
    out_keys, out_rows = torch.unique(keys.reshape(num_offsets, -1)[offset_of_pair, in_rows], return_inverse=True)
    plane = out_shape[1] * out_shape[2]
    out_coords = torch.stack(
        (
            out_keys // (out_shape[0] * plane),
            out_keys // plane % out_shape[0],
            out_keys // out_shape[2] % out_shape[1],
            out_keys % out_shape[2],
        ),
        dim=1,
    )
    used, chunks = _split_pairs(offset_of_pair, num_offsets, in_rows, out_rows)
    rules = Rulebook(tuple(used), tuple(c[0] for c in chunks), tuple(c[1] for c in chunks))
    return out_coords, out_shape, rules


def _gather_gemm_scatter(features: Tensor, weight: Tensor, rules: Rulebook, out: Tensor) -> Tensor:
    """Add ``features[in] @ weight[k]`` into ``out[out_rows]`` for every offset k of ``rules`` (in place)."""
    for k, rows_in, rows_out in zip(rules.offsets, rules.in_rows, rules.out_rows):
        out.index_add_(0, rows_out, features.index_select(0, rows_in) @ weight[k])
    return out


class SparseModule(nn.Module):
    """Marker base: modules that map a :class:`SparseTensor` to a :class:`SparseTensor`."""


class _SparseConv(SparseModule):
    """Shared weight handling: a bias-free KRSC weight ``[out, kz, ky, kx, in]`` like spconv 2.x."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int, int]) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _triple(kernel_size)
        self.weight = nn.Parameter(torch.empty(out_channels, *self.kernel_size, in_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-uniform initialisation over the fan-in ``in * kz * ky * kx`` (for random-weight runs)."""
        bound = math.sqrt(6.0 / (self.in_channels * math.prod(self.kernel_size)))
        nn.init.uniform_(self.weight, -bound, bound)

    def _weight_per_offset(self) -> Tensor:
        """The weight as [K, in, out], K running over (kz, ky, kx) in row-major order."""
        return self.weight.permute(1, 2, 3, 4, 0).reshape(-1, self.in_channels, self.out_channels)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"


class SubMConv3d(_SparseConv):
    """Submanifold 3-D convolution (odd kernel, ``padding = k // 2``): outputs only at the input's active sites."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int, int] = 3) -> None:
        super().__init__(in_channels, out_channels, kernel_size)
        if any(k % 2 == 0 for k in self.kernel_size):
            raise ValueError(f"SubMConv3d needs an odd kernel, got {self.kernel_size}")

    def forward(self, x: SparseTensor) -> SparseTensor:
        """Convolve ``x``; the rulebook is built once per active set and cached in ``x.rules``."""
        rules = x.rules.get(self.kernel_size)
        if rules is None:
            rules = x.rules[self.kernel_size] = subm_rulebook(x.coords, x.spatial_shape, self.kernel_size)
        weight = self._weight_per_offset()
        out = x.features @ weight[weight.shape[0] // 2]
        return x.with_features(_gather_gemm_scatter(x.features, weight, rules, out))


class SparseConv3d(_SparseConv):
    """Regular (strided) sparse 3-D convolution; the output active set is every site an input reaches."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] = 0,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size)
        self.stride, self.padding = _triple(stride), _triple(padding)

    def forward(self, x: SparseTensor) -> SparseTensor:
        """Convolve ``x`` onto the output grid ``(in + 2p - k) // s + 1``."""
        coords, shape, rules = strided_rulebook(
            x.coords, x.spatial_shape, self.kernel_size, self.stride, self.padding
        )
        weight = self._weight_per_offset()
        # Zero-row product fixes the output dtype (it follows autocast like the products do).
        out = (x.features[:0] @ weight[0]).new_zeros(coords.shape[0], self.out_channels)
        return SparseTensor(_gather_gemm_scatter(x.features, weight, rules, out), coords, shape, x.batch_size)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, stride={self.stride}, padding={self.padding}"


class SparseSequential(nn.Sequential, SparseModule):
    """``nn.Sequential`` over a :class:`SparseTensor`: sparse modules see the tensor, others its features."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        """Apply the children in order."""
        for module in self:
            x = module(x) if isinstance(module, SparseModule) else x.with_features(module(x.features))
        return x


def _norm(channels: int) -> nn.BatchNorm1d:
    """The encoder's norm layer (mmdet3d ``BN1d``, eps 1e-3, momentum 0.01)."""
    return nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01)


class SparseBasicBlock(SparseModule):
    """mmdet3d ``SparseBasicBlock``: ``relu(bn2(subm(relu(bn1(subm(x))))) + x)``, no downsample."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = SubMConv3d(channels, channels, 3)
        self.bn1 = _norm(channels)
        self.conv2 = SubMConv3d(channels, channels, 3)
        self.bn2 = _norm(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: SparseTensor) -> SparseTensor:
        """Residual block on a fixed active set."""
        out = self.conv1(x)
        out = self.conv2(out.with_features(self.relu(self.bn1(out.features))))
        return out.with_features(self.relu(self.bn2(out.features) + x.features))


def _conv_module(conv: SparseModule, channels: int) -> SparseSequential:
    """``conv`` + BN + ReLU as indices 0, 1, 2 (the checkpoint's ``.0`` / ``.1`` keys)."""
    return SparseSequential(conv, _norm(channels), nn.ReLU(inplace=True))


class SparseEncoder(nn.Module):
    """mmdet3d ``SparseEncoder`` (basicblock, CMT paddings): voxel features → dense BEV [B, C_out * D, H/8, W/8].

    Children and parameter names equal the checkpoint's ``pts_middle_encoder.*`` keys. Input coords
    must lie inside ``sparse_shape`` (use :func:`aqr_ros.model.voxelize.drop_outside_sparse_shape`).
    """

    def __init__(
        self,
        in_channels: int = 5,
        sparse_shape: tuple[int, int, int] = (41, 1024, 1024),
        base_channels: int = 16,
        output_channels: int = 128,
    ) -> None:
        super().__init__()
        self.sparse_shape = _triple(sparse_shape)
        c1, c2, c3, c4 = base_channels, 2 * base_channels, 4 * base_channels, 8 * base_channels
        self.conv_input = _conv_module(SubMConv3d(in_channels, c1, 3), c1)
        self.encoder_layers = SparseSequential(OrderedDict(
            encoder_layer1=self._layer(c1, c2, (1, 1, 1)),
            encoder_layer2=self._layer(c2, c3, (1, 1, 1)),
            encoder_layer3=self._layer(c3, c4, (0, 1, 1)),
            encoder_layer4=self._layer(c4, None, None),
        ))
        self.conv_out = _conv_module(SparseConv3d(c4, output_channels, (3, 1, 1), (2, 1, 1), 0), output_channels)

    @staticmethod
    def _layer(channels: int, down_channels: int | None, down_padding: Triple | None) -> SparseSequential:
        """Two basic blocks, then (except in the last layer) a stride-2 k=3 conv + BN + ReLU."""
        modules: list[nn.Module] = [SparseBasicBlock(channels), SparseBasicBlock(channels)]
        if down_channels is not None and down_padding is not None:
            modules.append(_conv_module(SparseConv3d(channels, down_channels, 3, 2, down_padding), down_channels))
        return SparseSequential(*modules)

    def forward(self, voxel_features: Tensor, coords: Tensor, batch_size: int) -> Tensor:
        """Encode ``voxel_features`` [M, C_in] at ``coords`` [M, 4] (b, z, y, x) into [B, C_out * D, H, W].

        Channel ``c * D + d`` of the result is output channel c at output depth d (spconv ``dense()``
        folded like mmdet3d); with the r50 config that is [B, 256, 128, 128].
        """
        coords = coords.long()
        bounds = torch.tensor((batch_size, *self.sparse_shape), device=coords.device)
        if coords.numel() and ((coords < 0) | (coords >= bounds)).any():
            raise ValueError(
                f"voxel coords outside batch_size={batch_size} x sparse_shape={self.sparse_shape}; "
                "drop them first (voxelize.drop_outside_sparse_shape)"
            )
        x = SparseTensor(voxel_features, coords, self.sparse_shape, batch_size)
        x = self.conv_out(self.encoder_layers(self.conv_input(x)))
        dense = x.dense()
        n, c, d, h, w = dense.shape
        return dense.reshape(n, c * d, h, w)
